import net from 'node:net';
import { RecoupError } from './errors.js';

/**
 * Fails, in one line naming the setting, when `port` on `host` cannot be listened on; checked before
 * a process writes anything, so that a port taken by another program leaves no trace. Port 0 (any
 * free port) always passes.
 */
export async function assertPortFree(host: string, port: number, setting: string): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (err) {
    throw portError(err, port, setting) ?? err;
  } finally {
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

/** The one-line error for a listen that failed because the port is taken or not allowed; else undefined. */
export function portError(err: unknown, port: number, setting: string): RecoupError | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') {
    return new RecoupError('unavailable', `port ${port} is in use: set ${setting} to another port`, { cause: err });
  }
  if (code === 'EACCES') {
    return new RecoupError(
      'unavailable',
      `port ${port} needs privileges this process lacks: set ${setting} to a port above 1023`,
      {
        cause: err,
      },
    );
  }
  return undefined;
}
