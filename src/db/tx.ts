import type { Db } from './client.js';

/** A transaction handle; query modules accept either this or the Db. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;
