import { sendLeaseFor } from '../../src/recoveries/send-lease.js';

/** The fault harness's knobs, cadence, service settings and the records it keeps per order and per run. */

function envNumber(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`${name}: expected a number, got "${text}"`);
  return value;
}

/** The send lease under the harness's PROVIDER_TIMEOUT (1s) and JOB_LOCK_DURATION (3s). */
export const sendLeaseMs = sendLeaseFor(1_000, 3_000).leaseMs;
const jobLockMs = 3_000;

/** Knobs, all from the environment; the defaults are the bounded CI run. */
export const options = {
  orders: envNumber('CHAOS_ORDERS', 300),
  seed: envNumber('CHAOS_SEED', 20261126),
  workers: envNumber('CHAOS_WORKERS', 3),
  /** Orders arrive evenly over this many seconds. Default: about 15 orders a second, at least 20 s. */
  ingestSeconds: envNumber('CHAOS_INGEST_SECONDS', 0),
  /** Share of orders paid at a random moment of their recovery. */
  payRate: envNumber('CHAOS_PAY_RATE', 0.4),
  /** How the shop's webhook endpoint misbehaves: answers 503, answers after the timeout, drops the connection. */
  webhook503: envNumber('CHAOS_WEBHOOK_503_RATE', 0.15),
  webhookLate: envNumber('CHAOS_WEBHOOK_LATE_RATE', 0.03),
  webhookDropped: envNumber('CHAOS_WEBHOOK_DROP_RATE', 0.03),
  /** Random SIGKILLs of workers during the run (besides the fault-point crashes). Default: 3 + orders/300, at most 40. */
  kills: envNumber('CHAOS_KILLS', 0),
  twilio500: envNumber('CHAOS_TWILIO_500_RATE', 0.03),
  twilio429: envNumber('CHAOS_TWILIO_429_RATE', 0.03),
  twilioTimeout: envNumber('CHAOS_TWILIO_TIMEOUT_RATE', 0.01),
  twilioDrop: envNumber('CHAOS_TWILIO_DROP_RATE', 0.01),
  smtp4xx: envNumber('CHAOS_SMTP_4XX_RATE', 0.03),
  smtp5xx: envNumber('CHAOS_SMTP_5XX_RATE', 0.01),
  /** Share of paid orders whose payment comes as a signed sandbox gateway webhook instead of a shop event. */
  gatewayPayShare: envNumber('CHAOS_GATEWAY_PAY_SHARE', 0.5),
  /** Share of orders whose customer replies STOP while reminders are due. */
  stopRate: envNumber('CHAOS_STOP_RATE', 0.08),
  /** Share of orders whose customer gets a new phone number (customer.updated) while reminders are due. */
  phoneChangeRate: envNumber('CHAOS_PHONE_CHANGE_RATE', 0.08),
  /** Share of unpaid orders the shop cancels (order.cancelled) while reminders are due. */
  cancelRate: envNumber('CHAOS_CANCEL_RATE', 0.05),
  /** Share of unpaid orders whose recovery ops stop from the console while reminders are due. */
  opsStopRate: envNumber('CHAOS_OPS_STOP_RATE', 0.05),
  /** Share of customers with several orders (a fifth of it: of the others) who click the unsubscribe link of their first email. */
  unsubscribeRate: envNumber('CHAOS_UNSUBSCRIBE_RATE', 0.3),
  /** Share of orders placed by the customer of an order a few seconds older (same id, phone and email). */
  sharedCustomerRate: envNumber('CHAOS_SHARED_CUSTOMER_RATE', 0.15),
  /** Share of customers in a time zone where it is night (inside the cadence's quiet hours) during the run. */
  nightCustomerRate: envNumber('CHAOS_NIGHT_CUSTOMER_RATE', 0.1),
  /** Every process's clock (server and workers) runs up to this many ms ahead of or behind the host's (0: no skew). */
  clockSkewMs: envNumber('CHAOS_CLOCK_SKEW_MS', 10_000),
  /** Share of worker (re)starts during the run that crash themselves at a fault point. */
  faultPointRate: envNumber('CHAOS_FAULT_POINT_RATE', 0.5),
  /** Server SIGKILLs at the payment webhook's fault point (after claiming a gateway event, before applying it). */
  serverCrashes: envNumber('CHAOS_SERVER_CRASHES', 1),
  /** Silent network partitions between one worker and Postgres. */
  partitions: envNumber('CHAOS_PARTITIONS', 1),
  /** A partition lasts this long: past the send lease and the job lock. */
  partitionMs: envNumber('CHAOS_PARTITION_MS', Math.max(sendLeaseMs, jobLockMs) + 4_000),
  /** A SIGSTOP lasts this long. Default: past the send lease, so claims go stale. */
  pauseMs: envNumber('CHAOS_PAUSE_MS', sendLeaseMs + 2_000),
  /** HTTP requests in flight at once. */
  concurrency: envNumber('CHAOS_CONCURRENCY', 12),
  /** Keep the per-process logs (printed path) even when the run passes. */
  keepLogs: process.env.CHAOS_KEEP_LOGS === '1',
  /** Keep the run's database (its name is printed) for a look at what the checks found. */
  keepDatabase: process.env.CHAOS_KEEP_DB === '1',
  /** CHAOS_FAULTS=0: the same load with no process, network or Redis faults, as a baseline. */
  faults: process.env.CHAOS_FAULTS !== '0',
};
if (options.ingestSeconds <= 0) options.ingestSeconds = Math.max(20, Math.ceil(options.orders / 15));
if (options.kills <= 0) options.kills = Math.min(40, 3 + Math.floor(options.orders / 300));

/** Messages per customer per local day: one order's three steps, so only customers with several orders are held back. */
export const maxMessagesPerDay = 3;
export const quietHours = { start: '22:00', end: '06:00' };

// Second-level cadence: three steps over 8 s, over after 30 s (slack for a busy machine).
export const cadenceYaml = `
name: default
description: fault harness cadence
match: { failure_categories: [any], min_amount: 0, currencies: [any] }
expire_after: 30s
quiet_hours: { start: '${quietHours.start}', end: '${quietHours.end}' }
max_messages_per_day: ${maxMessagesPerDay}
steps:
  - { after: 1s, channel: sms,   template: nudge }
  - { after: 4s, channel: email, template: alternative-methods }
  - { after: 8s, channel: sms,   template: last-call }
`;
export const cadenceSpanMs = 8_000;
/** When each step of the cadence is due, after its recovery started. */
export const stepOffsetsMs = [1_000, 4_000, 8_000];
export const expireAfterMs = 30_000;

/**
 * Settings every recoup process of the harness runs with. The reconciler bound: Redis losing
 * everything (restart, FLUSHALL) is noticed by the next pass, at most RECONCILE_INTERVAL after
 * Redis answers again, which re-queues every active recovery; a single lost wake-up is re-created
 * at most RECONCILE_GRACE + RECONCILE_INTERVAL after it was due.
 */
/** Short, far below the 30 s expiry: see WAKEUP_HORIZON below. */
export const wakeupHorizonMs = 2_000;

export const serviceEnv = {
  RECONCILE_INTERVAL: '500ms',
  RECONCILE_GRACE: '3s',
  // Short, so that every step after the first and every expiry reaches Redis through the promotion
  // pass, under the same faults as the rest.
  WAKEUP_HORIZON: `${wakeupHorizonMs}ms`,
  JOB_LOCK_DURATION: `${jobLockMs}ms`,
  PROVIDER_TIMEOUT: '1s',
  SEND_RETRY_BACKOFF: '1s',
  SEND_MAX_ATTEMPTS: '4',
  SHUTDOWN_TIMEOUT: '5s',
  WORKER_CONCURRENCY: '8',
  // Unknown SMS outcomes are looked up at the fake Twilio within the run, not after two minutes.
  SMS_LOOKUP_AFTER: '2s',
  // A gateway event claimed by a server that was then killed is taken over within the run: past
  // the slowest handling of one event here (a send lease of 3.5 s), far below the default 2 minutes.
  WEBHOOK_STALE_AFTER: '5s',
  // Every customer of the harness opens their retry page from the same address.
  RETRY_PAGE_RATE_LIMIT: '100000',
  LOG_LEVEL: 'warn',
};
export const shutdownTimeoutMs = 5_000;
export const reconcileBound =
  'full loss: <= RECONCILE_INTERVAL (500ms) after Redis is back; one lost wake-up: <= 3.5s late';

export interface OrderPlan {
  index: number;
  orderId: string;
  customerId: string;
  phone: string;
  email: string;
  /** The customer's IANA time zone; `night`: inside the cadence's quiet hours during the run. */
  timezone: string;
  night: boolean;
  /** Orders of this customer, this one included (customers with several orders share id, phone and email). */
  customerOrders: number;
  amount: number;
  /** Milliseconds after its payment.failed was accepted; undefined: never paid. */
  payAfterMs: number | undefined;
  /** The payment event is delivered twice (a shop retrying its webhook). */
  payTwice: boolean;
  failedAccepted: boolean;
  /** When the harness saw the payment's 2xx: the payment had committed by then. */
  paidAckAt: number | undefined;
  /** The payment comes as a signed sandbox gateway webhook (else as the shop's payment.succeeded). */
  payViaGateway: boolean;
  /** Its gateway webhook was being delivered (sent, or waiting to be sent again) when the server was killed at the webhook's fault point. */
  throughServerCrash: boolean;
  /** Milliseconds after payment.failed was accepted when the customer replies STOP; undefined: never. */
  stopAfterMs: number | undefined;
  /** When the harness saw the STOP's 200. */
  stopAckAt: number | undefined;
  /** The number the customer changes to, and when (ms after payment.failed was accepted). */
  newPhone: string | undefined;
  changeAfterMs: number | undefined;
  /** When the harness saw the customer.updated's 2xx. */
  changeAckAt: number | undefined;
  /** The customer clicks the one-click unsubscribe of the first email they get, this long after it arrived. */
  unsubscribeAfterEmailMs: number | undefined;
  /** The shop cancels the order this long after payment.failed was accepted, and when that was answered. */
  cancelAfterMs: number | undefined;
  cancelAckAt: number | undefined;
  /** Ops stop the order's recovery this long after payment.failed was accepted, and when that was answered. */
  opsStopAfterMs: number | undefined;
  opsStopAckAt: number | undefined;
}

export interface Counters {
  killsRandom: number;
  killsSkipped: number;
  faultPointCrashes: number;
  workerStarts: number;
  pgTerminated: number;
  redisRestarts: number;
  redisAofRestarts: number;
  redisFlushes: number;
  serverStarts: number;
  serverCrashes: number;
  /** Gateway webhook deliveries cut by a server crash. */
  deliveriesCutByCrash: number;
  partitions: number;
  partitionsHealed: number;
  partitionsCut: number;
  sigtermExitMs: number | undefined;
  sigtermExitCode: number | null | undefined;
  shutdownOverruns: number;
  unexpectedExits: number;
  postsFailed: number;
  postRetries: number;
  /** Planned faults that did not happen (no worker to kill, no connection to terminate, an error). */
  faultPlanSkipped: number;
  gatewayDeliveries: number;
  gatewayRedeliveries: number;
  stopsAnswered: number;
  phoneChangesAnswered: number;
  unsubscribesAnswered: number;
  cancelsAnswered: number;
  opsStopsAnswered: number;
  /** Ops stops refused because the recovery had ended already (paid, expired, cancelled). */
  opsStopsTooLate: number;
  pauses: number;
  /** The largest clock offset a worker, and the server, ran with. */
  clockOffsetMaxMs: number;
  serverClockOffsetMaxMs: number;
  /** The answer time of a payment the harness makes 1 s into a pause. */
  pausedPaymentAnswerMs: number | undefined;
  paymentsWhilePaused: number;
  /** The slowest answer to a payment made while a worker was stopped (queueing in the harness included). */
  paymentAnswerMsMaxWhilePaused: number;
}

export function newCounters(): Counters {
  return {
    killsRandom: 0,
    killsSkipped: 0,
    faultPointCrashes: 0,
    workerStarts: 0,
    pgTerminated: 0,
    redisRestarts: 0,
    redisAofRestarts: 0,
    redisFlushes: 0,
    serverStarts: 0,
    serverCrashes: 0,
    deliveriesCutByCrash: 0,
    partitions: 0,
    partitionsHealed: 0,
    partitionsCut: 0,
    sigtermExitMs: undefined,
    sigtermExitCode: undefined,
    shutdownOverruns: 0,
    unexpectedExits: 0,
    postsFailed: 0,
    postRetries: 0,
    faultPlanSkipped: 0,
    gatewayDeliveries: 0,
    gatewayRedeliveries: 0,
    stopsAnswered: 0,
    phoneChangesAnswered: 0,
    unsubscribesAnswered: 0,
    cancelsAnswered: 0,
    opsStopsAnswered: 0,
    opsStopsTooLate: 0,
    pauses: 0,
    clockOffsetMaxMs: 0,
    serverClockOffsetMaxMs: 0,
    pausedPaymentAnswerMs: undefined,
    paymentsWhilePaused: 0,
    paymentAnswerMsMaxWhilePaused: 0,
  };
}
