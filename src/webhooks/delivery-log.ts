import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { rows } from '../db/rows.js';

export interface DeliveryLogEntry {
  id: string;
  event_id: string;
  event_type: string;
  order_id: string | null;
  status: string;
  attempts: number;
  next_attempt_at: Date | null;
  delivered_at: Date | null;
  created_at: Date;
  /** Every attempt, the latest first. */
  attempt_log: Array<{
    attempt: number;
    at: string;
    status: number | null;
    latency_ms: number;
    excerpt: string | null;
    error: string | null;
  }>;
}

/** An endpoint's deliveries, the newest first. */
export async function listDeliveries(
  db: Db,
  endpointId: string,
  options: { limit: number; status?: string | undefined },
): Promise<DeliveryLogEntry[]> {
  return rows<DeliveryLogEntry>(
    db,
    sql`select d.id, d.event_id, e.type as event_type, e.order_id, d.status, d.attempts, d.next_attempt_at,
               d.delivered_at, d.created_at,
               coalesce((select json_agg(json_build_object('attempt', a.attempt, 'at', a.at, 'status', a.status,
                                                           'latency_ms', a.latency_ms, 'excerpt', a.excerpt,
                                                           'error', a.error) order by a.attempt desc)
                         from webhook_attempts a where a.delivery_id = d.id), '[]') as attempt_log
        from webhook_deliveries d
        join outbound_events e on e.id = d.event_id
        where d.endpoint_id = ${endpointId}
          ${options.status ? sql`and d.status = ${options.status}` : sql``}
        order by d.created_at desc, d.id desc
        limit ${options.limit}`,
  );
}
