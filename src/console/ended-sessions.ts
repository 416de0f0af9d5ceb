import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';

/** Console sessions ended before their expiry (logged out): consulted on every console request. */
export interface EndedSessions {
  isEnded(sid: string): Promise<boolean>;
  /** Ends `sid` until `expiresAt`, when its cookie would have stopped working anyway. */
  end(sid: string, at: Date, expiresAt: Date): Promise<void>;
}

export class PgEndedSessions implements EndedSessions {
  constructor(private readonly db: Db) {}

  async isEnded(sid: string): Promise<boolean> {
    const found = await rows<{ sid: string }>(this.db, sql`select sid from console_sessions_ended where sid = ${sid}`);
    return found.length > 0;
  }

  async end(sid: string, at: Date, expiresAt: Date): Promise<void> {
    await this.db.execute(
      sql`insert into console_sessions_ended (sid, ended_at, expires_at) values (${sid}, ${at}, ${expiresAt})
          on conflict (sid) do nothing`,
    );
    // Those past their expiry are refused by the cookie's own date: nothing to keep.
    await this.db.execute(sql`delete from console_sessions_ended where expires_at < ${at}`);
  }
}
