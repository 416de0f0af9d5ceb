import { sql } from 'drizzle-orm';
import type { Clock } from '../platform/clock.js';
import type { Db } from './client.js';
import { rows } from './rows.js';

/**
 * Postgres's time, kept by the process: the process's own clock plus the offset last measured
 * against `clock_timestamp()` (half the round trip taken as the moment Postgres read its clock,
 * as NTP does). Every process that decides from the time — whether a step is due, whether a
 * recovery expired, when a wake-up is next — then decides on the one clock the send lease and
 * the claims already use, so a host whose clock drifted neither expires recoveries early nor
 * sends late. Until the first measurement, and while Postgres cannot be reached, the last
 * offset (0 at first) stays in use.
 */
export class DatabaseClock implements Clock {
  readonly #base: Clock;
  readonly #db: Db;
  #offsetMs = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(base: Clock, db: Db) {
    this.#base = base;
    this.#db = db;
  }

  now(): Date {
    return new Date(this.#base.now().getTime() + this.#offsetMs);
  }

  /** The offset last measured: Postgres's time minus the process's. */
  get offsetMs(): number {
    return this.#offsetMs;
  }

  /** Measures the offset once. Throws when Postgres does not answer (the last offset stays). */
  async sync(): Promise<number> {
    const before = this.#base.now().getTime();
    const [row] = await rows<{ now: Date }>(this.#db, sql`select clock_timestamp() as now`);
    const after = this.#base.now().getTime();
    if (!row) return this.#offsetMs;
    this.#offsetMs = new Date(row.now).getTime() - (before + after) / 2;
    return this.#offsetMs;
  }

  /** Measures now, then every `intervalMs` (failures are reported and the last offset kept). */
  async start(intervalMs: number, onError: (err: unknown) => void): Promise<void> {
    await this.sync().catch(onError);
    this.#timer = setInterval(() => void this.sync().catch(onError), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
