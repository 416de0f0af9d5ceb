import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import { channels, type Channel } from '../domain/vocabulary.js';
import type { DispatchResult } from '../recoveries/dispatch-step.js';

/** How a provider call ended: `ok`, or the ProviderError outcome (`retry`, `failed`, `unknown`). */
export type ProviderCallOutcome = 'ok' | 'retry' | 'failed' | 'unknown';

export interface OpsMetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop lag, GC). Default true. */
  defaultMetrics?: boolean;
}

/**
 * One process's Prometheus registry, with the metrics only this process can observe: step
 * jobs and send lateness (worker role), provider calls (any role that sends), Node.js process
 * metrics. Shared state (queue depths, message counts, circuits, recovered money) is added by
 * `registerStateMetrics` in processes with the HTTP role only, so it is reported once per
 * server rather than once per worker. Its own registry, not prom-client's global one: several
 * services share one process in tests.
 */
export class OpsMetrics {
  readonly registry = new Registry();
  readonly #stepJobs: Counter<'action'>;
  readonly #lateness: Histogram<'channel'>;
  readonly #providerDuration: Histogram<'channel' | 'transport' | 'outcome'>;
  readonly #providerErrors: Counter<'channel' | 'transport' | 'code' | 'outcome'>;
  readonly #remindersAfterPayment: Counter<'channel'>;

  constructor(options: OpsMetricsOptions = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.#stepJobs = new Counter({
      name: 'recoup_step_jobs_total',
      help: 'Step wake-ups processed by this worker, by what they did (sent, deferred, suppressed, ended, …).',
      labelNames: ['action'],
      registers,
    });
    this.#lateness = new Histogram({
      name: 'recoup_send_lateness_seconds',
      help:
        'Provider acceptance time minus the planned send time of each sent message. Planned is the ' +
        'latest plan: after quiet hours or a provider retry, the deferred time.',
      labelNames: ['channel'],
      buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.#providerDuration = new Histogram({
      name: 'recoup_provider_request_duration_seconds',
      help: 'Duration of calls to SMS and email providers, by outcome.',
      labelNames: ['channel', 'transport', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.#providerErrors = new Counter({
      name: 'recoup_provider_errors_total',
      help: "Provider calls that failed, by the provider's code (Twilio 21211, SMTP 550, ETIMEDOUT, …).",
      labelNames: ['channel', 'transport', 'code', 'outcome'],
      registers,
    });
    this.#remindersAfterPayment = new Counter({
      name: 'recoup_reminders_after_payment_total',
      help:
        'Reminders a provider accepted after their order was paid or cancelled, found by this process ' +
        '(a late acceptance the send lease cannot prevent). Each is on the order timeline and in outbound_events.',
      labelNames: ['channel'],
      registers,
    });
    for (const channel of channels) this.#remindersAfterPayment.inc({ channel }, 0);
  }

  /** Counts reminders flagged as accepted after their order's payment, once recorded. */
  observeRemindersAfterPayment(reminders: ReadonlyArray<{ channel: Channel }>): void {
    for (const { channel } of reminders) this.#remindersAfterPayment.inc({ channel });
  }

  /** The step worker's onResult hook. */
  observeDispatch(result: Pick<DispatchResult, 'action' | 'channel' | 'plannedAt' | 'sentAt'>): void {
    this.#stepJobs.inc({ action: result.action });
    if (result.action === 'sent' && result.channel && result.plannedAt && result.sentAt) {
      // A wake-up may fire up to a second early (clock skew between hosts): that is not lateness.
      const seconds = Math.max(0, (result.sentAt.getTime() - result.plannedAt.getTime()) / 1000);
      this.#lateness.observe({ channel: result.channel }, seconds);
    }
  }

  observeProviderCall(call: {
    channel: Channel;
    transport: string;
    outcome: ProviderCallOutcome;
    seconds: number;
    code?: string;
  }): void {
    const { channel, transport, outcome } = call;
    this.#providerDuration.observe({ channel, transport, outcome }, call.seconds);
    if (outcome !== 'ok') {
      this.#providerErrors.inc({ channel, transport, outcome, code: boundedCode(call.code) });
    }
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Provider codes become label values: keep them short and tame so a strange answer cannot explode cardinality. */
function boundedCode(code: string | undefined): string {
  if (!code) return 'none';
  return /^[A-Za-z0-9_.-]{1,40}$/.test(code) ? code : 'other';
}
