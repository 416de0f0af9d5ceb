import { randomFillSync } from 'node:crypto';

/**
 * Cryptographically random strings, drawn from a pool that is refilled 4 KB at a time (as Node's
 * randomUUID does): one call into the CSPRNG per few hundred ids instead of one per id, which shows
 * on the dispatch path (an id, a claim id and a retry token per message). Each byte is handed out once.
 */
const pool = Buffer.alloc(4_096);
let offset = pool.length;

function take(bytes: number): Buffer {
  if (bytes > pool.length) throw new Error(`random: at most ${pool.length} bytes at a time`);
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const slice = pool.subarray(offset, offset + bytes);
  offset += bytes;
  return slice;
}

/** `bytes` random bytes as lower-case hex. */
export function randomHex(bytes: number): string {
  return take(bytes).toString('hex');
}

/** `bytes` random bytes as unpadded base64url. */
export function randomBase64url(bytes: number): string {
  return take(bytes).toString('base64url');
}
