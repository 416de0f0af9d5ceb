import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Database } from '../../src/db/client.js';
import { commitThen } from '../../src/db/commit-then.js';
import { rows } from '../../src/db/rows.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

const table = sql.raw('commit_then_probe');

async function probeTable(database: Database): Promise<void> {
  await database.db.execute(sql`create table if not exists ${table} (id text primary key, note text)`);
}

/** What another session sees: committed rows only. */
async function committed(database: Database, id: string): Promise<string[]> {
  const found = await rows<{ note: string }>(database.db, sql`select note from ${table} where id = ${id}`);
  return found.map((r) => r.note);
}

function cases(name: string, open: () => Promise<{ database: Database; close(): Promise<void> }>) {
  describe(`commitThen on ${name}`, () => {
    let database: Database;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ database, close } = await open());
      await probeTable(database);
    });
    afterAll(async () => {
      await close();
    });

    it("runs the second statement in a transaction of its own, after the first's commit", async () => {
      const id = `a${Math.random()}`;
      const [first, then] = await commitThen<{ xid: string }, { xid: string; note: string }>(
        database.db,
        sql`insert into ${table} values (${id}, 'written') returning txid_current()::text as xid`,
        sql`select txid_current()::text as xid, note from ${table} where id = ${id}`,
      );
      expect(then).toEqual([{ xid: expect.any(String), note: 'written' }]);
      expect(then[0]!.xid).not.toBe(first[0]!.xid);
    });

    it('keeps the first statement committed when the second fails', async () => {
      const id = `b${Math.random()}`;
      await expect(
        commitThen(database.db, sql`insert into ${table} values (${id}, 'kept')`, sql`select 1 / 0`),
      ).rejects.toThrow();
      expect(await committed(database, id)).toEqual(['kept']);
    });

    it('commits nothing when the first statement fails, and leaves no session in a failed transaction', async () => {
      const id = `c${Math.random()}`;
      await expect(
        commitThen(
          database.db,
          sql`insert into ${table} values (${id}, 'lost'), (${id}, 'duplicate')`,
          sql`select 1 as one`,
        ),
      ).rejects.toThrow();
      expect(await committed(database, id)).toEqual([]);
      // Every connection the pool hands out afterwards works.
      const answers = await Promise.all(
        Array.from({ length: 12 }, () => rows<{ one: number }>(database.db, sql`select 1 as one`)),
      );
      expect(answers.flat()).toEqual(Array.from({ length: 12 }, () => ({ one: 1 })));
    });

    it('sends quotes, backslashes and dollar signs in parameters as they are', async () => {
      const note = `it's a \\'test\\' $1 $$ -- ; commit; drop table x; \u00e9 \u4e2d`;
      const id = `d${Math.random()}`;
      const [, then] = await commitThen<unknown, { note: string; at: Date }>(
        database.db,
        sql`insert into ${table} values (${id}, ${note})`,
        sql`select note, now() as at from ${table} where id = ${id}`,
      );
      expect(then[0]?.note).toBe(note);
      expect(then[0]?.at).toBeInstanceOf(Date);
    });
  });
}

cases('Postgres', async () => {
  const database: TestDatabase = await createTestDatabase();
  return { database, close: () => database.drop() };
});

cases('the embedded database', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-commit-then-'));
  const database = await openDatabase({ url: undefined, dataDir: dir });
  return {
    database,
    close: async () => {
      await database.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('commitThen on Postgres, round trips', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
    await probeTable(database);
  });
  afterAll(async () => {
    await database.drop();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('sends both statements, their commit included, in one message', async () => {
    const query = vi.spyOn(pg.Client.prototype, 'query');
    const id = `e${Math.random()}`;
    await commitThen(
      database.db,
      sql`insert into ${table} values (${id}, 'one trip')`,
      sql`select note from ${table} where id = ${id}`,
    );
    expect(query).toHaveBeenCalledTimes(1);
  });
});
