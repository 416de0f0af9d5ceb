import type pg from 'pg';
import { signSandboxPayload } from '../../src/payments/gateways/sandbox/sandbox-signature.js';
import { mulberry32, type FakeSmtp } from '../helpers/fake-smtp.js';
import type { FakeTwilio } from '../helpers/fake-twilio.js';
import { cadenceSpanMs, options, type Counters, type OrderPlan } from './options.js';
import { semaphore, sleep } from './processes.js';

/**
 * The harness's orders and everything that happens to them from outside: the shop's events, the
 * gateway's webhooks, the customers' STOP replies, new numbers and unsubscribe clicks, ops
 * stopping recoveries in the console. Every request is retried as its real sender would, until
 * answered; each answer is timed when its status line arrived.
 */

/**
 * A fixed-offset zone whose local time is now about `hour` o'clock (Etc/GMT-3 is UTC+3): far from
 * the quiet hours' edges and from midnight for the few minutes of a run.
 */
export function zoneWithLocalHour(hour: number, now = new Date()): string {
  const utcHours = now.getUTCHours() + now.getUTCMinutes() / 60;
  let offset = Math.round((((hour - utcHours) % 24) + 24) % 24);
  if (offset > 14) offset -= 24;
  return offset === 0 ? 'Etc/UTC' : `Etc/GMT${offset > 0 ? '-' : '+'}${Math.abs(offset)}`;
}

/** Draws every order of the run from the seed. */
export function drawOrders(runId: string, random: () => number): OrderPlan[] {
  const plans: OrderPlan[] = [];
  // The customer-side faults draw from their own streams, so the older draws stay what they were.
  const customerRandom = mulberry32(options.seed + 2);
  const within = () => Math.floor(customerRandom() * (cadenceSpanMs + 1_000));
  const dayZone = zoneWithLocalHour(13);
  const nightZone = zoneWithLocalHour(2);
  for (let i = 0; i < options.orders; i += 1) {
    const paid = random() < options.payRate;
    const stop = customerRandom() < options.stopRate;
    const change = customerRandom() < options.phoneChangeRate;
    plans.push({
      index: i,
      orderId: `ord_chaos_${runId}_${i}`,
      customerId: `cus_chaos_${runId}_${i}`,
      phone: `+1415${String(1_000_000 + i).padStart(7, '0')}`,
      email: `c${i}@chaos.example`,
      timezone: dayZone,
      night: false,
      customerOrders: 1,
      amount: 1_000 + Math.floor(random() * 49_000),
      payAfterMs: paid ? Math.floor(random() * (cadenceSpanMs + 2_000)) : undefined,
      payTwice: paid && random() < 0.2,
      failedAccepted: false,
      paidAckAt: undefined,
      payViaGateway: paid && customerRandom() < options.gatewayPayShare,
      throughServerCrash: false,
      stopAfterMs: stop ? within() : undefined,
      stopAckAt: undefined,
      newPhone: change ? `+1415${String(2_000_000 + i).padStart(7, '0')}` : undefined,
      changeAfterMs: change ? within() : undefined,
      changeAckAt: undefined,
      unsubscribeAfterEmailMs: undefined,
      cancelAfterMs: undefined,
      cancelAckAt: undefined,
      opsStopAfterMs: undefined,
      opsStopAckAt: undefined,
    });
  }

  const extra = mulberry32(options.seed + 4);
  const extraWithin = () => Math.floor(extra() * (cadenceSpanMs + 1_000));
  // An order placed by the customer of an order one to three seconds older, at most three per
  // customer, so that their reminders overlap and the daily cap is reached. Their number never
  // changes (a new number would be every one of their orders' at once).
  const rootOf = new Map<OrderPlan, OrderPlan>();
  const members = new Map<OrderPlan, OrderPlan[]>();
  for (const plan of plans) {
    plan.night = extra() < options.nightCustomerRate;
    if (plan.night) plan.timezone = nightZone;
    const share = extra() < options.sharedCustomerRate;
    const back = 15 + Math.floor(extra() * 30);
    const host = plans[plan.index - back];
    const root = host && (rootOf.get(host) ?? host);
    const group = root ? (members.get(root) ?? [root]) : [];
    if (share && root && group.length < 3) {
      group.push(plan);
      members.set(root, group);
      rootOf.set(plan, root);
      Object.assign(plan, { customerId: root.customerId, phone: root.phone, email: root.email });
      Object.assign(plan, { timezone: root.timezone, night: root.night });
      // The amount tells the customer's SMS apart.
      while (group.some((p) => p !== plan && p.amount === plan.amount)) plan.amount += 1;
      for (const p of group) {
        p.customerOrders = group.length;
        p.newPhone = undefined;
        p.changeAfterMs = undefined;
      }
    }
    // Cancelled or stopped orders are never paid: a payment for a cancelled order is another story.
    if (plan.payAfterMs === undefined && extra() < options.cancelRate) plan.cancelAfterMs = extraWithin();
    else if (plan.payAfterMs === undefined && extra() < options.opsStopRate) plan.opsStopAfterMs = extraWithin();
  }
  for (const plan of plans) {
    if (rootOf.has(plan)) continue;
    const rate = plan.customerOrders > 1 ? options.unsubscribeRate : options.unsubscribeRate / 5;
    if (extra() < rate) plan.unsubscribeAfterEmailMs = Math.floor(extra() * 2_500);
  }
  return plans;
}

export interface TrafficDeps {
  serverUrl: string;
  apiKey: string;
  runId: string;
  webhookSecret: string;
  counters: Counters;
  twilio: FakeTwilio;
  smtp: FakeSmtp;
  /** How many workers are stopped (SIGSTOP) right now. */
  pausedWorkers: () => number;
  /** The run's database: the harness reads the retry links recoup sent, as the customer reads their SMS. */
  db: pg.Pool;
}

type Answer = { status: number; text: string; at: number; headers?: Headers };

/** A payment the sandbox gateway holds for an attempt recoup opened. */
interface GatewayPayment {
  paymentId: string;
  amount: number;
  currency: string;
}

/** How long a paying customer waits for a reminder's retry link before paying at the shop instead. */
const linkWaitMs = 6_000;

export class Traffic {
  readonly #deps: TrafficDeps;
  readonly #limit = semaphore(options.concurrency);
  readonly #random = mulberry32(options.seed + 5);
  /** Plans whose gateway webhook is being delivered right now (a server crash cuts these). */
  readonly deliveriesInFlight = new Set<OrderPlan>();
  /** When each email address's unsubscribe was answered. */
  readonly unsubscribedAt = new Map<string, number>();
  #session: { cookie: string; csrf: string } | undefined;

  constructor(deps: TrafficDeps) {
    this.#deps = deps;
  }

  /** One request, timed when its status line arrived; status 0 for no answer. */
  request(url: string, init: RequestInit, timeoutMs = 15_000): Promise<Answer> {
    return this.#limit(() =>
      fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) })
        .then(async (r) => {
          const at = Date.now();
          return { status: r.status, text: await r.text(), at, headers: r.headers };
        })
        .catch((err: unknown) => ({ status: 0, text: String(err), at: Date.now() })),
    );
  }

  /**
   * Sends until a success status, as a shop, gateway or mail provider does: a 409, a 5xx or no
   * answer means later. Resolves with the successful answer, or undefined (refused, or given up).
   */
  async #until(
    what: string,
    send: (attempt: number) => Promise<Answer>,
    ok: (status: number) => boolean,
  ): Promise<Answer | undefined> {
    for (let attempt = 0; attempt < 40; attempt += 1) {
      const answer = await send(attempt);
      if (ok(answer.status)) return answer;
      if (answer.status >= 400 && answer.status < 500 && answer.status !== 409) {
        console.log(`chaos: ${what} refused ${answer.status}: ${answer.text.slice(0, 300)}`);
        return undefined;
      }
      this.#deps.counters.postRetries += 1;
      await sleep(250 * Math.min(8, attempt + 1));
    }
    this.#deps.counters.postsFailed += 1;
    return undefined;
  }

  /** POSTs a shop event until it is answered 2xx; resolves with the time of that answer, or undefined. */
  async post(body: object): Promise<number | undefined> {
    const answer = await this.#until(
      'event',
      () =>
        this.request(`${this.#deps.serverUrl}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${this.#deps.apiKey}` },
          body: JSON.stringify(body),
        }),
      (status) => status === 200 || status === 202,
    );
    return answer?.at;
  }

  event(plan: OrderPlan, type: 'payment.failed' | 'payment.succeeded' | 'order.cancelled', id: string) {
    return {
      id,
      type,
      occurred_at: new Date().toISOString(),
      order: {
        id: plan.orderId,
        amount: plan.amount,
        currency: 'USD',
        description: `chaos order ${plan.index}`,
        customer: this.#customer(plan, plan.phone),
      },
      payment:
        type === 'payment.failed'
          ? { gateway: 'stripe', method: 'card', failure_code: 'card_declined' }
          : type === 'payment.succeeded'
            ? { gateway: 'stripe', method: 'card', amount: plan.amount }
            : undefined,
    };
  }

  #customer(plan: OrderPlan, phone: string | undefined) {
    return {
      id: plan.customerId,
      name: `Customer ${plan.customerId}`,
      email: plan.email,
      phone,
      timezone: plan.timezone,
    };
  }

  /**
   * The customer opens the newest retry link recoup sent them for the order and picks card:
   * recoup opens an attempt, and the sandbox gateway a payment for it. Waits up to `waitMs` for
   * a link to have been sent; undefined when none came (quiet hours, STOP) or the page refused.
   */
  async openCardAttempt(plan: OrderPlan, waitMs: number): Promise<GatewayPayment | undefined> {
    const deadline = Date.now() + waitMs;
    let token: string | undefined;
    while (!token) {
      const { rows } = await this.#deps.db.query<{ link_token: string }>(
        `select link_token from messages
          where order_id = $1 and link_token is not null and status in ('sent', 'delivered')
            and link_revoked_at is null and link_expires_at > now()
          order by created_at desc limit 1`,
        [plan.orderId],
      );
      token = rows[0]?.link_token;
      if (token) break;
      if (Date.now() >= deadline) return undefined;
      await sleep(200);
    }
    const page = `${this.#deps.serverUrl}/r/${token}`;
    const opened = await this.#until(
      'retry page',
      () => this.request(page, {}),
      (status) => status === 200,
    );
    const cookie = opened?.headers?.get('set-cookie')?.split(';')[0];
    const csrf = opened && /name="csrf" value="([^"]+)"/.exec(opened.text)?.[1];
    if (!cookie || !csrf) return undefined;
    const chosen = await this.#until(
      'card on the retry page',
      () =>
        this.request(page, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
          body: new URLSearchParams({ csrf, email: '', phone: '', method: 'card' }).toString(),
        }),
      (status) => status === 303,
    );
    if (!chosen) return undefined;
    const { rows } = await this.#deps.db.query<{ gateway_payment_id: string; amount: string; currency: string }>(
      `select gateway_payment_id, amount::text as amount, currency from payment_attempts
        where order_id = $1 and gateway = 'sandbox' and status = 'open' and gateway_payment_id is not null
        order by attempt_number desc limit 1`,
      [plan.orderId],
    );
    const attempt = rows[0];
    return attempt
      ? { paymentId: attempt.gateway_payment_id, amount: Number(attempt.amount), currency: attempt.currency }
      : undefined;
  }

  /**
   * The sandbox gateway's payment.succeeded for the attempt's payment, delivered as a gateway
   * does: signed, sometimes twice at once, sometimes given up on before the answer, and sent
   * again after anything but a 2xx. Resolves with the time of the first 2xx, or undefined.
   */
  async payViaGateway(plan: OrderPlan, payment: GatewayPayment): Promise<number | undefined> {
    const body = JSON.stringify({
      id: `evt_${payment.paymentId}`,
      type: 'payment.succeeded',
      created: Math.floor(Date.now() / 1000),
      data: {
        payment_id: payment.paymentId,
        order_id: plan.orderId,
        attempt_id: '',
        amount: payment.amount,
        currency: payment.currency,
        method: 'card',
        failure_code: null,
        refund_id: null,
      },
    });
    const concurrent = this.#random() < 0.3;
    let abandonFirst = this.#random() < 0.2;
    const deliver = () =>
      this.#until(
        'gateway webhook',
        async (attempt) => {
          this.#deps.counters.gatewayDeliveries += 1;
          if (attempt > 0) this.#deps.counters.gatewayRedeliveries += 1;
          // A gateway that stops waiting: the delivery may still be applied, and is sent again.
          const timeoutMs = abandonFirst ? 5 + Math.floor(this.#random() * 50) : 15_000;
          abandonFirst = false;
          this.deliveriesInFlight.add(plan);
          const answer = await this.request(
            `${this.#deps.serverUrl}/webhooks/payments/sandbox`,
            {
              method: 'POST',
              headers: {
                'content-type': 'application/json',
                'recoup-sandbox-signature': signSandboxPayload(body, this.#deps.webhookSecret, new Date()),
              },
              body,
            },
            timeoutMs,
          );
          return answer;
        },
        (status) => status >= 200 && status < 300,
      );
    const answers = await Promise.all(concurrent ? [deliver(), deliver()] : [deliver()]);
    this.deliveriesInFlight.delete(plan);
    const times = answers.flatMap((a) => (a ? [a.at] : []));
    return times.length > 0 ? Math.min(...times) : undefined;
  }

  /** The customer replies STOP from their number (a signed Twilio inbound webhook), until answered 200. */
  async replyStop(plan: OrderPlan): Promise<number | undefined> {
    const answer = await this.#until(
      'STOP',
      () =>
        this.#limit(() =>
          this.#deps.twilio.sendInboundSms(plan.phone, 'STOP').then(
            (a) => ({ status: a.status, text: a.body, at: Date.now() }),
            (err: unknown) => ({ status: 0, text: String(err), at: Date.now() }),
          ),
        ),
      (status) => status === 200,
    );
    return answer?.at;
  }

  /** The customer's new number, from the shop's customer.updated. */
  changePhone(plan: OrderPlan): Promise<number | undefined> {
    return this.post({
      id: `evt_cust_${this.#deps.runId}_${plan.index}`,
      type: 'customer.updated',
      occurred_at: new Date().toISOString(),
      customer: this.#customer(plan, plan.newPhone),
    });
  }

  /** The mail provider's one-click unsubscribe (RFC 8058) from the email's List-Unsubscribe, until answered 200. */
  async unsubscribe(url: string): Promise<number | undefined> {
    const answer = await this.#until(
      'unsubscribe',
      () =>
        this.request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'List-Unsubscribe=One-Click',
        }),
      (status) => status === 200,
    );
    return answer?.at;
  }

  /**
   * A console session of an `ops` key (created with the admin key, then signed in with, as a
   * person would) and its CSRF token, read from a console page's form.
   */
  async openOpsSession(): Promise<void> {
    const url = this.#deps.serverUrl;
    const created = await this.request(`${url}/v1/keys`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.#deps.apiKey}` },
      body: JSON.stringify({ name: 'chaos ops', scopes: ['ops'] }),
    });
    const key = (JSON.parse(created.text) as { key?: string }).key;
    if (created.status !== 201 || !key) throw new Error(`creating an ops key: ${created.status} ${created.text}`);
    const login = await this.request(`${url}/console/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ key, next: '/console' }).toString(),
    });
    const cookie = login.headers?.get('set-cookie')?.split(';')[0];
    if (login.status !== 303 || !cookie) throw new Error(`console login: ${login.status} ${login.text.slice(0, 200)}`);
    const home = await this.request(`${url}/console`, { headers: { cookie } });
    const csrf = /name="csrf" value="([^"]+)"/.exec(home.text)?.[1];
    if (!csrf) throw new Error(`no CSRF token on the console page (${home.status})`);
    this.#session = { cookie, csrf };
  }

  /** Ops stop the order's recovery from the console; the time of the 303, or undefined (ended already, refused). */
  async opsStop(plan: OrderPlan): Promise<number | undefined> {
    const session = this.#session;
    if (!session) return undefined;
    const answer = await this.#until(
      'ops stop',
      () =>
        this.request(`${this.#deps.serverUrl}/console/orders/${plan.orderId}/stop`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: session.cookie },
          body: new URLSearchParams({ csrf: session.csrf }).toString(),
        }),
      // 409: the recovery had ended already (expired, paid): nothing to stop, and nothing to check.
      (status) => status === 303 || status === 409,
    );
    if (answer?.status === 409) this.#deps.counters.opsStopsTooLate += 1;
    return answer?.status === 303 ? answer.at : undefined;
  }

  /**
   * Clicks the unsubscribe link of the first email each unsubscribing customer gets, the
   * customer's delay after it arrived. Runs until `done()`; resolves once every click is answered.
   */
  async watchEmailsForUnsubscribes(plans: OrderPlan[], done: () => boolean): Promise<void> {
    const unsubscribers = new Map(
      plans.filter((p) => p.unsubscribeAfterEmailMs !== undefined).map((p) => [p.email, p]),
    );
    const clicks: Array<Promise<void>> = [];
    let seen = 0;
    while (!done()) {
      const messages = this.#deps.smtp.messages;
      for (; seen < messages.length; seen += 1) {
        const message = messages[seen];
        const address = message?.rcptTo[0];
        const plan = address !== undefined ? unsubscribers.get(address) : undefined;
        const url = message?.listUnsubscribeUrl;
        if (!plan || address === undefined || !url) continue;
        unsubscribers.delete(address);
        clicks.push(
          sleep(plan.unsubscribeAfterEmailMs ?? 0).then(async () => {
            const at = await this.unsubscribe(url);
            if (at === undefined) return;
            this.unsubscribedAt.set(address, at);
            this.#deps.counters.unsubscribesAnswered += 1;
          }),
        );
      }
      await sleep(100);
    }
    await Promise.all(clicks);
  }

  /** One order's life from outside: its payment.failed, then whatever the plan has happen to it, each at its moment. */
  async run(plan: OrderPlan): Promise<void> {
    const { counters, runId } = this.#deps;
    plan.failedAccepted =
      (await this.post(this.event(plan, 'payment.failed', `evt_fail_${runId}_${plan.index}`))) !== undefined;
    if (!plan.failedAccepted) return;
    const after = async (ms: number | undefined, act: () => Promise<void>) => {
      if (ms === undefined) return;
      await sleep(ms);
      await act();
    };
    const payment = async () => {
      // A customer no link reached (quiet hours, STOP) pays at the shop instead.
      const opened = plan.payViaGateway ? await this.openCardAttempt(plan, linkWaitMs) : undefined;
      plan.payViaGateway = opened !== undefined;
      const requestedAt = Date.now();
      const duringPause = this.#deps.pausedWorkers() > 0;
      if (opened) {
        plan.paidAckAt = await this.payViaGateway(plan, opened);
      } else {
        const succeeded = this.event(plan, 'payment.succeeded', `evt_pay_${runId}_${plan.index}`);
        plan.paidAckAt = await this.post(succeeded);
        if (plan.payTwice) await this.post(succeeded);
      }
      if (!duringPause || plan.paidAckAt === undefined) return;
      counters.paymentsWhilePaused += 1;
      counters.paymentAnswerMsMaxWhilePaused = Math.max(
        counters.paymentAnswerMsMaxWhilePaused,
        plan.paidAckAt - requestedAt,
      );
    };
    await Promise.all([
      after(plan.stopAfterMs, async () => {
        plan.stopAckAt = await this.replyStop(plan);
        if (plan.stopAckAt !== undefined) counters.stopsAnswered += 1;
      }),
      after(plan.changeAfterMs, async () => {
        plan.changeAckAt = await this.changePhone(plan);
        if (plan.changeAckAt !== undefined) counters.phoneChangesAnswered += 1;
      }),
      after(plan.cancelAfterMs, async () => {
        plan.cancelAckAt = await this.post(this.event(plan, 'order.cancelled', `evt_cancel_${runId}_${plan.index}`));
        if (plan.cancelAckAt !== undefined) counters.cancelsAnswered += 1;
      }),
      after(plan.opsStopAfterMs, async () => {
        plan.opsStopAckAt = await this.opsStop(plan);
        if (plan.opsStopAckAt !== undefined) counters.opsStopsAnswered += 1;
      }),
      after(plan.payAfterMs, payment),
    ]);
  }
}
