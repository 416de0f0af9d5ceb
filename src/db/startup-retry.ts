/**
 * Starting up while Postgres is not there yet (a compose stack starting together, a failover) or
 * while one of the first connections is cut: the step is run again until it goes through or the
 * wait is over. Any other error fails at once.
 */

/** SQLSTATEs of a connection ended or refused by the server: admin shutdown, crash shutdown, starting up, class 08. */
const lostConnectionStates = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006']);

/** Socket errors of a server not listening (yet), gone, or unreachable for now. */
const lostConnectionCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']);

/** node-postgres and pg-pool messages for a connection that ended or could not be opened in time. */
const lostConnectionMessages = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error and is not queryable',
];

/** Whether `err` (or an error it wraps) says the connection to Postgres was lost or could not be made. */
export function isConnectionLost(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth += 1) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && (lostConnectionStates.has(code) || lostConnectionCodes.has(code))) return true;
    if (typeof message === 'string' && lostConnectionMessages.some((m) => message.startsWith(m))) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

export interface StartupRetryOptions {
  /** Give up (throwing the last error) once this long has passed since the first attempt. */
  waitMs: number;
  /** Pause between attempts. Default 500 ms. */
  retryMs?: number;
  /** Called once, at the first lost connection, with its message. */
  onWaiting?: (reason: string) => void;
}

/** Runs `step`, again after a lost or refused connection, until it succeeds or `waitMs` has passed. */
export async function retryWhileConnecting<T>(step: () => Promise<T>, options: StartupRetryOptions): Promise<T> {
  const retryMs = options.retryMs ?? 500;
  const giveUpAt = Date.now() + options.waitMs;
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await step();
    } catch (err) {
      if (!isConnectionLost(err) || Date.now() + retryMs > giveUpAt) throw err;
      if (attempt === 0) options.onWaiting?.(err instanceof Error ? err.message : String(err));
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
  }
}
