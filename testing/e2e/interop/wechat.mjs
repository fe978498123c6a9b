// Cross-checks WeChat Pay v3 with the independent npm SDK `wechatpay-axios-plugin`:
//   1. our gateway's recorded requests verify under the SDK's primitives (and a tampered
//      copy does not);
//   2. the SDK, as the merchant client, drives our sandbox (prepay, query, close) and its
//      own response verification accepts every answer;
//   3. the sandbox's payment callback verifies and decrypts under the SDK.
//
// Usage: node wechat.mjs <sandbox_url> <fixture.json>
// Prints one JSON line; exits non-zero on any failure.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { randomInt } from 'node:crypto';
import { Wechatpay, Rsa, Formatter, Aes } from 'wechatpay-axios-plugin';

const [sandboxUrl, fixturePath] = process.argv.slice(2);

function check(cond, what) {
  if (!cond) throw new Error(what);
}

function header(headers, name) {
  const want = name.toLowerCase();
  const hit = Object.entries(headers).find(([k]) => k.toLowerCase() === want);
  return hit ? hit[1] : undefined;
}

// `WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",…` → { mchid, nonce_str, … }
function parseAuthorization(value) {
  const [scheme, ...rest] = value.split(' ');
  check(scheme === 'WECHATPAY2-SHA256-RSA2048', `authorization scheme ${scheme}`);
  const items = {};
  for (const m of rest.join(' ').matchAll(/(\w+)="([^"]*)"/g)) items[m[1]] = m[2];
  return items;
}

function tamper(s) {
  // Flip one character that is certainly part of the signed message.
  if (s.length === 0) return 'x';
  const i = Math.floor(s.length / 2);
  return s.slice(0, i) + (s[i] === 'a' ? 'b' : 'a') + s.slice(i + 1);
}

/** Step 2 of the brief: requests exactly as our channel client sent them. */
function verifyGatewayRequests(fx, merchantPublic, merchantPrivate) {
  check(fx.gateway_requests.length > 0, 'no gateway requests recorded');
  let verified = 0;
  let tamperedRejected = 0;
  let identicalSignatures = 0;
  for (const req of fx.gateway_requests) {
    const what = `${req.method} ${req.url}`;
    const auth = parseAuthorization(header(req.headers, 'authorization') ?? '');
    check(auth.mchid === fx.mchid, `${what}: mchid ${auth.mchid}`);
    check(auth.serial_no === fx.merchant_serial_no, `${what}: serial_no ${auth.serial_no}`);
    check(/^\d+$/.test(auth.timestamp), `${what}: timestamp ${auth.timestamp}`);
    check(auth.nonce_str && auth.signature, `${what}: nonce_str/signature missing`);
    check(header(req.headers, 'accept') === 'application/json', `${what}: accept`);
    if (req.body !== '') {
      check(header(req.headers, 'content-type') === 'application/json', `${what}: content-type`);
      JSON.parse(req.body);
    }
    const message = Formatter.request(req.method, req.url, auth.timestamp, auth.nonce_str, req.body);
    check(Rsa.verify(message, auth.signature, merchantPublic), `${what}: the SDK rejects our signature`);
    verified += 1;
    // PKCS#1 v1.5 is deterministic: the SDK signing the same message must produce our bytes.
    check(Rsa.sign(message, merchantPrivate) === auth.signature, `${what}: the SDK signs differently`);
    identicalSignatures += 1;
    const forged = [
      Formatter.request(req.method, req.url, auth.timestamp, auth.nonce_str, tamper(req.body)),
      Formatter.request(req.method, tamper(req.url), auth.timestamp, auth.nonce_str, req.body),
      Formatter.request(req.method, req.url, String(Number(auth.timestamp) + 1), auth.nonce_str, req.body),
    ];
    for (const f of forged) {
      check(!Rsa.verify(f, auth.signature, merchantPublic), `${what}: a tampered copy verifies`);
      tamperedRejected += 1;
    }
  }
  return { verified, identicalSignatures, tamperedRejected };
}

/** A local merchant endpoint for the sandbox's callbacks; answers 204 like WeChat wants. */
async function startReceiver() {
  const waiting = [];
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(204).end();
      while (waiting.length) waiting.shift()();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}/notify/wechat`;
  const next = (timeoutMs) => new Promise((resolve, reject) => {
    const take = () => (received.length ? resolve(received.shift()) : false);
    if (take() !== false) return;
    const timer = setTimeout(() => reject(new Error('no callback from the sandbox')), timeoutMs);
    waiting.push(() => { clearTimeout(timer); take(); });
  });
  return { url, next, close: () => server.close() };
}

function outTradeNo() {
  return `${Date.now()}${randomInt(100000, 999999)}`;
}

async function sdkAgainstSandbox(fx, merchantPrivate, wechatpayPublic, merchantPublic, receiver) {
  const answers = [];
  const wxpay = new Wechatpay({
    baseURL: `${sandboxUrl}/`,
    mchid: fx.mchid,
    serial: fx.merchant_serial_no,
    privateKey: merchantPrivate,
    certs: { [fx.wechatpay_public_key_id]: wechatpayPublic },
  });
  const prepay = (no, total) => wxpay.v3.pay.transactions.native.post({
    appid: fx.appid,
    mchid: fx.mchid,
    description: 'Paywire interop: Rust for beginners',
    out_trade_no: no,
    notify_url: receiver.url,
    amount: { total, currency: 'CNY' },
  });
  const query = (no) => wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.get({
    params: { mchid: fx.mchid },
    out_trade_no: no,
  });
  const close = (no) => wxpay.v3.pay.transactions.outTradeNo.$out_trade_no$.close.post(
    { mchid: fx.mchid },
    { out_trade_no: no },
  );

  // Prepay, query, close, query: every answer passed the SDK's signature check.
  const a = outTradeNo();
  const created = await prepay(a, 1999);
  check(created.status === 200, `prepay status ${created.status}`);
  check(/^weixin:\/\/wxpay\/bizpayurl\?pr=/.test(created.data.code_url), `code_url ${created.data.code_url}`);
  answers.push('prepay');
  const open = await query(a);
  check(open.data.trade_state === 'NOTPAY' && open.data.out_trade_no === a, `query: ${JSON.stringify(open.data)}`);
  check(open.data.amount.total === 1999, `query amount ${JSON.stringify(open.data.amount)}`);
  answers.push('query');
  const closed = await close(a);
  check(closed.status === 204, `close status ${closed.status}`);
  answers.push('close');
  const after = await query(a);
  check(after.data.trade_state === 'CLOSED', `after close: ${after.data.trade_state}`);
  answers.push('query_closed');

  // The same answers under a wrong key must fail the SDK's check (it can fail).
  const distrustful = new Wechatpay({
    baseURL: `${sandboxUrl}/`,
    mchid: fx.mchid,
    serial: fx.merchant_serial_no,
    privateKey: merchantPrivate,
    certs: { [fx.wechatpay_public_key_id]: merchantPublic },
  });
  let wrongKeyRejected = false;
  try {
    await distrustful.v3.pay.transactions.outTradeNo.$out_trade_no$.get({ params: { mchid: fx.mchid }, out_trade_no: a });
  } catch (e) {
    wrongKeyRejected = e.code === 'EV3_RES_HEADER_SIGNATURE_DIGEST';
    check(wrongKeyRejected, `wrong key failed differently: ${e.code} ${e.message}`);
  }
  check(wrongKeyRejected, 'a response verified under the wrong key');

  // Error answers are signed too (the SDK skips non-2xx, so check them by hand).
  const unsigned = await fetch(`${sandboxUrl}/v3/pay/transactions/out-trade-no/${a}?mchid=${fx.mchid}`);
  const errBody = await unsigned.text();
  check(unsigned.status === 401 && JSON.parse(errBody).code === 'SIGN_ERROR', `unsigned request: ${unsigned.status} ${errBody}`);
  const errMessage = Formatter.response(
    unsigned.headers.get('wechatpay-timestamp'),
    unsigned.headers.get('wechatpay-nonce'),
    errBody,
  );
  check(unsigned.headers.get('wechatpay-serial') === fx.wechatpay_public_key_id, 'error answer serial');
  check(Rsa.verify(errMessage, unsigned.headers.get('wechatpay-signature'), wechatpayPublic), 'error answer signature');
  answers.push('error_401');

  return { answers, wrongKeyRejected, prepay, query };
}

async function sandboxCallback(fx, wechatpayPublic, receiver, prepay, query) {
  const b = outTradeNo();
  const created = await prepay(b, 2500);
  const paid = await fetch(`${sandboxUrl}/sandbox/wallet/pay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ code: created.data.code_url }),
  });
  check(paid.status === 200, `wallet pay: ${paid.status} ${await paid.text()}`);

  const cb = await receiver.next(20000);
  const ts = header(cb.headers, 'wechatpay-timestamp');
  const nonce = header(cb.headers, 'wechatpay-nonce');
  const serial = header(cb.headers, 'wechatpay-serial');
  const signature = header(cb.headers, 'wechatpay-signature');
  check(ts && nonce && serial && signature, `callback headers ${JSON.stringify(cb.headers)}`);
  check(header(cb.headers, 'wechatpay-signature-type') === 'WECHATPAY2-SHA256-RSA2048', 'callback signature type');
  check(serial === fx.wechatpay_public_key_id, `callback serial ${serial}`);
  check(Math.abs(Formatter.timestamp() - Number(ts)) <= 300, `callback timestamp ${ts}`);
  check(Rsa.verify(Formatter.response(ts, nonce, cb.body), signature, wechatpayPublic), 'the SDK rejects the callback signature');
  check(!Rsa.verify(Formatter.response(ts, nonce, tamper(cb.body)), signature, wechatpayPublic), 'a tampered callback verifies');

  const envelope = JSON.parse(cb.body);
  check(envelope.event_type === 'TRANSACTION.SUCCESS', `event_type ${envelope.event_type}`);
  check(envelope.resource_type === 'encrypt-resource', `resource_type ${envelope.resource_type}`);
  const r = envelope.resource;
  check(r.algorithm === 'AEAD_AES_256_GCM', `algorithm ${r.algorithm}`);
  const tx = JSON.parse(Aes.AesGcm.decrypt(r.ciphertext, fx.apiv3_key, r.nonce, r.associated_data));
  check(tx.out_trade_no === b && tx.trade_state === 'SUCCESS', `decrypted ${JSON.stringify(tx)}`);
  check(tx.mchid === fx.mchid && tx.appid === fx.appid, 'decrypted merchant');
  check(tx.amount.total === 2500 && tx.amount.payer_total === 2500, `decrypted amount ${JSON.stringify(tx.amount)}`);
  check(tx.transaction_id && tx.success_time, 'decrypted transaction id / success time');
  let wrongAadRejected = false;
  try {
    Aes.AesGcm.decrypt(r.ciphertext, fx.apiv3_key, r.nonce, `${r.associated_data}x`);
  } catch {
    wrongAadRejected = true;
  }
  check(wrongAadRejected, 'the resource decrypts under a wrong associated_data');

  const settled = await query(b);
  check(settled.data.trade_state === 'SUCCESS' && settled.data.transaction_id === tx.transaction_id, `query after pay: ${JSON.stringify(settled.data)}`);
  return { verified: 1, decrypted_out_trade_no: b, wrongAadRejected };
}

async function main() {
  const fx = JSON.parse(readFileSync(fixturePath, 'utf8'));
  const merchantPrivate = readFileSync(fx.merchant_private_key_path);
  const merchantPublic = Rsa.from(readFileSync(fx.merchant_public_key_path), Rsa.KEY_TYPE_PUBLIC);
  const wechatpayPublic = readFileSync(fx.wechatpay_public_key_path);

  // Offline first: a bad fixture fails fast.
  const gateway = verifyGatewayRequests(fx, merchantPublic, Rsa.from(merchantPrivate, Rsa.KEY_TYPE_PRIVATE));
  const receiver = await startReceiver();
  try {
    const client = await sdkAgainstSandbox(fx, merchantPrivate, wechatpayPublic, merchantPublic, receiver);
    const callback = await sandboxCallback(fx, Rsa.from(wechatpayPublic, Rsa.KEY_TYPE_PUBLIC), receiver, client.prepay, client.query);
    return {
      channel: 'wechat',
      ok: true,
      sdk: 'wechatpay-axios-plugin',
      gateway_requests_verified: gateway.verified,
      gateway_signatures_identical: gateway.identicalSignatures,
      gateway_tampered_rejected: gateway.tamperedRejected,
      sandbox_answers_verified: client.answers,
      sandbox_wrong_key_rejected: client.wrongKeyRejected,
      callbacks_verified: callback.verified,
      callback_wrong_aad_rejected: callback.wrongAadRejected,
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
    process.stdout.write(`${JSON.stringify({ channel: 'wechat', ok: false, error: String(e?.stack ?? e), response: e?.response?.data })}\n`);
    process.exit(1);
  },
);
