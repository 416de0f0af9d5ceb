import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';
import type { DeliveryWakeup } from '../queue/webhook-queue.js';

/** Any constant: the advisory lock that lets one sequencer run at a time. */
const sequencerLock = 7_311_402_009;

/**
 * Numbers committed events, and creates their deliveries.
 *
 * Events are written by many transactions at once, and a number or a timestamp taken when an event
 * is written is not the order they commit in: a reader that moved past event 11 would never see
 * event 10 if 10 committed later. So events are numbered only once committed, here, by one
 * sequencer at a time (an advisory lock held until its transaction commits): each run gives the
 * events it sees the next feed `positions` and their orders' next `sequence`, in the order they
 * were written, so no event is ever numbered below one a reader has already seen. The same
 * transaction creates a delivery for each enabled endpoint that subscribes to the event and existed
 * when it happened (for a connector's write-back, only of its platform's orders); the wake-ups of the new deliveries are returned, to queue once that committed.
 */
export async function numberEvents(db: Db, limit = 1_000): Promise<{ numbered: number; wakeups: DeliveryWakeup[] }> {
  return db.transaction(async (tx) => {
    const [locked] = await rows<{ ok: boolean }>(tx, sql`select pg_try_advisory_xact_lock(${sequencerLock}) as ok`);
    if (!locked?.ok) return { numbered: 0, wakeups: [] };
    const [count] = await rows<{ numbered: number; wakeups: unknown }>(
      tx,
      sql`with pending as (
            select id, order_id, sequence, written from outbound_events
            where position is null
            order by written
            limit ${limit}
          ), numbered as (
            select p.id,
                   (select coalesce(max(e.position), 0) from outbound_events e)
                     + row_number() over (order by p.written) as position,
                   case when p.order_id is null or p.sequence is not null then p.sequence
                        else (select coalesce(max(e.sequence), 0) from outbound_events e where e.order_id = p.order_id)
                             + row_number() over (partition by p.order_id, p.sequence is null
                                                  order by p.written) end as sequence
            from pending p
          ), updated as (
            update outbound_events e set position = n.position, sequence = n.sequence
            from numbered n where e.id = n.id
            returning e.id, e.type, e.created_at, e.order_id
          ), deliveries as (
            insert into webhook_deliveries (id, endpoint_id, event_id, status, next_attempt_at, created_at, updated_at)
            select 'msg_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24), w.id, u.id, 'pending',
                   clock_timestamp(), clock_timestamp(), clock_timestamp()
            from updated u
            join webhook_endpoints w on w.enabled and u.type = any (w.events) and w.created_at <= u.created_at
              -- A connector's write-back takes only the orders its platform sent.
              and (w.platform is null
                   or exists (select 1 from orders o where o.id = u.order_id and o.platform = w.platform))
            returning id, wake_seq, next_attempt_at
          )
          select (select count(*) from updated)::int as numbered,
                 (select coalesce(json_agg(json_build_object('deliveryId', d.id, 'wakeSeq', d.wake_seq,
                                                             'runAt', d.next_attempt_at)), '[]')
                  from deliveries d) as wakeups`,
    );
    const created = (count?.wakeups ?? []) as Array<{ deliveryId: string; wakeSeq: number; runAt: string }>;
    return {
      numbered: count?.numbered ?? 0,
      wakeups: created.map((w) => ({ deliveryId: w.deliveryId, wakeSeq: w.wakeSeq, runAt: new Date(w.runAt) })),
    };
  });
}
