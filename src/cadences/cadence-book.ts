import type { Db } from '../db/client.js';
import type { DbOrTx } from '../db/tx.js';
import type { CadenceVersion } from './cadence.js';
import { activeCadences, getCadenceVersion } from './cadence-store.js';

/**
 * Read-through cache of cadence versions. Versions are immutable, so a version is
 * cached forever; the list of active versions is refreshed every `activeTtlMs`
 * (a new activation reaches every process within that time).
 */
export class CadenceBook {
  readonly #db: Db;
  readonly #activeTtlMs: number;
  readonly #versions = new Map<string, CadenceVersion>();
  #active: { at: number; list: CadenceVersion[] } | undefined;
  /** Holdout share (percent) for cadences that do not set `holdout_percent`. Default 0: no holdout. */
  readonly defaultHoldoutPercent: number;

  constructor(db: Db, options: { activeTtlMs?: number; defaultHoldoutPercent?: number } = {}) {
    this.#db = db;
    this.#activeTtlMs = options.activeTtlMs ?? 5_000;
    this.defaultHoldoutPercent = options.defaultHoldoutPercent ?? 0;
  }

  /**
   * `executor` must be the open transaction when called inside one: embedded PGlite has a
   * single connection, so a query on the pool from inside a transaction would wait forever.
   */
  async active(executor: DbOrTx = this.#db): Promise<CadenceVersion[]> {
    const now = Date.now();
    if (this.#active && now - this.#active.at < this.#activeTtlMs) return this.#active.list;
    const list = await activeCadences(executor);
    for (const version of list) this.#versions.set(key(version.name, version.version), version);
    this.#active = { at: now, list };
    return list;
  }

  async version(name: string, version: number, executor: DbOrTx = this.#db): Promise<CadenceVersion | undefined> {
    const cached = this.#versions.get(key(name, version));
    if (cached) return cached;
    const found = await getCadenceVersion(executor, name, version);
    if (found) this.#versions.set(key(name, version), found);
    return found;
  }

  /** Forget the active list (after an apply in this process). */
  invalidate(): void {
    this.#active = undefined;
  }
}

function key(name: string, version: number): string {
  return `${name}@${version}`;
}
