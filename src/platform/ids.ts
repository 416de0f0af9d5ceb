import { randomHex } from './random.js';

/** Prefixed random ids (`rec_…`, `msg_…`): 96 bits, hex, legal inside BullMQ job ids. */
export function newId(prefix: 'rec' | 'msg' | 'pay' | 'att' | 'clk' | 'ref' | 'aud' | 'inc' | 'evt'): string {
  return `${prefix}_${randomHex(12)}`;
}
