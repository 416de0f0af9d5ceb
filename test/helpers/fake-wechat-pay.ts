import { execFileSync } from 'node:child_process';
import { createCipheriv, createSign, createVerify, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { rsaKeys } from './fake-alipay.js';

/**
 * A local stand-in for the slice of WeChat Pay API v3 that WechatPayGateway calls, so the
 * real client (`wechatpay-axios-plugin`) runs against it through its `baseURL`: no network.
 *
 * Like WeChat Pay it verifies each request's `Authorization` (WECHATPAY2-SHA256-RSA2048 over
 * `METHOD\npath\ntimestamp\nnonce\nbody\n`, merchant key; 401 `SIGN_ERROR` otherwise) and signs
 * each answer (`Wechatpay-Signature` over `timestamp\nnonce\nbody\n`) with its platform key,
 * named by `Wechatpay-Serial`: a WeChat Pay public key (`PUB_KEY_ID_…`, the default) or a
 * platform certificate (`keyMode: 'certificate'`, a real X.509 certificate made with openssl).
 *
 * Orders by `out_trade_no`: Native and H5 placement (a repeat with the same parameters answers
 * the same code; a paid one `ORDERPAID`, a closed one `ORDER_CLOSED`), query (404
 * `ORDER_NOT_EXIST`), close (204), refunds by `out_refund_no` (a repeat answers the same
 * refund; more than is left is 400 `INVALID_REQUEST`) and refund query.
 *
 * The customer's side: `customerPays` (returns the TRANSACTION.SUCCESS notify, its resource
 * encrypted with AEAD_AES_256_GCM under the APIv3 key) and `customerFails` (PAYERROR: WeChat
 * Pay sends no notify for it). Faults (`failNext`): an error answer, `hang`, or `lost`
 * (processed, then a 500 `SYSTEM_ERROR`).
 */
export interface FakeWechatPay {
  readonly url: string;
  readonly gatewayOptions: {
    appId: string;
    mchId: string;
    merchantSerial: string;
    privateKey: string;
    apiV3Key: string;
    platformKeys: Record<string, string>;
    baseUrl: string;
  };
  /** The serial WeChat Pay signs with. */
  readonly serial: string;
  readonly requests: readonly FakeWechatPayRequest[];
  order(outTradeNo: string): FakeWechatOrder | undefined;
  orderCount(): number;
  failNext(fault: FakeWechatPayFault, options?: { count?: number; on?: FakeWechatPayOperation }): void;
  /** The customer scans and pays; returns the notify WeChat Pay posts. */
  customerPays(outTradeNo: string): FakeWechatNotify;
  /** The bank refuses in the app: the order shows PAYERROR (no notify is sent). */
  customerFails(outTradeNo: string): void;
  /** A TRANSACTION.SUCCESS notify for the order as it is now, with `data` merged into the resource. */
  notifyFor(outTradeNo: string, data?: Record<string, unknown>): FakeWechatNotify;
  /** The REFUND.* notify of a refund made through the API. */
  refundNotify(outRefundNo: string): FakeWechatNotify;
  /** Signs a notify body with the platform key (or `privateKey`), at `timestamp` (seconds). */
  signNotify(body: string, options?: { privateKey?: string; timestamp?: number; serial?: string }): FakeWechatNotify;
  /** Posts a notify to the order's notify_url, as WeChat Pay does; resolves with the answer's status. */
  deliver(outTradeNo: string, notify: FakeWechatNotify): Promise<number>;
  close(): Promise<void>;
}

export interface FakeWechatNotify {
  rawBody: Buffer;
  headers: Record<string, string>;
}

export type FakeWechatPayOperation = 'native' | 'h5' | 'query' | 'close' | 'refund' | 'refund_query';

export interface FakeWechatPayRequest {
  operation: FakeWechatPayOperation | undefined;
  method: string;
  path: string;
  body: Record<string, unknown>;
}

export type FakeWechatPayFault = { status: number; code: string } | 'hang' | 'lost';

export interface FakeWechatOrder {
  outTradeNo: string;
  transactionId: string;
  body: Record<string, unknown>;
  fingerprint: string;
  state: 'NOTPAY' | 'SUCCESS' | 'CLOSED' | 'PAYERROR' | 'REFUND';
  successTime: string | undefined;
  codeUrl: string;
  refunds: Map<string, { refundId: string; amount: number; status: string }>;
  refunded: number;
}

export async function startFakeWechatPay(
  options: { keyMode?: 'public_key' | 'certificate' } = {},
): Promise<FakeWechatPay> {
  const merchant = rsaKeys();
  const platform = rsaKeys();
  const mchId = '1900000109';
  const appId = 'wxd678efh567hg6787';
  const merchantSerial = randomBytes(20).toString('hex').toUpperCase();
  const apiV3Key = randomBytes(16).toString('hex');
  const keyMode = options.keyMode ?? 'public_key';
  const { serial, verifyKey } =
    keyMode === 'certificate'
      ? selfSignedCertificate(platform.privateKey)
      : { serial: `PUB_KEY_ID_0119${randomBytes(10).toString('hex').toUpperCase()}`, verifyKey: platform.publicKey };
  const requests: FakeWechatPayRequest[] = [];
  const orders = new Map<string, FakeWechatOrder>();
  const faults: { fault: FakeWechatPayFault; on: FakeWechatPayOperation | undefined }[] = [];
  const sockets = new Set<Socket>();
  let seq = 0;

  const server = http.createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) answer(res, 500, { code: 'SYSTEM_ERROR', message: String(error) });
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const raw = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    if (!verifyAuthorization(req.headers.authorization ?? '', method, `${url.pathname}${url.search}`, raw)) {
      return answer(res, 401, { code: 'SIGN_ERROR', message: '签名错误' });
    }
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
    const route = routeOf(method, url.pathname);
    requests.push({ operation: route?.operation, method, path: `${url.pathname}${url.search}`, body });
    if (!route) return answer(res, 404, { code: 'NOT_FOUND', message: 'no such API' });
    const index = faults.findIndex((f) => f.on === undefined || f.on === route.operation);
    const fault = index >= 0 ? faults.splice(index, 1)[0]?.fault : undefined;
    if (fault === 'hang') {
      operate(route, body, url);
      return;
    }
    if (fault && typeof fault === 'object') return answer(res, fault.status, { code: fault.code, message: fault.code });
    const [status, result] = operate(route, body, url);
    if (fault === 'lost') return answer(res, 500, { code: 'SYSTEM_ERROR', message: '系统错误' });
    return answer(res, status, result);
  }

  function operate(route: Route, body: Record<string, unknown>, url: URL): [number, Record<string, unknown> | null] {
    const order = orders.get(route.id ?? String(body.out_trade_no ?? ''));
    switch (route.operation) {
      case 'native':
      case 'h5': {
        if (body.mchid !== mchId || body.appid !== appId) return [400, error('APPID_MCHID_NOT_MATCH')];
        const amount = body.amount as { total?: unknown; currency?: unknown } | undefined;
        if (typeof amount?.total !== 'number' || !Number.isInteger(amount.total) || amount.currency !== 'CNY') {
          return [400, error('PARAM_ERROR')];
        }
        if (
          route.operation === 'h5' &&
          !(body.scene_info as { payer_client_ip?: unknown } | undefined)?.payer_client_ip
        ) {
          return [400, error('PARAM_ERROR')];
        }
        const fingerprint = JSON.stringify({ ...body, time_expire: undefined });
        if (order) {
          if (order.state === 'SUCCESS' || order.state === 'REFUND') return [400, error('ORDERPAID')];
          if (order.state === 'CLOSED') return [400, error('ORDER_CLOSED')];
          if (order.fingerprint !== fingerprint) return [400, error('INVALID_REQUEST', '201 商户订单号重复')];
        }
        const placed = order ?? place(body, fingerprint);
        return [
          200,
          route.operation === 'h5'
            ? { h5_url: `${baseUrl}/h5/checkout?prepay_id=wx${placed.transactionId}` }
            : { code_url: placed.codeUrl },
        ];
      }
      case 'query':
        if (url.searchParams.get('mchid') !== mchId) return [400, error('PARAM_ERROR')];
        if (!order) return [404, error('ORDER_NOT_EXIST', '订单不存在')];
        return [200, transactionOf(order)];
      case 'close':
        if (!order) return [404, error('ORDER_NOT_EXIST', '订单不存在')];
        if (order.state === 'SUCCESS' || order.state === 'REFUND') return [400, error('ORDERPAID', '订单已支付')];
        order.state = 'CLOSED';
        return [204, null];
      case 'refund': {
        if (!order) return [404, error('ORDER_NOT_EXIST', '订单不存在')];
        const refundNo = String(body.out_refund_no ?? '');
        const amount = body.amount as { refund?: number; total?: number } | undefined;
        const existing = order.refunds.get(refundNo);
        if (existing) return [200, refundOf(order, refundNo, existing)];
        if (order.state !== 'SUCCESS' && order.state !== 'REFUND') return [403, error('TRADE_ERROR', '订单未支付')];
        const total = Number((order.body.amount as { total: number }).total);
        if (amount?.total !== total) return [400, error('PARAM_ERROR', 'total 与订单金额不一致')];
        const refund = Number(amount.refund);
        if (!Number.isInteger(refund) || refund <= 0) return [400, error('PARAM_ERROR')];
        if (refund > total - order.refunded) return [400, error('INVALID_REQUEST', '申请退款金额超过订单可退金额')];
        seq += 1;
        const made = { refundId: `50300${String(seq).padStart(20, '0')}`, amount: refund, status: 'SUCCESS' };
        order.refunds.set(refundNo, made);
        order.refunded += refund;
        order.state = 'REFUND';
        return [200, refundOf(order, refundNo, made)];
      }
      case 'refund_query': {
        for (const candidate of orders.values()) {
          const made = candidate.refunds.get(route.id ?? '');
          if (made) return [200, refundOf(candidate, route.id ?? '', made)];
        }
        return [404, error('RESOURCE_NOT_EXISTS', '退款单不存在')];
      }
    }
  }

  function place(body: Record<string, unknown>, fingerprint: string): FakeWechatOrder {
    seq += 1;
    const order: FakeWechatOrder = {
      outTradeNo: String(body.out_trade_no),
      transactionId: `42000${String(seq).padStart(23, '0')}`,
      body,
      fingerprint,
      state: 'NOTPAY',
      successTime: undefined,
      codeUrl: `weixin://wxpay/bizpayurl?pr=${randomBytes(5).toString('hex')}`,
      refunds: new Map(),
      refunded: 0,
    };
    orders.set(order.outTradeNo, order);
    return order;
  }

  function transactionOf(order: FakeWechatOrder): Record<string, unknown> {
    const amount = order.body.amount as { total: number; currency: string };
    return {
      appid: appId,
      mchid: mchId,
      out_trade_no: order.outTradeNo,
      transaction_id: order.transactionId,
      trade_type: 'NATIVE',
      trade_state: order.state,
      trade_state_desc: order.state === 'PAYERROR' ? '银行卡余额不足' : order.state,
      ...(order.successTime ? { success_time: order.successTime } : {}),
      ...(typeof order.body.attach === 'string' ? { attach: order.body.attach } : {}),
      amount: { total: amount.total, currency: amount.currency, payer_total: amount.total, payer_currency: 'CNY' },
    };
  }

  function refundOf(
    order: FakeWechatOrder,
    refundNo: string,
    made: { refundId: string; amount: number; status: string },
  ): Record<string, unknown> {
    const total = (order.body.amount as { total: number }).total;
    return {
      refund_id: made.refundId,
      out_refund_no: refundNo,
      transaction_id: order.transactionId,
      out_trade_no: order.outTradeNo,
      status: made.status,
      amount: { refund: made.amount, total, currency: 'CNY' },
    };
  }

  function verifyAuthorization(header: string, method: string, target: string, body: string): boolean {
    const match = /^WECHATPAY2-SHA256-RSA2048 (.+)$/.exec(header);
    if (!match?.[1]) return false;
    const fields = Object.fromEntries([...match[1].matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1] ?? '', m[2] ?? '']));
    if (fields.mchid !== mchId || fields.serial_no !== merchantSerial || !fields.signature) return false;
    const message = `${method}\n${target}\n${fields.timestamp}\n${fields.nonce_str}\n${body}\n`;
    return createVerify('RSA-SHA256').update(message).verify(merchant.publicKey, fields.signature, 'base64');
  }

  function sign(body: string, privateKey = platform.privateKey, timestamp = Math.floor(Date.now() / 1000)) {
    const nonce = randomBytes(16).toString('hex');
    const signature = createSign('RSA-SHA256').update(`${timestamp}\n${nonce}\n${body}\n`).sign(privateKey, 'base64');
    return {
      'wechatpay-timestamp': String(timestamp),
      'wechatpay-nonce': nonce,
      'wechatpay-signature': signature,
      'wechatpay-serial': serial,
      'wechatpay-signature-type': 'WECHATPAY2-SHA256-RSA2048',
    };
  }

  function answer(res: http.ServerResponse, status: number, data: Record<string, unknown> | null): void {
    const text = data === null ? '' : JSON.stringify(data);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...sign(text) }).end(text);
  }

  function notifyFor(outTradeNo: string, data: Record<string, unknown> = {}): FakeWechatNotify {
    const order = orders.get(outTradeNo);
    if (!order) throw new Error(`no order ${outTradeNo}`);
    return encryptedNotify('TRANSACTION.SUCCESS', 'transaction', '支付成功', { ...transactionOf(order), ...data });
  }

  function refundNotify(outRefundNo: string): FakeWechatNotify {
    for (const order of orders.values()) {
      const made = order.refunds.get(outRefundNo);
      if (!made) continue;
      const refund = refundOf(order, outRefundNo, made);
      return encryptedNotify(`REFUND.${made.status}`, 'refund', '退款成功', {
        mchid: mchId,
        out_trade_no: order.outTradeNo,
        transaction_id: order.transactionId,
        out_refund_no: outRefundNo,
        refund_id: made.refundId,
        refund_status: made.status,
        success_time: new Date().toISOString().replace(/\.\d{3}Z$/, '+00:00'),
        amount: {
          total: (refund.amount as { total: number }).total,
          refund: made.amount,
          payer_total: 0,
          payer_refund: made.amount,
        },
      });
    }
    throw new Error(`no refund ${outRefundNo}`);
  }

  function encryptedNotify(
    eventType: string,
    originalType: string,
    summary: string,
    resource: Record<string, unknown>,
  ): FakeWechatNotify {
    const plain = JSON.stringify(resource);
    const nonce = randomBytes(6).toString('hex');
    const aad = originalType;
    const cipher = createCipheriv('aes-256-gcm', Buffer.from(apiV3Key), nonce).setAAD(Buffer.from(aad));
    const ciphertext = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]).toString(
      'base64',
    );
    const body = JSON.stringify({
      id: `EV-${randomBytes(8).toString('hex')}`,
      create_time: new Date().toISOString().replace(/\.\d{3}Z$/, '+00:00'),
      resource_type: 'encrypt-resource',
      event_type: eventType,
      summary,
      resource: {
        original_type: originalType,
        algorithm: 'AEAD_AES_256_GCM',
        ciphertext,
        associated_data: aad,
        nonce,
      },
    });
    return signNotify(body);
  }

  function signNotify(
    body: string,
    signOptions: { privateKey?: string; timestamp?: number; serial?: string } = {},
  ): FakeWechatNotify {
    const headers = {
      'content-type': 'application/json',
      ...sign(body, signOptions.privateKey, signOptions.timestamp),
    };
    if (signOptions.serial) headers['wechatpay-serial'] = signOptions.serial;
    return { rawBody: Buffer.from(body), headers };
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;

  return {
    url: baseUrl,
    serial,
    gatewayOptions: {
      appId,
      mchId,
      merchantSerial,
      privateKey: merchant.privateKey,
      apiV3Key,
      platformKeys: { [serial]: verifyKey },
      baseUrl: `${baseUrl}/`,
    },
    requests,
    order: (outTradeNo) => orders.get(outTradeNo),
    orderCount: () => orders.size,
    failNext(fault, failOptions = {}) {
      for (let i = 0; i < (failOptions.count ?? 1); i++) faults.push({ fault, on: failOptions.on });
    },
    customerPays(outTradeNo) {
      const order = orders.get(outTradeNo);
      if (!order) throw new Error(`no order ${outTradeNo}`);
      if (order.state !== 'NOTPAY') throw new Error(`order ${outTradeNo} is ${order.state}`);
      order.state = 'SUCCESS';
      order.successTime = new Date().toISOString().replace(/\.\d{3}Z$/, '+00:00');
      return notifyFor(outTradeNo);
    },
    customerFails(outTradeNo) {
      const order = orders.get(outTradeNo);
      if (!order || order.state !== 'NOTPAY') throw new Error(`order ${outTradeNo} cannot fail`);
      order.state = 'PAYERROR';
    },
    notifyFor,
    refundNotify,
    signNotify,
    async deliver(outTradeNo, notify) {
      const target = orders.get(outTradeNo)?.body.notify_url;
      if (typeof target !== 'string') throw new Error(`no notify_url for ${outTradeNo}`);
      const response = await fetch(target, { method: 'POST', headers: notify.headers, body: notify.rawBody });
      await response.arrayBuffer();
      return response.status;
    },
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

interface Route {
  operation: FakeWechatPayOperation;
  id: string | undefined;
}

function routeOf(method: string, pathname: string): Route | undefined {
  if (method === 'POST' && pathname === '/v3/pay/transactions/native') return { operation: 'native', id: undefined };
  if (method === 'POST' && pathname === '/v3/pay/transactions/h5') return { operation: 'h5', id: undefined };
  if (method === 'POST' && pathname === '/v3/refund/domestic/refunds') return { operation: 'refund', id: undefined };
  const refund = /^\/v3\/refund\/domestic\/refunds\/([^/]+)$/.exec(pathname);
  if (method === 'GET' && refund) return { operation: 'refund_query', id: decodeURIComponent(refund[1] ?? '') };
  const order = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)(\/close)?$/.exec(pathname);
  if (!order) return undefined;
  const id = decodeURIComponent(order[1] ?? '');
  if (method === 'POST' && order[2]) return { operation: 'close', id };
  if (method === 'GET' && !order[2]) return { operation: 'query', id };
  return undefined;
}

function error(code: string, message = code): Record<string, unknown> {
  return { code, message };
}

/** A platform certificate like WeChat Pay's: X.509 over the platform key, named by its serial. */
function selfSignedCertificate(privateKey: string): { serial: string; verifyKey: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-wechat-'));
  try {
    const keyFile = path.join(dir, 'key.pem');
    fs.writeFileSync(keyFile, privateKey);
    const serial = randomBytes(20)
      .toString('hex')
      .toUpperCase()
      .replace(/^[89A-F]/, '1');
    const certificate = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-x509',
        '-key',
        keyFile,
        '-subj',
        '/CN=Tenpay.com Root CA',
        '-days',
        '2',
        '-set_serial',
        `0x${serial}`,
      ],
      { encoding: 'utf8' },
    );
    return { serial, verifyKey: certificate };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
