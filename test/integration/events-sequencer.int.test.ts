import { sql } from 'drizzle-orm';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rows } from '../../src/db/rows.js';
import { readFeed } from '../../src/webhooks/events-feed.js';
import { numberEvents } from '../../src/webhooks/sequencer.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';

/** No endpoint here: nothing to wake. */
const noWake = async () => {};

/** An event written in a transaction of its own connection, left open until `commit`. */
async function openWriter(url: string, id: string, orderId: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('begin');
  await client.query(
    `insert into outbound_events (id, type, order_id, data) values ($1, 'recovery.started', $2, '{}')`,
    [id, orderId],
  );
  return {
    commit: async () => {
      await client.query('commit');
      await client.end();
    },
  };
}

/**
 * Events are written by concurrent transactions that commit in any order. A reader of the feed,
 * or of one order's sequence, must never be handed an event numbered below one it has seen.
 */
describe('numbering events once committed', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.drop();
  });

  it('numbers an event that commits late after the ones a reader has already seen', async () => {
    const start = await readFeed(database.db, 0, 500, noWake);
    const cursor = Number(start.next_cursor);
    // The first writer writes first and commits last.
    const first = await openWriter(database.url, 'evt_seq_first', 'ord_seq_1');
    const second = await openWriter(database.url, 'evt_seq_second', 'ord_seq_1');
    const third = await openWriter(database.url, 'evt_seq_third', 'ord_seq_2');
    await third.commit();
    await second.commit();

    const early = await readFeed(database.db, cursor, 500, noWake);
    expect(early.events.map((e) => [e.id, e.order_id, e.sequence])).toEqual([
      ['evt_seq_second', 'ord_seq_1', 1],
      ['evt_seq_third', 'ord_seq_2', 1],
    ]);

    await first.commit();
    const late = await readFeed(database.db, Number(early.next_cursor), 500, noWake);
    expect(late.events.map((e) => [e.id, e.order_id, e.sequence])).toEqual([['evt_seq_first', 'ord_seq_1', 2]]);
    expect(Number(late.next_cursor)).toBeGreaterThan(Number(early.next_cursor));
    expect((await readFeed(database.db, Number(late.next_cursor), 500, noWake)).events).toEqual([]);
  });

  it('lets one sequencer number at a time, without gaps or repeats', async () => {
    for (let i = 0; i < 40; i += 1) {
      await database.db.execute(
        sql`insert into outbound_events (id, type, order_id, data)
            values (${`evt_par_${i}`}, 'recovery.started', ${`ord_par_${i % 3}`}, '{}')`,
      );
    }
    await Promise.all(Array.from({ length: 6 }, () => numberEvents(database.db, 7)));
    for (;;) if ((await numberEvents(database.db, 7)).numbered === 0) break;
    const numbered = await rows<{ order_id: string; sequence: number; position: string }>(
      database.db,
      sql`select order_id, sequence, position from outbound_events where id like 'evt_par_%' order by position`,
    );
    expect(numbered).toHaveLength(40);
    for (const order of ['ord_par_0', 'ord_par_1', 'ord_par_2']) {
      const sequences = numbered.filter((e) => e.order_id === order).map((e) => e.sequence);
      expect(sequences).toEqual(sequences.map((_, i) => i + 1));
    }
    const positions = await rows<{ position: string }>(
      database.db,
      sql`select position from outbound_events where position is not null order by position`,
    );
    expect(positions.map((p) => Number(p.position))).toEqual(positions.map((_, i) => i + 1));
  });
});
