import fs from 'node:fs';
import path from 'node:path';
import { round } from './context.js';
import type { MachineInfo } from './infrastructure.js';

/** The keys issue 7 asks for; every one a finite number in a successful run. */
export const requiredKeys = [
  'queue_baseline_jobs_per_s',
  'dispatch_per_s',
  'dispatch_ratio',
  'intake_baseline_per_s',
  'intake_per_s',
  'intake_ratio',
  'lateness_p50_ms',
  'lateness_p99_ms',
  'lateness_max_ms',
  'burst_drain_s',
  'scale_ratio',
  'redis_bytes_per_pending_recovery',
  'pending_1m_dispatch_ratio',
  'promoter_pass_ms_at_1m',
  'pg_bytes_per_pending_recovery',
  'intake_p99_ms_at_1m',
  'pg_bytes_per_recovery',
  'redis_commands_per_message',
  'pg_statements_per_message',
  'worker_peak_rss_mb',
] as const;

export type RequiredKey = (typeof requiredKeys)[number];
export type Figures = Record<RequiredKey, number> & Record<string, number | string>;

export interface Target {
  key: RequiredKey;
  label: string;
  comparison: '>=' | '<=';
  limit: number;
  goal?: number;
}

/** The targets of issue 7 (this 2-core machine, ratios taken in the same run). */
export const targets: Target[] = [
  {
    key: 'intake_ratio',
    label: 'intake ≥ 0.5 × bare Fastify+INSERT (goal 0.8)',
    comparison: '>=',
    limit: 0.5,
    goal: 0.8,
  },
  {
    key: 'dispatch_ratio',
    label: 'dispatch ≥ 0.25 × bare BullMQ (goal 0.5)',
    comparison: '>=',
    limit: 0.25,
    goal: 0.5,
  },
  { key: 'lateness_p99_ms', label: 'steady lateness p99 ≤ 250 ms', comparison: '<=', limit: 250 },
  { key: 'lateness_max_ms', label: 'steady lateness max ≤ 1 s', comparison: '<=', limit: 1_000 },
  { key: 'scale_ratio', label: 'rate at 200k pending ≥ 0.9 × at 10k', comparison: '>=', limit: 0.9 },
  { key: 'pending_1m_dispatch_ratio', label: 'rate at 1M pending ≥ 0.9 × at 10k', comparison: '>=', limit: 0.9 },
  {
    key: 'redis_bytes_per_pending_recovery',
    label: 'Redis ≤ 1 KB per pending recovery (goal 50 B)',
    comparison: '<=',
    limit: 1_024,
    goal: 50,
  },
  { key: 'promoter_pass_ms_at_1m', label: 'promoter pass at 1M pending < 1 s', comparison: '<=', limit: 1_000 },
  { key: 'worker_peak_rss_mb', label: 'worker RSS ≤ 250 MB at peak', comparison: '<=', limit: 250 },
];

export interface TargetOutcome {
  key: RequiredKey;
  target: string;
  value: number;
  met: boolean;
  goal_met?: boolean;
}

export function judge(figures: Figures): TargetOutcome[] {
  return targets.map((t) => {
    const value = figures[t.key];
    const passes = (limit: number) => (t.comparison === '>=' ? value >= limit : value <= limit);
    return {
      key: t.key,
      target: t.label,
      value,
      met: Number.isFinite(value) && passes(t.limit),
      ...(t.goal !== undefined ? { goal_met: Number.isFinite(value) && passes(t.goal) } : {}),
    };
  });
}

interface Row {
  section?: string;
  label: string;
  value: string;
  note?: string;
}

function fmt(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return 'n/a';
  return round(value, digits).toLocaleString('en-US', { maximumFractionDigits: digits });
}

/** The results as a plain-text table (also what goes into docs/measurements). */
export function renderTable(f: Figures, outcomes: TargetOutcome[], machine: MachineInfo, mode: string): string {
  const met = (key: RequiredKey) => {
    const o = outcomes.find((x) => x.key === key);
    if (!o) return '';
    return o.met ? (o.goal_met === false ? 'target met, goal missed' : 'met') : 'MISSED';
  };
  const rows: Row[] = [
    { section: '1. Queue baseline', label: 'bare BullMQ no-op jobs/s', value: fmt(f.queue_baseline_jobs_per_s) },
    { section: '2. Dispatch', label: 'messages/s (claim, render, send, record)', value: fmt(f.dispatch_per_s) },
    { label: 'ratio to queue baseline', value: fmt(f.dispatch_ratio, 2), note: met('dispatch_ratio') },
    {
      label: 'CPU ms per job: baseline worker+Redis',
      value: `${fmt(Number(f.queue_baseline_cpu_ms_per_job), 2)}+${fmt(Number(f.queue_baseline_redis_cpu_ms_per_job), 2)}`,
    },
    {
      label: 'CPU ms per message: worker+Postgres+Redis',
      value:
        `${fmt(Number(f.dispatch_worker_cpu_ms_per_message), 2)}+${fmt(Number(f.dispatch_pg_cpu_ms_per_message), 2)}` +
        `+${fmt(Number(f.dispatch_redis_cpu_ms_per_message), 2)}`,
      note: `CPU-cost ratio ${fmt(Number(f.dispatch_cpu_ratio), 2)}`,
    },
    { section: '3. Intake', label: 'bare Fastify + INSERT events/s', value: fmt(f.intake_baseline_per_s) },
    { label: 'POST /v1/events events/s', value: fmt(f.intake_per_s) },
    { label: 'ratio', value: fmt(f.intake_ratio, 2), note: met('intake_ratio') },
    {
      label: 'CPU ms per event (HTTP+Postgres) baseline / recoup',
      value:
        `${fmt(Number(f.intake_baseline_cpu_ms_per_event), 2)}+${fmt(Number(f.intake_baseline_pg_cpu_ms_per_event), 2)} / ` +
        `${fmt(Number(f.intake_cpu_ms_per_event), 2)}+${fmt(Number(f.intake_pg_cpu_ms_per_event), 2)}`,
      note: `CPU-cost ratio ${fmt(Number(f.intake_cpu_ratio), 2)}; ${fmt(Number(f.intake_pg_statements_per_event), 1)} statements/event`,
    },
    {
      label: 'p99 latency baseline / recoup (ms)',
      value: `${fmt(Number(f.intake_baseline_p99_ms))} / ${fmt(Number(f.intake_p99_ms))}`,
    },
    {
      section: '4. Lateness',
      label: `steady ${fmt(Number(f.lateness_steady_rate_per_s))}/s: p50 (ms)`,
      value: fmt(f.lateness_p50_ms, 1),
    },
    { label: 'steady p99 (ms)', value: fmt(f.lateness_p99_ms, 1), note: met('lateness_p99_ms') },
    { label: 'steady max (ms)', value: fmt(f.lateness_max_ms, 1), note: met('lateness_max_ms') },
    {
      label: `burst of ${fmt(Number(f.burst_size))}: drain (s) vs N/capacity`,
      value: `${fmt(f.burst_drain_s, 1)} vs ${fmt(Number(f.burst_expected_s), 1)}`,
    },
    {
      section: '5. Scale (pending recoveries at every step of the default cadence)',
      label:
        `${fmt(Number(f.scale_due))} due: messages/s at ${fmt(Number(f.scale_small_pending))} / ` +
        `${fmt(Number(f.scale_large_pending))} / ${fmt(Number(f.scale_million_pending))} pending` +
        `${Number(f.scale_samples) > 1 ? ` (median of ${f.scale_samples})` : ''}`,
      value: `${fmt(Number(f.scale_small_per_s))} / ${fmt(Number(f.scale_large_per_s))} / ${fmt(Number(f.scale_million_per_s))}`,
    },
    { label: `ratio at ${fmt(Number(f.scale_large_pending))}`, value: fmt(f.scale_ratio, 2), note: met('scale_ratio') },
    {
      label: `ratio at ${fmt(Number(f.scale_million_pending))}`,
      value: fmt(f.pending_1m_dispatch_ratio, 2),
      note: met('pending_1m_dispatch_ratio'),
    },
    {
      label: 'worker CPU ms per job at each size',
      value:
        `${fmt(Number(f.scale_small_worker_cpu_ms_per_job), 2)} / ${fmt(Number(f.scale_large_worker_cpu_ms_per_job), 2)}` +
        ` / ${fmt(Number(f.scale_million_worker_cpu_ms_per_job), 2)}`,
      note: `CPU-cost ratios ${fmt(Number(f.scale_cpu_ratio), 2)} / ${fmt(Number(f.pending_1m_cpu_ratio), 2)}`,
    },
    {
      label: 'Redis bytes per pending recovery (used_memory)',
      value: fmt(f.redis_bytes_per_pending_recovery),
      note:
        `${met('redis_bytes_per_pending_recovery')}; keys under the prefix ` +
        `${fmt(Number(f.redis_key_bytes_per_pending_recovery))}; ${fmt(Number(f.wakeups_in_redis_at_1m))} wake-ups in Redis`,
    },
    {
      label: 'promoter pass (ms): after seeding / steady / after a flush',
      value:
        `${fmt(Number(f.promoter_first_pass_ms_at_1m))} / ${fmt(f.promoter_pass_ms_at_1m)} / ` +
        `${fmt(Number(f.promoter_pass_after_flush_ms_at_1m))}`,
      note: met('promoter_pass_ms_at_1m'),
    },
    {
      label: 'Postgres bytes per pending recovery',
      value: fmt(f.pg_bytes_per_pending_recovery),
      note: `customer + order + recovery, COPY at ${fmt(Number(f.scale_seed_per_s))}/s`,
    },
    {
      label: `intake p99 (ms) at ${fmt(Number(f.scale_small_pending))} / ${fmt(Number(f.scale_million_pending))} pending`,
      value: `${fmt(Number(f.intake_p99_ms_at_10k))} / ${fmt(f.intake_p99_ms_at_1m)}`,
      note: `${fmt(Number(f.intake_per_s_at_10k))} / ${fmt(Number(f.intake_per_s_at_1m))} events/s`,
    },
    {
      label: 'Postgres bytes per recovery + its messages',
      value: fmt(f.pg_bytes_per_recovery),
      note: `intake ${fmt(Number(f.pg_bytes_per_recovery_intake))} + ${String(f.cadence_steps)} × ${fmt(Number(f.pg_bytes_per_message))}/message`,
    },
    {
      section: '6. Cost per message',
      label: 'Redis commands (INFO commandstats)',
      value: fmt(f.redis_commands_per_message, 1),
      note: `baseline ${fmt(Number(f.queue_baseline_redis_commands_per_job), 1)}/job; ${fmt(Number(f.redis_client_commands_per_message), 1)} sent by the worker`,
    },
    { label: 'Postgres statements', value: fmt(f.pg_statements_per_message, 1), note: String(f.pg_statements_source) },
    {
      label: 'worker peak RSS (MB)',
      value: fmt(f.worker_peak_rss_mb),
      note: `${met('worker_peak_rss_mb')}; ${fmt(Number(f.worker_rss_after_start_mb))} MB idle after start (compiled JavaScript, no tsx)`,
    },
  ];
  const width = Math.max(...rows.map((r) => r.label.length));
  const valueWidth = Math.max(...rows.map((r) => r.value.length));
  const lines = [
    `recoup benchmark (${mode}) — ${machine.cpu_model}, ${machine.cores} cores, Node ${machine.node}, ` +
      `Redis ${machine.redis}, Postgres ${machine.postgres}`,
    '',
  ];
  for (const row of rows) {
    if (row.section) lines.push(row.section);
    lines.push(`  ${row.label.padEnd(width)}  ${row.value.padStart(valueWidth)}${row.note ? `  ${row.note}` : ''}`);
  }
  lines.push('', `Targets met: ${outcomes.filter((o) => o.met).length}/${outcomes.length}`);
  for (const o of outcomes) lines.push(`  ${o.met ? 'met   ' : 'MISSED'}  ${o.target}: ${fmt(o.value, 2)}`);
  return lines.join('\n');
}

export function writeResults(file: string, results: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
}
