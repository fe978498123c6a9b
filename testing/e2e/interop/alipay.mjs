// Cross-checks Alipay OpenAPI (RSA2) with the official npm SDK `alipay-sdk`:
//   1. our gateway's recorded requests verify under the SDK's signature check (and a
//      tampered copy does not), and the SDK signing the same parameters produces our
//      signature byte for byte;
//   2. the SDK, as the merchant client, drives our sandbox (precreate, query, close) with
//      `validateSign: true`, so every answer passed its response-signature check;
//   3. the sandbox's payment notification verifies under `checkNotifySignV2`.
//
// Usage: node alipay.mjs <sandbox_url> <fixture.json>
// Prints one JSON line; exits non-zero on any failure.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomInt } from 'node:crypto';
import { AlipaySdk } from 'alipay-sdk';

const [sandboxUrl, fixturePath] = process.argv.slice(2);

function check(cond, what) {
  if (!cond) throw new Error(what);
}

function header(headers, name) {
  const want = name.toLowerCase();
  const hit = Object.entries(headers).find(([k]) => k.toLowerCase() === want);
  return hit ? hit[1] : undefined;
}

// The test keys are PKCS#8 (`BEGIN PRIVATE KEY`); the SDK assumes PKCS#1 unless told.
function sdkWith(config) {
  return new AlipaySdk({ keyType: 'PKCS8', ...config });
}

function tamper(s) {
  if (s.length === 0) return 'x';
  const i = Math.floor(s.length / 2);
  return s.slice(0, i) + (s[i] === 'a' ? 'b' : 'a') + s.slice(i + 1);
}

/** Every parameter of a request: the URL's query and the form body, decoded. */
function requestParams(req) {
  const params = {};
  const url = new URL(req.url, 'http://sandbox.invalid');
  for (const [k, v] of url.searchParams) params[k] = v;
  const type = header(req.headers, 'content-type') ?? '';
  if (req.body !== '') {
    check(type.startsWith('application/x-www-form-urlencoded'), `${req.url}: content-type ${type}`);
    for (const [k, v] of new URLSearchParams(req.body)) {
      check(!(k in params), `${req.url}: ${k} both in the URL and the body`);
      params[k] = v;
    }
  }
  return params;
}

// Fields of a request that come from the SDK's own configuration.
const CONFIG_FIELDS = ['app_id', 'method', 'charset', 'version', 'sign_type', 'sign'];

/** Step 2 of the brief: requests exactly as our Alipay client sent them. */
function verifyGatewayRequests(fx, appPrivateKey, appPublicKey) {
  check(fx.gateway_requests.length > 0, 'no gateway requests recorded');
  // The SDK's verifier, holding the app's public key as Alipay does.
  const asAlipay = sdkWith({ appId: fx.app_id, privateKey: appPrivateKey, alipayPublicKey: appPublicKey });
  let verified = 0;
  let tamperedRejected = 0;
  let identicalSignatures = 0;
  const methods = [];
  for (const req of fx.gateway_requests) {
    const params = requestParams(req);
    const what = `${req.method} ${params.method}`;
    check(params.app_id === fx.app_id, `${what}: app_id ${params.app_id}`);
    check(params.sign_type === 'RSA2', `${what}: sign_type ${params.sign_type}`);
    check(params.charset === 'utf-8', `${what}: charset ${params.charset}`);
    check(params.version === '1.0', `${what}: version ${params.version}`);
    check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(params.timestamp), `${what}: timestamp ${params.timestamp}`);
    check(params.sign, `${what}: no sign`);
    const bizContent = JSON.parse(params.biz_content);
    // Request rule: everything but `sign` is signed, `sign_type` included.
    const signed = { ...params };
    delete signed.sign;
    check(asAlipay.notifyRSACheck(signed, params.sign, 'RSA2', true), `${what}: the SDK rejects our signature`);
    verified += 1;
    for (const key of ['biz_content', 'timestamp', 'method']) {
      const forged = { ...signed, [key]: tamper(signed[key]) };
      check(!asAlipay.notifyRSACheck(forged, params.sign, 'RSA2', true), `${what}: a copy with ${key} tampered verifies`);
      tamperedRejected += 1;
    }
    // The SDK signing the same parameters must produce our bytes (PKCS#1 v1.5 is
    // deterministic): same sign content, same key.
    const merchant = sdkWith({
      appId: fx.app_id, privateKey: appPrivateKey, charset: params.charset, version: params.version,
    });
    const extra = Object.fromEntries(Object.entries(params).filter(([k]) => !CONFIG_FIELDS.includes(k) && k !== 'biz_content'));
    const sdkSigned = new URLSearchParams(merchant.sdkExecute(params.method, { ...extra, bizContent }, { bizContentAutoSnakeCase: false }));
    check(sdkSigned.get('biz_content') === params.biz_content, `${what}: biz_content re-serialises differently: ${sdkSigned.get('biz_content')}`);
    check(sdkSigned.get('sign') === params.sign, `${what}: the SDK signs the same parameters differently`);
    identicalSignatures += 1;
    methods.push(params.method);
  }
  return { verified, identicalSignatures, tamperedRejected, methods };
}

/** A local merchant endpoint for notifications; answers `success` like Alipay wants. */
async function startReceiver() {
  const waiting = [];
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('success');
      while (waiting.length) waiting.shift()();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/notify/alipay`;
  const next = (timeoutMs) => new Promise((resolve, reject) => {
    const take = () => (received.length ? resolve(received.shift()) : false);
    if (take() !== false) return;
    const timer = setTimeout(() => reject(new Error('no notification from the sandbox')), timeoutMs);
    waiting.push(() => { clearTimeout(timer); take(); });
  });
  return { url, next, close: () => server.close() };
}

function outTradeNo() {
  return `${Date.now()}${randomInt(100000, 999999)}`;
}

async function sdkAgainstSandbox(fx, appPrivateKey, alipayPublicKey, appPublicKey, receiver) {
  const answers = [];
  const sdk = sdkWith({
    appId: fx.app_id,
    privateKey: appPrivateKey,
    alipayPublicKey,
    gateway: `${sandboxUrl}/gateway.do`,
    timeout: 10000,
  });
  const exec = (method, bizContent, extra = {}) => sdk.exec(method, { ...extra, bizContent }, { validateSign: true });
  const precreate = (no, amount) => exec('alipay.trade.precreate', {
    out_trade_no: no,
    total_amount: amount,
    subject: 'Paywire interop: Rust for beginners',
  }, { notify_url: receiver.url });
  const query = (no) => exec('alipay.trade.query', { out_trade_no: no });
  const close = (no) => exec('alipay.trade.close', { out_trade_no: no });

  const a = outTradeNo();
  const created = await precreate(a, '19.99');
  check(created.code === '10000' && created.outTradeNo === a, `precreate: ${JSON.stringify(created)}`);
  check(/^https:\/\/qr\.alipay\.com\//.test(created.qrCode), `qr_code ${created.qrCode}`);
  answers.push('precreate');
  // Before the scan the trade does not exist at Alipay.
  const open = await query(a);
  check(open.code === '40004' && open.subCode === 'ACQ.TRADE_NOT_EXIST', `query before scan: ${JSON.stringify(open)}`);
  answers.push('query_not_exist');
  const closed = await close(a);
  check(closed.code === '40004' && closed.subCode === 'ACQ.TRADE_NOT_EXIST', `close before scan: ${JSON.stringify(closed)}`);
  answers.push('close_not_exist');

  // The same answers under a wrong key must fail the SDK's check (it can fail).
  const distrustful = sdkWith({
    appId: fx.app_id, privateKey: appPrivateKey, alipayPublicKey: appPublicKey, gateway: `${sandboxUrl}/gateway.do`,
  });
  let wrongKeyRejected = false;
  try {
    await distrustful.exec('alipay.trade.query', { bizContent: { out_trade_no: a } }, { validateSign: true });
  } catch (e) {
    wrongKeyRejected = /验签失败/.test(e.message);
    check(wrongKeyRejected, `wrong key failed differently: ${e.message}`);
  }
  check(wrongKeyRejected, 'a response verified under the wrong key');

  return { answers, wrongKeyRejected, precreate, query, close };
}

async function sandboxNotification(fx, sdk, distrustful, receiver) {
  const b = outTradeNo();
  const created = await sdk.precreate(b, '25.00');
  const paid = await fetch(`${sandboxUrl}/sandbox/wallet/pay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: created.qrCode }),
  });
  check(paid.status === 200, `wallet pay: ${paid.status} ${await paid.text()}`);

  const n = await receiver.next(20000);
  const type = header(n.headers, 'content-type') ?? '';
  check(type.startsWith('application/x-www-form-urlencoded'), `notification content-type ${type}`);
  const post = Object.fromEntries(new URLSearchParams(n.body));
  check(fx.verifier.checkNotifySignV2(post), `the SDK rejects the notification: ${n.body}`);
  // Strict notify rule: signed without `sign` and `sign_type`.
  const strict = { ...post };
  delete strict.sign;
  delete strict.sign_type;
  check(fx.verifier.notifyRSACheck(strict, post.sign, 'RSA2', true), 'notification not signed without sign_type');
  check(!fx.verifier.checkNotifySignV2({ ...post, total_amount: '0.01' }), 'a tampered notification verifies');
  check(!distrustful.checkNotifySignV2(post), 'the notification verifies under the wrong key');
  check(post.notify_type === 'trade_status_sync', `notify_type ${post.notify_type}`);
  check(post.trade_status === 'TRADE_SUCCESS', `trade_status ${post.trade_status}`);
  check(post.out_trade_no === b && post.total_amount === '25.00', `notification trade ${post.out_trade_no} ${post.total_amount}`);
  check(post.app_id === fx.app_id && post.seller_id === fx.seller_id, `notification app ${post.app_id} seller ${post.seller_id}`);
  check(post.trade_no && post.gmt_payment && post.notify_id, 'notification trade_no / gmt_payment / notify_id');

  const settled = await sdk.query(b);
  check(settled.code === '10000' && settled.tradeStatus === 'TRADE_SUCCESS' && settled.tradeNo === post.trade_no, `query after pay: ${JSON.stringify(settled)}`);
  return { verified: 1 };
}

async function main() {
  const fx = JSON.parse(readFileSync(fixturePath, 'utf8'));
  const appPrivateKey = readFileSync(fx.app_private_key_path, 'utf8');
  const appPublicKey = readFileSync(fx.app_public_key_path, 'utf8');
  const alipayPublicKey = readFileSync(fx.alipay_public_key_path, 'utf8');

  // Offline first: a bad fixture fails fast.
  const gateway = verifyGatewayRequests(fx, appPrivateKey, appPublicKey);
  const receiver = await startReceiver();
  try {
    const client = await sdkAgainstSandbox(fx, appPrivateKey, alipayPublicKey, appPublicKey, receiver);
    fx.verifier = sdkWith({ appId: fx.app_id, privateKey: appPrivateKey, alipayPublicKey });
    const distrustful = sdkWith({ appId: fx.app_id, privateKey: appPrivateKey, alipayPublicKey: appPublicKey });
    const notification = await sandboxNotification(fx, client, distrustful, receiver);
    return {
      channel: 'alipay',
      ok: true,
      sdk: 'alipay-sdk',
      gateway_requests_verified: gateway.verified,
      gateway_signatures_identical: gateway.identicalSignatures,
      gateway_tampered_rejected: gateway.tamperedRejected,
      gateway_methods: gateway.methods,
      sandbox_answers_verified: [...client.answers, 'query_paid'],
      sandbox_wrong_key_rejected: client.wrongKeyRejected,
      notifications_verified: notification.verified,
    };
  } finally {
    receiver.close();
  }
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (e) => {
    process.stdout.write(`${JSON.stringify({ channel: 'alipay', ok: false, error: String(e?.stack ?? e), response: e?.responseDataRaw })}\n`);
    process.exit(1);
  },
);
