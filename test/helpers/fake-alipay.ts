import { createSign, createVerify, generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A local stand-in for the slice of Alipay's open platform (`gateway.do`, RSA2) that
 * AlipayGateway calls, so the real `alipay-sdk` runs against it through its `gateway`
 * option: no network in tests.
 *
 * Like Alipay it verifies every request's RSA2 signature with the application's public key
 * (`isv.invalid-signature` otherwise), signs every answer with Alipay's private key (the SDK
 * verifies it), and keeps trades by `out_trade_no`:
 * - `alipay.trade.precreate` creates a trade up front (a repeat with the same parameters
 *   answers the same QR code; a paid or closed trade is `ACQ.TRADE_HAS_SUCCESS` /
 *   `ACQ.TRADE_HAS_CLOSE`);
 * - `alipay.trade.page.pay` / `alipay.trade.wap.pay` are browser GETs to the cashier page: the
 *   trade is created only when the customer opens it, as at Alipay;
 * - `alipay.trade.query` (`ACQ.TRADE_NOT_EXIST` for a trade never created), `alipay.trade.close`
 *   (`ACQ.TRADE_STATUS_ERROR` unless waiting), `alipay.trade.refund` (idempotent per
 *   `out_request_no`, `ACQ.REFUND_AMT_NOT_EQUAL_TOTAL` beyond what is left) and
 *   `alipay.trade.fastpay.refund.query`.
 *
 * The customer's side is `customerPays` (and the cashier page's Pay button, which also posts
 * the notify to `notify_url` and sends the browser to `return_url`). Notifies are signed like
 * Alipay signs them: sorted `key=value` pairs without `sign` and `sign_type`, RSA-SHA256.
 *
 * Faults (`failNext`): an Alipay error answer (`{ subCode: 'ACQ.SYSTEM_ERROR' }`), an HTTP
 * status, `hang` (process, never answer) or `lost` (process, then answer a system error).
 */
export interface FakeAlipay {
  readonly url: string;
  /** What AlipayGateway needs to talk to this server (the application's keys included). */
  readonly gatewayOptions: { appId: string; privateKey: string; alipayPublicKey: string; gatewayUrl: string };
  readonly appId: string;
  /** Every API call (not cashier pages), oldest first. */
  readonly requests: readonly FakeAlipayRequest[];
  trade(outTradeNo: string): FakeAlipayTrade | undefined;
  tradeCount(): number;
  /** The next `count` calls of `method` (any, by default) get `fault`. */
  failNext(fault: FakeAlipayFault, options?: { count?: number; on?: string }): void;
  /**
   * The customer pays the trade (opening the cashier first for a page-pay link). Returns the
   * notify Alipay posts. Throws if the trade cannot be paid (closed, or already paid).
   */
  customerPays(outTradeNo: string, options?: { cashierUrl?: string }): FakeNotify;
  /** The notify Alipay would post now about the trade (e.g. a resend). */
  notifyFor(outTradeNo: string, overrides?: Record<string, string>): FakeNotify;
  /** Signs notify fields like Alipay, with its key or `privateKey`. */
  signNotify(fields: Record<string, string>, privateKey?: string): FakeNotify;
  close(): Promise<void>;
}

export interface FakeNotify {
  rawBody: Buffer;
  headers: Record<string, string>;
}

export interface FakeAlipayRequest {
  method: string;
  bizContent: Record<string, unknown>;
  notifyUrl: string | undefined;
}

export interface FakeAlipayTrade {
  outTradeNo: string;
  tradeNo: string;
  amount: string;
  subject: string;
  status: 'WAIT_BUYER_PAY' | 'TRADE_SUCCESS' | 'TRADE_FINISHED' | 'TRADE_CLOSED';
  passback: string | undefined;
  notifyUrl: string | undefined;
  returnUrl: string | undefined;
  qrCode: string | undefined;
  paidAt: string | undefined;
  refunds: Map<string, { amount: string; at: string }>;
  refundedFen: number;
}

export type FakeAlipayFault =
  { subCode: string; code?: string; unsigned?: boolean } | { status: number } | 'hang' | 'lost';

export async function startFakeAlipay(): Promise<FakeAlipay> {
  const appKeys = rsaKeys();
  const alipayKeys = rsaKeys();
  const appId = `2021${randomBytes(6).toString('hex')}`.slice(0, 16);
  const requests: FakeAlipayRequest[] = [];
  const trades = new Map<string, FakeAlipayTrade>();
  const faults: { fault: FakeAlipayFault; on: string | undefined }[] = [];
  const sockets = new Set<Socket>();
  let seq = 0;

  const server = http.createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const raw = await readBody(req);
    if (url.pathname === '/cashier/pay' && req.method === 'POST') return cashierPay(new URLSearchParams(raw), res);
    if (url.pathname !== '/gateway.do') return void res.writeHead(404).end();
    const params: Record<string, string> = Object.fromEntries(url.searchParams);
    for (const [key, value] of new URLSearchParams(raw)) params[key] = value;
    const method = params.method ?? '';
    const responseKey = `${method.replaceAll('.', '_')}_response`;
    if (!verifyRequest(params, appKeys.publicKey)) {
      return answer(res, responseKey, {
        code: '40002',
        msg: 'Invalid Arguments',
        sub_code: 'isv.invalid-signature',
        sub_msg: 'invalid signature',
      });
    }
    if (params.app_id !== appId) {
      return answer(res, responseKey, { code: '40002', msg: 'Invalid Arguments', sub_code: 'isv.invalid-app-id' });
    }
    const bizContent = JSON.parse(params.biz_content ?? '{}') as Record<string, unknown>;
    if (req.method === 'GET' && (method === 'alipay.trade.page.pay' || method === 'alipay.trade.wap.pay')) {
      return cashierPage(url, params, bizContent, res);
    }
    requests.push({ method, bizContent, notifyUrl: params.notify_url });
    const index = faults.findIndex((f) => f.on === undefined || f.on === method);
    const fault = index >= 0 ? faults.splice(index, 1)[0]?.fault : undefined;
    if (fault === 'hang') {
      operate(method, bizContent, params);
      return; // never answers
    }
    if (fault && typeof fault === 'object' && 'status' in fault) return void res.writeHead(fault.status).end('error');
    if (fault && typeof fault === 'object' && fault.unsigned) {
      // Some refusals come without a signature.
      const refusal = { code: fault.code ?? '40002', msg: 'Invalid Arguments', sub_code: fault.subCode };
      return void res.writeHead(200).end(JSON.stringify({ [responseKey]: refusal }));
    }
    if (fault && typeof fault === 'object') {
      return answer(res, responseKey, {
        code: fault.code ?? '40004',
        msg: 'Business Failed',
        sub_code: fault.subCode,
        sub_msg: fault.subCode,
      });
    }
    const result = operate(method, bizContent, params);
    if (fault === 'lost') {
      return answer(res, responseKey, {
        code: '20000',
        msg: 'Service Currently Unavailable',
        sub_code: 'isp.unknow-error',
      });
    }
    return answer(res, responseKey, result);
  }

  function operate(
    method: string,
    biz: Record<string, unknown>,
    params: Record<string, string>,
  ): Record<string, unknown> {
    const outTradeNo = String(biz.out_trade_no ?? '');
    const trade = trades.get(outTradeNo);
    switch (method) {
      case 'alipay.trade.precreate': {
        if (!/^[A-Za-z0-9_]{1,64}$/.test(outTradeNo) || !/^\d+\.\d{2}$/.test(String(biz.total_amount))) {
          return failure('40002', 'ACQ.INVALID_PARAMETER');
        }
        if (trade) {
          if (trade.status === 'TRADE_SUCCESS' || trade.status === 'TRADE_FINISHED') {
            return failure('40004', 'ACQ.TRADE_HAS_SUCCESS');
          }
          if (trade.status === 'TRADE_CLOSED') return failure('40004', 'ACQ.TRADE_HAS_CLOSE');
          if (trade.amount !== biz.total_amount) return failure('40004', 'ACQ.CONTEXT_INCONSISTENT');
        }
        const created = trade ?? openTrade(biz, params);
        created.qrCode ??= `https://qr.alipay.com/bax0${randomBytes(8).toString('hex')}`;
        return { code: '10000', msg: 'Success', out_trade_no: outTradeNo, qr_code: created.qrCode };
      }
      case 'alipay.trade.query':
        if (!trade) return failure('40004', 'ACQ.TRADE_NOT_EXIST');
        return {
          code: '10000',
          msg: 'Success',
          out_trade_no: trade.outTradeNo,
          trade_no: trade.tradeNo,
          trade_status: trade.status,
          total_amount: trade.amount,
          ...(trade.paidAt ? { send_pay_date: trade.paidAt } : {}),
        };
      case 'alipay.trade.close':
        if (!trade) return failure('40004', 'ACQ.TRADE_NOT_EXIST');
        if (trade.status !== 'WAIT_BUYER_PAY') return failure('40004', 'ACQ.TRADE_STATUS_ERROR');
        trade.status = 'TRADE_CLOSED';
        return { code: '10000', msg: 'Success', out_trade_no: outTradeNo, trade_no: trade.tradeNo };
      case 'alipay.trade.refund': {
        if (!trade) return failure('40004', 'ACQ.TRADE_NOT_EXIST');
        const requestNo = String(biz.out_request_no ?? outTradeNo);
        const amount = String(biz.refund_amount ?? '');
        const existing = trade.refunds.get(requestNo);
        if (existing) {
          if (existing.amount !== amount) return failure('40004', 'ACQ.CONTEXT_INCONSISTENT');
          return refundAnswer(trade, 'N');
        }
        if (trade.status !== 'TRADE_SUCCESS') return failure('40004', 'ACQ.TRADE_STATUS_ERROR');
        const fen = toFen(amount);
        if (fen <= 0) return failure('40002', 'ACQ.INVALID_PARAMETER');
        if (fen > toFen(trade.amount) - trade.refundedFen) return failure('40004', 'ACQ.REFUND_AMT_NOT_EQUAL_TOTAL');
        trade.refunds.set(requestNo, { amount, at: beijingNow() });
        trade.refundedFen += fen;
        if (trade.refundedFen === toFen(trade.amount)) trade.status = 'TRADE_CLOSED';
        return refundAnswer(trade, 'Y');
      }
      case 'alipay.trade.fastpay.refund.query': {
        if (!trade) return failure('40004', 'ACQ.TRADE_NOT_EXIST');
        const refund = trade.refunds.get(String(biz.out_request_no ?? ''));
        return refund
          ? {
              code: '10000',
              msg: 'Success',
              out_trade_no: outTradeNo,
              out_request_no: biz.out_request_no,
              refund_amount: refund.amount,
              refund_status: 'REFUND_SUCCESS',
            }
          : { code: '10000', msg: 'Success' };
      }
      default:
        return failure('40004', 'isv.invalid-method');
    }
  }

  function refundAnswer(trade: FakeAlipayTrade, fundChange: 'Y' | 'N'): Record<string, unknown> {
    return {
      code: '10000',
      msg: 'Success',
      out_trade_no: trade.outTradeNo,
      trade_no: trade.tradeNo,
      fund_change: fundChange,
      refund_fee: fen2yuan(trade.refundedFen),
    };
  }

  function openTrade(biz: Record<string, unknown>, params: Record<string, string>): FakeAlipayTrade {
    seq += 1;
    const trade: FakeAlipayTrade = {
      outTradeNo: String(biz.out_trade_no),
      tradeNo: `2026${String(seq).padStart(24, '0')}`,
      amount: String(biz.total_amount),
      subject: String(biz.subject ?? ''),
      status: 'WAIT_BUYER_PAY',
      passback: typeof biz.passback_params === 'string' ? biz.passback_params : undefined,
      notifyUrl: params.notify_url,
      returnUrl: params.return_url,
      qrCode: undefined,
      paidAt: undefined,
      refunds: new Map(),
      refundedFen: 0,
    };
    trades.set(trade.outTradeNo, trade);
    return trade;
  }

  /** Opening the cashier creates the trade (or finds it); a closed or paid one cannot be paid here. */
  function openCashier(params: Record<string, string>, biz: Record<string, unknown>): FakeAlipayTrade | string {
    const outTradeNo = String(biz.out_trade_no ?? '');
    const existing = trades.get(outTradeNo);
    if (existing) {
      if (existing.status !== 'WAIT_BUYER_PAY') return `This trade is ${existing.status}`;
      if (existing.amount !== biz.total_amount) return 'ACQ.CONTEXT_INCONSISTENT';
      return existing;
    }
    const expire = typeof biz.time_expire === 'string' ? biz.time_expire : undefined;
    if (expire && expire < beijingNow()) return 'This payment link has expired';
    return openTrade(biz, params);
  }

  function cashierPage(
    url: URL,
    params: Record<string, string>,
    biz: Record<string, unknown>,
    res: http.ServerResponse,
  ): void {
    const trade = openCashier(params, biz);
    if (typeof trade === 'string') {
      res.writeHead(409, { 'content-type': 'text/html; charset=utf-8' }).end(`<h1>${escape(trade)}</h1>`);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
      `<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>支付宝 收银台 (fake)</title></head>
<body><h1>支付宝收银台 (fake Alipay cashier)</h1>
<p>${escape(trade.subject)}</p><p id="amount">¥${escape(trade.amount)}</p>
<form method="post" action="/cashier/pay"><input type="hidden" name="out_trade_no" value="${escape(trade.outTradeNo)}">
<button type="submit">确认付款 Pay</button></form><p>${escape(url.searchParams.get('method') ?? '')}</p></body></html>`,
    );
  }

  async function cashierPay(form: URLSearchParams, res: http.ServerResponse): Promise<void> {
    const trade = trades.get(form.get('out_trade_no') ?? '');
    if (!trade || trade.status !== 'WAIT_BUYER_PAY') return void res.writeHead(409).end('cannot pay');
    const notify = pay(trade);
    if (trade.notifyUrl) {
      // Alipay waits for `success`; the browser goes back either way.
      await fetch(trade.notifyUrl, { method: 'POST', headers: notify.headers, body: notify.rawBody }).catch(() => {});
    }
    const back = new URL(trade.returnUrl ?? 'about:blank');
    back.searchParams.set('out_trade_no', trade.outTradeNo);
    back.searchParams.set('trade_no', trade.tradeNo);
    back.searchParams.set('total_amount', trade.amount);
    res.writeHead(302, { location: back.toString() }).end();
  }

  function pay(trade: FakeAlipayTrade): FakeNotify {
    if (trade.status !== 'WAIT_BUYER_PAY') throw new Error(`trade ${trade.outTradeNo} is ${trade.status}`);
    trade.status = 'TRADE_SUCCESS';
    trade.paidAt = beijingNow();
    return notifyOf(trade);
  }

  function notifyOf(trade: FakeAlipayTrade, overrides: Record<string, string> = {}): FakeNotify {
    const now = beijingNow();
    const fields: Record<string, string> = {
      notify_time: now,
      notify_type: 'trade_status_sync',
      notify_id: `2026${randomBytes(12).toString('hex')}`,
      charset: 'utf-8',
      version: '1.0',
      sign_type: 'RSA2',
      app_id: appId,
      trade_no: trade.tradeNo,
      out_trade_no: trade.outTradeNo,
      buyer_logon_id: 'li***@example.com',
      trade_status: trade.status,
      total_amount: trade.amount,
      receipt_amount: trade.amount,
      subject: trade.subject,
      gmt_create: now,
      ...(trade.paidAt ? { gmt_payment: trade.paidAt } : {}),
      ...(trade.passback ? { passback_params: trade.passback } : {}),
      ...overrides,
    };
    return signNotify(fields);
  }

  function signNotify(fields: Record<string, string>, privateKey = alipayKeys.privateKey): FakeNotify {
    const content = Object.keys(fields)
      .filter((key) => key !== 'sign' && key !== 'sign_type')
      .sort()
      .map((key) => `${key}=${fields[key] ?? ''}`)
      .join('&');
    const sign = createSign('RSA-SHA256').update(content, 'utf8').sign(privateKey, 'base64');
    const body = new URLSearchParams({ ...fields, sign });
    return {
      rawBody: Buffer.from(body.toString()),
      headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    };
  }

  function answer(res: http.ServerResponse, responseKey: string, data: Record<string, unknown>): void {
    const inner = JSON.stringify(data);
    const sign = createSign('RSA-SHA256').update(inner, 'utf8').sign(alipayKeys.privateKey, 'base64');
    res
      .writeHead(200, { 'content-type': 'text/html;charset=utf-8' })
      .end(`{"${responseKey}":${inner},"sign":"${sign}"}`);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;

  return {
    url: baseUrl,
    appId,
    gatewayOptions: {
      appId,
      privateKey: appKeys.privateKey,
      alipayPublicKey: alipayKeys.publicKey,
      gatewayUrl: `${baseUrl}/gateway.do`,
    },
    requests,
    trade: (outTradeNo) => trades.get(outTradeNo),
    tradeCount: () => trades.size,
    failNext(fault, options = {}) {
      for (let i = 0; i < (options.count ?? 1); i++) faults.push({ fault, on: options.on });
    },
    customerPays(outTradeNo, options = {}) {
      let trade = trades.get(outTradeNo);
      if (!trade && options.cashierUrl) {
        const link = new URL(options.cashierUrl);
        const params = Object.fromEntries(link.searchParams);
        if (!verifyRequest(params, appKeys.publicKey)) throw new Error('cashier link not signed by the app');
        const opened = openCashier(params, JSON.parse(params.biz_content ?? '{}') as Record<string, unknown>);
        if (typeof opened === 'string') throw new Error(opened);
        trade = opened;
      }
      if (!trade) throw new Error(`no trade ${outTradeNo}`);
      return pay(trade);
    },
    notifyFor(outTradeNo, overrides) {
      const trade = trades.get(outTradeNo);
      if (!trade) throw new Error(`no trade ${outTradeNo}`);
      return notifyOf(trade, overrides);
    },
    signNotify,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}

/** Alipay's request signature: every parameter but `sign`, sorted, `key=value` joined by `&`. */
function verifyRequest(params: Record<string, string>, publicKey: string): boolean {
  const sign = params.sign;
  if (!sign) return false;
  const content = Object.keys(params)
    .filter((key) => key !== 'sign')
    .sort()
    .map((key) => `${key}=${params[key] ?? ''}`)
    .join('&');
  return createVerify('RSA-SHA256').update(content, 'utf8').verify(publicKey, sign, 'base64');
}

function failure(code: string, subCode: string): Record<string, unknown> {
  return { code, msg: code === '40002' ? 'Invalid Arguments' : 'Business Failed', sub_code: subCode, sub_msg: subCode };
}

export function rsaKeys(): { privateKey: string; publicKey: string } {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

function toFen(yuan: string): number {
  const [whole = '0', cents = ''] = yuan.split('.');
  return Number(whole) * 100 + Number(cents.padEnd(2, '0').slice(0, 2));
}

function fen2yuan(fen: number): string {
  return `${Math.trunc(fen / 100)}.${String(fen % 100).padStart(2, '0')}`;
}

function beijingNow(): string {
  return new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 19).replace('T', ' ');
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
