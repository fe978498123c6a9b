// Browser scenarios for the Paywire cashier, in headless Debian Chromium driven by
// playwright-core (no browser download). Started by crates/e2e/tests/browser.rs:
//
//   node cashier.test.js --web <url> --wallet <url> --artifacts <dir> --only free,wechat
//
// Every step leaves a screenshot in <artifacts>/<scenario>/<step>.png.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

function arg(name, fallback) {
  const i = process.argv.indexOf('--' + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const WEB = arg('web');
const WALLET = arg('wallet');
const ARTIFACTS = arg('artifacts', path.join(os.tmpdir(), 'paywire-browser-artifacts'));
const ONLY = (arg('only', 'free,wechat') || '').split(',').filter(Boolean);
const CHROMIUM = arg('chromium', '/usr/bin/chromium');
// Generous: first page loads compile nothing, but the pay result travels relay → broker →
// two consumers, and an order timeout waits for its TTL.
const STEP_MS = Number(arg('step-ms', '30000'));
const CLOSE_MS = Number(arg('close-ms', '90000'));

assert.ok(WEB, '--web <url> is required');
assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);

const profiles = [];
after(() => {
  for (const dir of profiles) { fs.rmSync(dir, { recursive: true, force: true }); }
});

/** A fresh browser profile per scenario (own localStorage, nothing shared). */
async function browser() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paywire-chromium-'));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(STEP_MS);
  return context;
}

function shooter(scenario) {
  const dir = path.join(ARTIFACTS, scenario);
  fs.mkdirSync(dir, { recursive: true });
  return (page, step) => page.screenshot({ path: path.join(dir, `${step}.png`), fullPage: true });
}

const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

/** Signs in through the dev sign-in page as a fresh student. */
async function signIn(page, who) {
  const user = `${who}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
  await page.goto(`${WEB}/login?next=/`);
  await byId(page, 'login-user-id').fill(user);
  await byId(page, 'login-submit').click();
  await page.waitForURL(`${WEB}/`);
  await assert.doesNotReject(byId(page, 'current-user').waitFor({ state: 'visible' }));
  assert.equal(await byId(page, 'current-user').textContent(), user);
  return user;
}

/** From the catalogue, buys the first paid course: lands on the checkout page. */
async function startCheckout(page, shot) {
  const paid = page.locator('[data-testid="course-card"][data-charge="paid"]').first();
  await paid.waitFor();
  const name = (await paid.locator('[data-testid="course-name"]').textContent()).trim();
  const price = (await paid.locator('[data-testid="course-price"]').textContent()).trim();
  const courseId = await paid.getAttribute('data-course-id');
  assert.match(courseId, /^[0-9]+$/, 'course ids are decimal strings');
  await shot(page, '01-catalogue');
  await paid.locator('[data-testid="choose-button"]').click();
  await page.waitForURL(/\/checkout\?order_id=[0-9]+&course_id=[0-9]+$/);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('course_id'), courseId, 'the exact id string travels');
  await byId(page, 'order-price').waitFor({ state: 'visible' });
  // The price the server charges is the price the catalogue showed.
  assert.equal((await byId(page, 'order-price').textContent()).trim(), price);
  assert.equal(await byId(page, 'order-id').textContent(), url.searchParams.get('order_id'));
  await byId(page, 'channel-choice').waitFor({ state: 'visible' });
  await shot(page, '02-checkout');
  return { name, price, courseId, orderId: url.searchParams.get('order_id') };
}

/** Chooses a channel, checks the QR code and answers the code the wallet must scan. */
async function showQr(page, shot, channel, prefix) {
  await byId(page, `channel-${channel}`).click();
  await byId(page, 'qr-image').waitFor({ state: 'visible' });
  const code = await byId(page, 'code-url').inputValue();
  assert.ok(code.startsWith(prefix), `${channel} code ${code} should start with ${prefix}`);
  assert.equal(await byId(page, 'qr-code').getAttribute('data-channel'), channel);
  const src = await byId(page, 'qr-image').getAttribute('src');
  assert.ok(src.startsWith('data:image/'), 'the QR code is drawn in the browser');
  assert.match(await byId(page, 'countdown').textContent(), /[0-9]{2}:[0-9]{2}/);
  assert.equal(await byId(page, 'pay-status').getAttribute('data-state'), 'waiting');
  await shot(page, '03-checkout-qr');
  return code;
}

/** The payer's phone: the sandbox wallet page takes the scanned code and pays. */
async function payInWallet(context, shot, code) {
  assert.ok(WALLET, '--wallet <url> is required for paying');
  const wallet = await context.newPage();
  await wallet.goto(WALLET);
  await byId(wallet, 'code-input').fill(code);
  await shot(wallet, '04-wallet-scanned');
  await byId(wallet, 'code-submit').click();
  // The trade now shows as paid: listed with its code, no longer offering to pay.
  const paid = byId(wallet, 'trade-row')
    .filter({ hasText: code, hasNot: byId(wallet, 'pay-button') });
  await paid.first().waitFor();
  await shot(wallet, '05-wallet-paid');
  await wallet.close();
}

async function expectPaid(page, shot, course) {
  await page.bringToFront();
  await page.locator('[data-testid="pay-status"][data-state="paid"]').waitFor();
  assert.match(await byId(page, 'pay-status').textContent(), /Paid — start learning/);
  await byId(page, 'success').waitFor({ state: 'visible' });
  assert.ok(await byId(page, 'qr-panel').isHidden());
  await shot(page, '06-success');
  await byId(page, 'my-courses-link').click();
  await page.waitForURL(`${WEB}/my-courses`);
  const row = page.locator(`[data-testid="my-course-row"][data-course-id="${course.courseId}"]`);
  await row.waitFor();
  assert.equal((await row.locator('[data-testid="my-course-name"]').textContent()).trim(), course.name);
  assert.equal(await row.locator('[data-testid="my-course-status"]').getAttribute('data-state'), 'can_learn');
  assert.match(await row.locator('[data-testid="my-course-valid"]').textContent(), /–/);
  await shot(page, '07-my-courses');
}

async function purchase(scenario, channel, prefix) {
  const context = await browser();
  try {
    const shot = shooter(scenario);
    const page = await context.newPage();
    await signIn(page, scenario);
    const course = await startCheckout(page, shot);
    const code = await showQr(page, shot, channel, prefix);
    await payInWallet(context, shot, code);
    await expectPaid(page, shot, course);
  } finally {
    await context.close();
  }
}

if (ONLY.includes('wechat')) {
  test('a student buys a paid course with WeChat Pay and can learn it', async () => {
    await purchase('wechat', 'wechat', 'weixin://');
  });
}

if (ONLY.includes('alipay')) {
  test('a student buys a paid course with Alipay and can learn it', async () => {
    await purchase('alipay', 'alipay', 'https://qr.alipay.com/');
  });
}

if (ONLY.includes('free')) {
  test('a free course is enrolled at once and shows in my courses', async () => {
    const context = await browser();
    try {
      const shot = shooter('free');
      const page = await context.newPage();
      // Signing in is required to choose: the catalogue sends a stranger to the login page.
      await page.goto(`${WEB}/`);
      const free = page.locator('[data-testid="course-card"][data-charge="free"]').first();
      await free.locator('[data-testid="choose-button"]').click();
      await page.waitForURL(/\/login\?next=/);
      await signIn(page, 'free');
      await shot(page, '01-catalogue');
      const name = (await free.locator('[data-testid="course-name"]').textContent()).trim();
      const courseId = await free.getAttribute('data-course-id');
      await free.locator('[data-testid="choose-button"]').click();
      const result = free.locator('[data-testid="choose-result"]');
      await result.waitFor({ state: 'visible' });
      assert.equal(await result.getAttribute('data-state'), 'can_learn');
      assert.match(await result.textContent(), /Enrolled/);
      assert.equal(new URL(page.url()).pathname, '/', 'no checkout for a free course');
      await shot(page, '02-enrolled');
      await page.goto(`${WEB}/my-courses`);
      const row = page.locator(`[data-testid="my-course-row"][data-course-id="${courseId}"]`);
      await row.waitFor();
      assert.equal((await row.locator('[data-testid="my-course-name"]').textContent()).trim(), name);
      assert.equal(await row.locator('[data-testid="my-course-status"]').getAttribute('data-state'), 'can_learn');
      await shot(page, '03-my-courses');

      // Prices are formatted from integer fen without floating point.
      const formatted = await page.evaluate(() => [0, 1, 10, 99, 100, 4990, 123456, 9007199254740991]
        .map((f) => window.paywire.yuan(f)));
      assert.deepEqual(formatted, ['0.00', '0.01', '0.10', '0.99', '1.00', '49.90', '1234.56', '90071992547409.91']);
      assert.equal(await page.evaluate(() => window.paywire.yuan(-1)), '?');
      assert.equal(await page.evaluate(() => window.paywire.yuan(1.5)), '?');
    } finally {
      await context.close();
    }
  });
}

if (ONLY.includes('expired')) {
  test('an order left unpaid past its time shows as closed', async () => {
    const context = await browser();
    try {
      const shot = shooter('expired');
      const page = await context.newPage();
      await signIn(page, 'expired');
      await startCheckout(page, shot);
      await showQr(page, shot, 'wechat', 'weixin://');
      // "I have paid" before paying: the active query finds nothing (or reports that the
      // channel cannot be reached) and says so, without claiming success.
      await byId(page, 'paid-button').click();
      const msg = byId(page, 'pay-result-message');
      await page.waitForFunction(() => {
        const el = document.querySelector('[data-testid="pay-result-message"]');
        return el && !el.hidden && !/Checking/.test(el.textContent);
      });
      assert.doesNotMatch(await msg.textContent(), /Payment found/);
      await shot(page, '04-not-paid-yet');
      await page.locator('[data-testid="pay-status"][data-state="closed"]').waitFor({ timeout: CLOSE_MS });
      await byId(page, 'closed-message').waitFor({ state: 'visible' });
      assert.match(await byId(page, 'closed-message').textContent(), /Order closed — the payment time ran out/);
      assert.ok(await byId(page, 'qr-panel').isHidden(), 'no QR code for a closed order');
      await shot(page, '05-closed');
    } finally {
      await context.close();
    }
  });
}
