import { sql } from 'drizzle-orm';
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify';
import { CadenceBook } from '../../src/cadences/cadence-book.js';
import { applyCadences } from '../../src/cadences/cadence-store.js';
import { parseCadenceDocument } from '../../src/cadences/parse-cadence.js';
import type { EmailMessage, EmailSender } from '../../src/channels/email-sender.js';
import type { SmsMessage, SmsSender } from '../../src/channels/sms-sender.js';
import { rows } from '../../src/db/rows.js';
import { parseEvent } from '../../src/domain/event-schema.js';
import { PageRenderer } from '../../src/http/pages/page-renderer.js';
import { TemplateRenderer } from '../../src/messages/template-renderer.js';
import { applyEvent, type ApplyEventDeps } from '../../src/orders/apply-event.js';
import { PaymentGateways } from '../../src/payments/gateways.js';
import { SandboxGateway } from '../../src/payments/gateways/sandbox/sandbox-gateway.js';
import { InMemorySandboxStore } from '../../src/payments/gateways/sandbox/sandbox-store.js';
import { sandboxRoutes } from '../../src/payments/gateways/sandbox/sandbox.routes.js';
import { retryPageRoutes } from '../../src/payments/retry-pages.routes.js';
import type { RetryDeps } from '../../src/payments/retry-session.js';
import { FixedClock } from '../../src/platform/clock.js';
import { createLogger } from '../../src/platform/logger.js';
import { dispatchStep, type DispatchDeps } from '../../src/recoveries/dispatch-step.js';
import { createTestDatabase, type TestDatabase } from './postgres.js';
import { makeEvent } from './service.js';

/**
 * The retry pages and the dispatcher over a real database, on a fixed clock, without a worker: a
 * test sends each reminder itself (`remind`, `next`) and reads what it said, then opens its link as
 * a browser would. Payments go to the embedded sandbox gateway.
 */

export const publicUrl = 'https://pay.example-shop.com';

/** A message handed to a provider: its text as the customer reads it. */
export interface Sent {
  messageId: string;
  to: string;
  /** The SMS body, or the email's text part. */
  text: string;
  html: string | null;
}

class RecordingSms implements SmsSender {
  readonly transport = 'recording';
  constructor(private readonly sent: Sent[]) {}
  async send(message: SmsMessage) {
    this.sent.push({ messageId: message.messageId, to: message.to, text: message.body, html: null });
    return { providerId: `sms-${message.messageId}`, acceptedAt: new Date() };
  }
  async close() {}
}

class RecordingEmail implements EmailSender {
  readonly transport = 'recording';
  constructor(private readonly sent: Sent[]) {}
  async send(message: EmailMessage) {
    this.sent.push({ messageId: message.messageId, to: message.to, text: message.text, html: message.html });
    return { providerId: `email-${message.messageId}`, acceptedAt: new Date() };
  }
  async close() {}
}

export interface Link {
  token: string;
  orderId: string;
  recoveryId: string;
  messageId: string;
  /** What the reminder carrying the link said. */
  message: Sent;
}

export interface RetryHarness {
  clock: FixedClock;
  database: TestDatabase;
  dispatch: DispatchDeps;
  retry: RetryDeps;
  sandbox: SandboxGateway;
  app: FastifyInstance;
  /** Starts a recovery for a failed payment (makeEvent's, with these changes) and sends its first step. */
  remind(
    order?: Record<string, unknown>,
    payment?: Record<string, unknown>,
    customer?: Record<string, unknown>,
  ): Promise<Link>;
  /** Moves the clock to the recovery's next wake-up and runs it; the link of what it sent, if it sent. */
  next(recoveryId: string): Promise<Link | undefined>;
  /** GET of a retry-page path, e.g. `/r/<token>`, with the cookie a browser would keep. */
  get(path: string): Promise<LightMyRequestResponse>;
  /** Opens the link's page and submits its form with `fields` (contact details kept as on file). */
  submit(token: string, fields: Record<string, string>): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function startRetryHarness(options: {
  cadences: string;
  start: string;
  dispatch?: Partial<DispatchDeps['settings']>;
}): Promise<RetryHarness> {
  const clock = new FixedClock(options.start);
  const database = await createTestDatabase();
  const renderer = TemplateRenderer.load('templates');
  await applyCadences(database.db, parseCadenceDocument(options.cadences, { templates: renderer }));
  const cadences = new CadenceBook(database.db);
  const logger = createLogger('silent');
  const sent: Sent[] = [];
  const sandbox = new SandboxGateway({
    publicUrl,
    webhookSecret: 'sbx-secret',
    clock,
    store: new InMemorySandboxStore(),
  });
  const intake: ApplyEventDeps = { db: database.db, cadences, abandonAfterMs: 1_800_000, clickWindowMs: 86_400_000 };
  const dispatch: DispatchDeps = {
    db: database.db,
    cadences,
    renderer,
    sms: new RecordingSms(sent),
    email: new RecordingEmail(sent),
    clock,
    logger,
    settings: {
      publicUrl,
      shopName: 'Example Shop',
      defaultTimezone: 'UTC',
      defaultLocale: 'en',
      retryLinkTtlMs: 7 * 86_400_000,
      quietHoursSpreadMs: 0,
      sendMaxAttempts: 3,
      sendRetryBaseMs: 1_000,
      claimStaleAfterMs: 60_000,
      ...options.dispatch,
    },
  };
  const retry: RetryDeps = {
    db: database.db,
    cadences,
    gateways: new PaymentGateways([sandbox], { card: 'sandbox', alipay: 'sandbox', wechat_pay: 'sandbox' }),
    clock,
    logger,
    publicUrl,
    shopName: 'Example Shop',
    defaultLocale: 'en',
    clickWindowMs: 86_400_000,
  };
  const app = Fastify({ logger: false });
  app.register(sandboxRoutes(sandbox));
  await retryPageRoutes(app, {
    retry,
    secret: 'page-secret-for-tests-only',
    pages: PageRenderer.load('templates/pages'),
    rateLimit: { max: 10_000, timeWindowMs: 60_000 },
  });
  await app.ready();

  let cookie: string | undefined;
  const get = async (path: string) => {
    const response = await app.inject({ method: 'GET', url: path, headers: cookie ? { cookie } : {} });
    const setCookie = response.headers['set-cookie'];
    const first = Array.isArray(setCookie) ? setCookie[0] : setCookie;
    if (first) cookie = first.split(';')[0];
    return response;
  };

  const linkOf = async (messageId: string): Promise<Link> => {
    const [row] = await rows<{ link_token: string; order_id: string; recovery_id: string }>(
      database.db,
      sql`select link_token, order_id, recovery_id from messages where id = ${messageId}`,
    );
    const message = sent.find((m) => m.messageId === messageId);
    if (!row || !message) throw new Error(`message ${messageId} was not sent`);
    return { token: row.link_token, orderId: row.order_id, recoveryId: row.recovery_id, messageId, message };
  };

  const next = async (recoveryId: string) => {
    const [recovery] = await rows<{ wake_seq: number; next_run_at: Date | null }>(
      database.db,
      sql`select wake_seq, next_run_at from recoveries where id = ${recoveryId} and state = 'active'`,
    );
    if (!recovery) return undefined;
    if (recovery.next_run_at && recovery.next_run_at > clock.now()) clock.set(recovery.next_run_at);
    const result = await dispatchStep(dispatch, { recoveryId, wakeSeq: recovery.wake_seq });
    return result.action === 'sent' && result.messageId ? linkOf(result.messageId) : undefined;
  };

  return {
    clock,
    database,
    dispatch,
    retry,
    sandbox,
    app,
    async remind(order = {}, payment = {}, customer = {}) {
      const base = makeEvent({ occurred_at: clock.now().toISOString() });
      const event = parseEvent({
        ...base,
        order: { ...base.order, ...order, customer: { ...base.order.customer, ...customer } },
        payment: { ...base.payment, ...payment },
      });
      const result = await applyEvent(intake, event, clock.now());
      const [wakeup] = result.status === 'accepted' ? result.wakeups : [];
      if (!wakeup) throw new Error('the recovery did not start');
      const link = await next(wakeup.recoveryId);
      if (!link) throw new Error('the first reminder was not sent');
      return link;
    },
    next,
    get,
    async submit(token, fields) {
      const page = await get(`/r/${token}`);
      const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '';
      return app.inject({
        method: 'POST',
        url: `/r/${token}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
        payload: new URLSearchParams({ csrf, email: '', phone: '', ...fields }).toString(),
      });
    },
    async close() {
      await app.close();
      sandbox.close();
      await database.drop();
    },
  };
}
