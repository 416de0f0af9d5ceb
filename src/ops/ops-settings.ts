/** Operations settings: metrics access, the worker's metrics port, the stuck-order threshold. */
export interface OpsSettings {
  /**
   * METRICS_TOKEN: a bearer token that may read `/metrics` (and the METRICS_PORT server) without
   * an `ops` API key, for a Prometheus that should hold no API key. Unset: only `ops` keys (and
   * console sessions) read `/metrics`, and the METRICS_PORT server answers without a token.
   */
  metricsToken: string | undefined;
  /**
   * METRICS_PORT: serve `GET /metrics` on this port (on HOST) from any role. A `recoup worker`
   * has no other HTTP server, and its send-lateness and provider metrics exist only in its own
   * process. Unset: no extra server.
   */
  metricsPort: number | undefined;
  /**
   * STUCK_ORDER_AFTER: a pending order this old with no recovery counts as stuck (the shop's
   * events went missing, or no cadence matched). Default 2h: past ABANDON_AFTER (30m) and the
   * reconciler that starts abandoned recoveries.
   */
  stuckOrderAfterMs: number;
}

/** The ops settings from config. */
export function opsSettings(config: { ops: OpsSettings }): OpsSettings {
  return { ...config.ops };
}
