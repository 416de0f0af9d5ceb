/**
 * Finance report at volume: seeds a fresh database with BENCH_REPORT_RECOVERIES recoveries
 * (default 1,000,000) spread over the last 90 days, three messages each, clicks, payments
 * (clicked, influenced, organic, duplicates), refunds and a 5 % holdout, then times:
 * - the first rollup build (once, after an import or an upgrade);
 * - a 90-day report by day (UTC and Asia/Shanghai) and by cadence, each after bringing the
 *   rollup up to date — the figure docs/benchmarks.md quotes is the slowest of 5 runs;
 * - the same report right after 1,000 new messages and 100 new payments arrived.
 *
 * `npm run bench:report` — writes bench/report-results.json (or BENCH_REPORT_OUTPUT). Needs Postgres (BENCH_DATABASE_URL
 * or TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openDatabase } from '../src/db/client.js';
import { currentRefundKeyVersion } from '../src/payments/payment-gateway.js';
import { recoveryReport, type ReportQuery } from '../src/reports/recovery-report.js';
import { refreshRollup } from '../src/reports/rollup.js';
import { createBenchDatabase } from './infrastructure.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const recoveries = Number(process.env.BENCH_REPORT_RECOVERIES ?? 1_000_000);
const adminUrl =
  process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

function log(line: string): void {
  process.stderr.write(`[report-bench] ${line}\n`);
}

async function timed<T>(what: string, work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = process.hrtime.bigint();
  const value = await work();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  log(`${what}: ${ms.toFixed(0)} ms`);
  return { ms, value };
}

/** Seeds in chunks with generate_series, so progress shows and no statement runs for minutes. */
async function seed(client: pg.Client, now: Date): Promise<void> {
  const chunk = 100_000;
  const spanSeconds = 90 * 86_400;
  for (let from = 0; from < recoveries; from += chunk) {
    const to = Math.min(recoveries, from + chunk) - 1;
    const params = [from, to, now.toISOString(), spanSeconds];
    // Order i: started at a spread instant; CNY for 4 in 5; 5 % holdout; a third pay.
    await client.query(
      `insert into customers (id, email, phone, locale, updated_at)
       select 'cus_' || g, 'c' || g || '@example.com', '+861380000' || lpad((g % 10000)::text, 4, '0'), 'zh-CN', $3::timestamptz
         from generate_series($1::int, $2::int) g`,
      params.slice(0, 3),
    );
    await client.query(
      `insert into orders (id, customer_id, amount, currency, status, state_at, created_at, updated_at)
       select 'ord_' || g, 'cus_' || g, 1000 + (g % 50) * 100, case when g % 5 = 0 then 'USD' else 'CNY' end,
              case when g % 3 = 0 then 'paid' else 'pending' end, $3::timestamptz, $3::timestamptz, $3::timestamptz
         from generate_series($1::int, $2::int) g`,
      params.slice(0, 3),
    );
    await client.query(
      `insert into recoveries (id, order_id, customer_id, cadence_name, cadence_version, failure_category, state,
                               step_index, started_at, expires_at, holdout, currency, failed_method,
                               recovered_at, recovered_attribution, recovered_step, recovered_channel, recovered_value)
       select 'rec_' || g, 'ord_' || g, 'cus_' || g, case when g % 2 = 0 then 'default' else 'gentle' end, 1,
              (array['insufficient_funds','card_data','network','account_frozen','abandoned'])[1 + g % 5],
              case when g % 3 = 0 then 'recovered' else 'exhausted' end, 3, s, s + interval '7 days', g % 20 = 7,
              case when g % 5 = 0 then 'USD' else 'CNY' end, (array['card','alipay','wechat_pay'])[1 + g % 3],
              case when g % 3 = 0 then s + interval '3 hours' end,
              case when g % 3 = 0 then (case when g % 20 = 7 or g % 9 = 0 then 'organic' when g % 2 = 0 then 'clicked' else 'influenced' end) end,
              case when g % 3 = 0 and g % 9 <> 0 and g % 20 <> 7 then 0 end,
              case when g % 3 = 0 and g % 9 <> 0 and g % 20 <> 7 then 'sms' end,
              case when g % 3 = 0 then 1000 + (g % 50) * 100 end
         from (select g, $3::timestamptz - (((g::bigint * 7919) % $4::bigint) || ' seconds')::interval as s
                 from generate_series($1::int, $2::int) g) x`,
      params,
    );
    await client.query(
      `insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, to_address,
                             provider_id, sent_at, segments, cost_micros, cost_currency, cost_source, attempts,
                             created_at, updated_at)
       select 'msg_' || g || '_' || k, 'rec_' || g, 'ord_' || g, 'cus_' || g, k,
              case when k = 1 then 'email' else 'sms' end, 'nudge', 'sent', 'x', 'SM' || g || '_' || k,
              r.started_at + (k + 1) * interval '1 hour', 1, case when k = 1 then 400 else 45000 end, 'USD',
              case when k = 0 then 'provider' else 'estimate' end, 1, r.started_at, r.started_at
         from generate_series($1::int, $2::int) g
         join recoveries r on r.id = 'rec_' || g
         cross join generate_series(0, 2) k`,
      params.slice(0, 2),
    );
    await client.query(
      `insert into clicks (id, message_id, recovery_id, order_id, at)
       select 'clk_' || substr(r.id, 5), 'msg_' || substr(r.id, 5) || '_0', r.id, r.order_id, r.started_at + interval '90 minutes'
         from generate_series($1::int, $2::int) g
         join recoveries r on r.id = 'rec_' || g
        where r.recovered_attribution = 'clicked'`,
      params.slice(0, 2),
    );
    await client.query(
      `insert into payments (id, order_id, gateway, external_id, method, amount, currency, incentive_amount, paid_at,
                             duplicate, recovery_id, cadence_name, cadence_version, step, channel, attribution, created_at)
       select 'pay_' || substr(r.id, 5) || '_' || d, r.order_id, 'sandbox', 'ext_' || substr(r.id, 5) || '_' || d,
              r.failed_method, r.recovered_value, r.currency, 0, r.recovered_at + d * interval '5 minutes', d = 1, r.id,
              r.cadence_name, 1, r.recovered_step, r.recovered_channel, r.recovered_attribution, r.recovered_at
         from generate_series($1::int, $2::int) g
         join recoveries r on r.id = 'rec_' || g
         cross join generate_series(0, 1) d
        where r.recovered_at is not null and (d = 0 or g % 97 = 0)`,
      params.slice(0, 2),
    );
    await client.query(
      `insert into refunds (id, order_id, payment_id, amount, currency, reason, status, refund_key, key_version,
                            succeeded_at, created_at, updated_at)
       select 'ref_' || p.id, p.order_id, p.id, p.amount, p.currency, 'duplicate', 'succeeded', 'key_' || p.id, ${currentRefundKeyVersion},
              p.paid_at + interval '1 day', p.paid_at, p.paid_at
         from generate_series($1::int, $2::int) g
         join payments p on p.recovery_id = 'rec_' || g
        where p.duplicate`,
      params.slice(0, 2),
    );
    log(`seeded ${to + 1} / ${recoveries} recoveries`);
  }
}

async function main(): Promise<void> {
  const bench = await createBenchDatabase(adminUrl);
  log(`database ${bench.name}`);
  const database = await openDatabase({ url: bench.url, dataDir: os.tmpdir(), poolSize: 4 });
  const client = new pg.Client({ connectionString: bench.url });
  try {
    await database.migrate();
    await client.connect();
    const now = new Date();
    const seeded = await timed('seed', () => seed(client, now));
    // As autovacuum leaves a table at rest: statistics and the visibility map (index-only scans).
    await timed('vacuum analyze', () => client.query('vacuum analyze'));
    const counts = (
      await client.query<{ recoveries: string; messages: string; payments: string; refunds: string; clicks: string }>(
        `select (select count(*) from recoveries) as recoveries, (select count(*) from messages) as messages,
                (select count(*) from payments) as payments, (select count(*) from refunds) as refunds,
                (select count(*) from clicks) as clicks`,
      )
    ).rows[0];
    log(`rows: ${JSON.stringify(counts)}`);

    const build = await timed('first rollup build', () => refreshRollup(database.db, new Date()));
    const rollupRows = Number(
      (await client.query<{ n: string }>('select count(*) as n from report_rollup')).rows[0]?.n,
    );

    const to = now.toISOString().slice(0, 10);
    const from = new Date(now.getTime() - 89 * 86_400_000).toISOString().slice(0, 10);
    const run = async (name: string, query: ReportQuery) => {
      const times: number[] = [];
      let rowsOut = 0;
      for (let i = 0; i < 5; i += 1) {
        const { ms, value } = await timed(`${name} #${i + 1}`, () => recoveryReport(database.db, query, new Date()));
        times.push(ms);
        rowsOut = value.length;
      }
      times.sort((a, b) => a - b);
      return { median_ms: round(times[2] ?? 0), max_ms: round(times[4] ?? 0), rows: rowsOut };
    };
    const byDayUtc = await run('90 days by day, UTC', { from, to, groupBy: 'day', timezone: 'UTC' });
    const byDayShanghai = await run('90 days by day, Asia/Shanghai', {
      from,
      to,
      groupBy: 'day',
      timezone: 'Asia/Shanghai',
    });
    const byCadence = await run('90 days by cadence', { from, to, groupBy: 'cadence', timezone: 'UTC' });

    // Fresh activity since the last report: the next one rebuilds only what changed.
    await client.query(
      `insert into messages (id, recovery_id, order_id, customer_id, step, channel, template, status, sent_at,
                             cost_micros, cost_currency, created_at, updated_at)
       select 'msg_new_' || g, 'rec_' || g, 'ord_' || g, 'cus_' || g, 5, 'sms', 'nudge', 'sent', now(), 45000, 'USD', now(), now()
         from generate_series(0, 999) g`,
    );
    await client.query(
      `insert into payments (id, order_id, gateway, external_id, amount, currency, paid_at, recovery_id, attribution, created_at)
       select 'pay_new_' || g, 'ord_' || g, 'sandbox', 'ext_new_' || g, 1000, 'CNY', now() - interval '30 days', 'rec_' || g,
              'influenced', now()
         from generate_series(1, 100) g`,
    );
    const afterNews = await timed('90 days by day after 1,000 new messages and 100 late payments', () =>
      recoveryReport(database.db, { from, to, groupBy: 'day', timezone: 'UTC' }, new Date()),
    );

    const results = {
      recoveries: Number(counts?.recoveries),
      messages: Number(counts?.messages),
      payments: Number(counts?.payments),
      refunds: Number(counts?.refunds),
      clicks: Number(counts?.clicks),
      seed_s: round(seeded.ms / 1000),
      rollup_build_s: round(build.ms / 1000),
      rollup_rows: rollupRows,
      report_90d_by_day_utc: byDayUtc,
      report_90d_by_day_shanghai: byDayShanghai,
      report_90d_by_cadence: byCadence,
      report_after_new_activity_ms: round(afterNews.ms),
      machine: {
        cpu: os.cpus()[0]?.model ?? 'unknown',
        cores: os.cpus().length,
        node: process.version,
        postgres: (await client.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]?.v,
      },
    };
    fs.writeFileSync(
      process.env.BENCH_REPORT_OUTPUT ?? path.join(here, 'report-results.json'),
      `${JSON.stringify(results, null, 2)}\n`,
    );
    console.log(
      [
        `Finance report benchmark: ${results.recoveries.toLocaleString('en')} recoveries, ${results.messages.toLocaleString('en')} messages`,
        `  first rollup build        ${results.rollup_build_s} s (${rollupRows} rollup rows)`,
        `  90 days by day (UTC)      median ${byDayUtc.median_ms} ms, max ${byDayUtc.max_ms} ms (${byDayUtc.rows} rows)`,
        `  90 days by day (Shanghai) median ${byDayShanghai.median_ms} ms, max ${byDayShanghai.max_ms} ms`,
        `  90 days by cadence        median ${byCadence.median_ms} ms, max ${byCadence.max_ms} ms`,
        `  after new activity        ${results.report_after_new_activity_ms} ms`,
      ].join('\n'),
    );
  } finally {
    await client.end().catch(() => undefined);
    await database.close();
    if (!process.env.BENCH_KEEP) await bench.drop();
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
