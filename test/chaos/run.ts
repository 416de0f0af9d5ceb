/**
 * The fault harness (`npm run test:chaos`): a real multi-process recoup (one `recoup server`,
 * several `recoup worker`s) on loopback, against a fresh Postgres database and a Redis server
 * of its own (append-only file, fsync every second), with fake Twilio and SMTP servers it
 * controls. It feeds orders on a seconds-long cadence with quiet hours and a daily cap (some
 * customers have several orders, some live where it is night), pays some of them at random
 * moments (as the shop's events or as signed gateway webhooks delivered twice, abandoned and
 * resent), has customers reply STOP, change their number or click the unsubscribe link while
 * reminders are due, the shop cancel orders and ops stop recoveries from the console. Meanwhile
 * it kills workers (at random and at the two dangerous fault points) and the server (at the
 * payment webhook's fault point, then restarts it), flushes Redis, restarts it empty and from
 * its append-only file, terminates the workers' Postgres connections, silently partitions one
 * worker from Postgres, makes the providers fail, stops a worker gracefully under load, freezes
 * one (SIGSTOP, CHAOS_PAUSE_MS) for longer than the send lease, and runs every process on a
 * skewed clock. Then it checks the guarantees and prints a summary; the exit code is non-zero if
 * one was broken. Every answer the guarantees are measured from is timed when the harness
 * received it.
 *
 * Everything random comes from one seed (CHAOS_SEED, printed): the fault plan, the orders, the
 * payment moments, the providers' faults. Process scheduling is not reproducible, so a seed
 * replays the same plan, not the same interleaving.
 *
 * Modules: options.ts (knobs, cadence, records), processes.ts (spawning, Redis, the partition
 * proxy), fleet.ts (server and workers), traffic.ts (orders and everything sent to recoup),
 * faults.ts (the fault plan), checks.ts (the guarantees).
 *
 * Never touches the shared Redis on 6379: it starts `redis-server` on a free port.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { buildIfStale } from '../../scripts/build-if-stale.js';
import { openDatabase } from '../../src/db/client.js';
import { sandboxWebhookSecret } from '../../src/app/deps.js';
import { startFakeSmtp, mulberry32 } from '../helpers/fake-smtp.js';
import { startFakeTwilio } from '../helpers/fake-twilio.js';
import { check } from './checks.js';
import { drawFaultPlan, runFault, type FaultContext } from './faults.js';
import { Fleet } from './fleet.js';
import {
  cadenceSpanMs,
  cadenceYaml,
  expireAfterMs,
  newCounters,
  options,
  reconcileBound,
  sendLeaseMs,
  serviceEnv,
} from './options.js';
import { freePort, recoupSpawner, RedisServer, root, sleep, waitUntil, withPath } from './processes.js';
import { drawOrders, Traffic } from './traffic.js';
import { checkWebhooks, registerShop, startFlakyShop, webhookEnv, webhooksSettled } from './webhooks.js';

async function main(): Promise<number> {
  // The processes run from dist/: compile it first if a source changed.
  const built = buildIfStale(root);
  if (built !== 0) return built;
  const started = Date.now();
  const random = mulberry32(options.seed);
  const faultRandom = mulberry32(options.seed + 6);
  const runId = randomBytes(4).toString('hex');
  const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recoup-chaos-'));
  const counters = newCounters();
  console.log(
    `chaos: seed ${options.seed}, ${options.orders} orders over ${options.ingestSeconds}s, ${options.workers} workers, logs in ${logDir}`,
  );

  const harnessLog = fs.createWriteStream(path.join(logDir, 'harness.log'));
  const trace = (line: string) => harnessLog.write(`${((Date.now() - started) / 1000).toFixed(1)}s ${line}\n`);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

  try {
    // --- Postgres: a fresh database of our own.
    const adminUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
    const dbName = `recoup_chaos_${runId}`;
    const databaseUrl = withPath(adminUrl, dbName);
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`create database ${dbName}`);
    cleanups.push(async () => {
      if (options.keepDatabase) console.log(`chaos: database ${dbName} kept`);
      else await admin.query(`drop database if exists ${dbName} with (force)`);
      await admin.end();
    });
    const migrator = await openDatabase({ url: databaseUrl, dataDir: logDir, poolSize: 1 });
    await migrator.migrate();
    await migrator.close();
    const db = new pg.Pool({ connectionString: databaseUrl, max: 4, application_name: 'recoup-chaos' });
    db.on('error', () => undefined);
    cleanups.push(() => db.end());

    // --- Redis: our own server, persisting to an append-only file in the log directory.
    const redisPort = await freePort();
    const redisServer = new RedisServer(redisPort, path.join(logDir, 'redis'), path.join(logDir, 'redis.log'));
    await redisServer.start();
    cleanups.push(() => redisServer.stop());
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
    redis.on('error', () => undefined);
    cleanups.push(() => redis.disconnect());

    // --- Fake providers.
    const twilio = await startFakeTwilio({ seed: options.seed });
    cleanups.push(() => twilio.close());
    const smtp = await startFakeSmtp({ seed: options.seed + 1 });
    cleanups.push(() => smtp.close());
    const shop = await startFlakyShop(options.seed + 7, {
      error503: options.webhook503,
      late: options.webhookLate,
      dropped: options.webhookDropped,
    });
    cleanups.push(() => shop.close());

    const cadenceFile = path.join(logDir, 'cadences.yaml');
    fs.writeFileSync(cadenceFile, cadenceYaml);
    const apiKey = `chaos-${randomBytes(12).toString('hex')}`;
    const httpPort = await freePort();
    const serverUrl = `http://127.0.0.1:${httpPort}`;
    const prefix = 'chaos';
    const baseEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      DATABASE_URL: databaseUrl,
      REDIS_URL: redisUrl,
      QUEUE_PREFIX: prefix,
      PUBLIC_URL: serverUrl,
      RECOUP_SECRET: randomBytes(24).toString('hex'),
      RECOUP_API_KEYS: apiKey,
      SMS_TRANSPORT: 'twilio',
      TWILIO_ACCOUNT_SID: twilio.accountSid,
      TWILIO_AUTH_TOKEN: twilio.authToken,
      TWILIO_FROM: '+15005550006',
      TWILIO_API_URL: twilio.url,
      EMAIL_TRANSPORT: 'smtp',
      SMTP_URL: smtp.url,
      DATA_DIR: logDir,
      ...serviceEnv,
      ...webhookEnv,
    };

    const processes = new Set<ChildProcess>();
    cleanups.push(() => {
      for (const child of processes) child.kill('SIGKILL');
    });
    // Even if the harness itself crashes, it leaves no recoup or redis-server process behind.
    process.once('exit', () => {
      for (const child of processes) child.kill('SIGKILL');
      redisServer.kill();
    });

    const plans = drawOrders(runId, random);
    const paused = { count: 0 };
    const traffic = new Traffic({
      serverUrl,
      apiKey,
      runId,
      webhookSecret: sandboxWebhookSecret(baseEnv.RECOUP_SECRET ?? ''),
      counters,
      twilio,
      smtp,
      pausedWorkers: () => paused.count,
      db,
    });
    // The server crashes at its nth claim of a gateway event, while payments come in.
    const gatewayPayments = plans.filter((p) => p.payViaGateway).length;
    const serverCrashes = options.faults
      ? Array.from({ length: options.serverCrashes }, () =>
          Math.max(1, Math.floor(gatewayPayments * (0.1 + faultRandom() * 0.3))),
        )
      : [];
    const postgres = new URL(databaseUrl);
    const fleet = new Fleet({
      spawn: recoupSpawner(logDir, baseEnv, processes),
      counters,
      trace,
      random,
      clockRandom: mulberry32(options.seed + 3),
      postgres: { host: postgres.hostname, port: Number(postgres.port || 5432) },
      databaseUrl,
      server: { port: httpPort, url: serverUrl, cadenceFile },
      serverCrashes,
      onServerCrash: () => {
        // Every payment whose webhook was being delivered: one was claimed and not applied.
        for (const plan of traffic.deliveriesInFlight) {
          plan.throughServerCrash = true;
          counters.deliveriesCutByCrash += 1;
        }
      },
    });

    // Runs before the processes are killed (cleanups run last first): their exits are expected then.
    cleanups.push(() => {
      fleet.finishing = true;
    });

    // --- The server first (it applies migrations and the cadence), then the workers.
    await fleet.startServer();
    await registerShop(serverUrl, apiKey, shop);
    await traffic.openOpsSession();
    twilio.inboundUrl = `${serverUrl}/webhooks/twilio/inbound`;
    await Promise.all(Array.from({ length: options.workers }, () => fleet.startWorker()));
    // On a busy machine a cold `tsx` start takes seconds: the run proper begins once all are up.
    await Promise.all([...fleet.workers.values()].map((w) => w.ready));
    trace('all workers ready');

    // --- The fault plan, drawn up front from the seed.
    const ingestMs = options.ingestSeconds * 1_000;
    const activeWindowMs = ingestMs + cadenceSpanMs + 2_000;
    const plan = drawFaultPlan(random, faultRandom, activeWindowMs);
    console.log(
      `chaos: plan ${plan.map((p) => `${p.kind}${p.heal ? `(${p.heal})` : ''}@${(p.atMs / 1000).toFixed(1)}s`).join(' ')}` +
        serverCrashes.map((nth) => ` server_crash@webhook_claim#${nth}`).join(''),
    );
    const count = (pick: (p: (typeof plans)[number]) => unknown) => plans.filter(pick).length;
    const traffics: Array<[string, number]> = [
      ['stops', count((p) => p.stopAfterMs !== undefined)],
      ['phone_changes', count((p) => p.newPhone)],
      ['unsubscribers', count((p) => p.unsubscribeAfterEmailMs !== undefined)],
      ['cancels', count((p) => p.cancelAfterMs !== undefined)],
      ['ops_stops', count((p) => p.opsStopAfterMs !== undefined)],
      ['orders_of_shared_customers', count((p) => p.customerOrders > 1)],
      ['orders_at_night', count((p) => p.night)],
    ];
    console.log(`chaos: traffic ${traffics.map(([k, n]) => `${k}=${n}`).join(' ')}`);

    twilio.setFaults(
      {
        error500Rate: options.twilio500,
        error429Rate: options.twilio429,
        timeoutRate: options.twilioTimeout,
        dropRate: options.twilioDrop,
      },
      options.seed,
    );
    smtp.setFaults({ tempFailRate: options.smtp4xx, permFailRate: options.smtp5xx }, options.seed + 1);

    const faultContext: FaultContext = {
      fleet,
      counters,
      trace,
      db,
      dbName,
      redis,
      redisServer,
      traffic,
      plans,
      runId,
      paused,
    };
    const runStart = Date.now();
    const faultsDone = (async () => {
      for (const step of plan) {
        const wait = runStart + step.atMs - Date.now();
        if (wait > 0) await sleep(wait);
        trace(`fault ${step.kind}`);
        const happened = await runFault(step, faultContext).catch((err: unknown) => {
          console.log(`chaos: ${step.kind} failed: ${String(err)}`);
          return false;
        });
        if (!happened) {
          counters.faultPlanSkipped += 1;
          trace(`fault ${step.kind} did not happen`);
        }
      }
    })();

    // --- Orders in, and everything that happens to them.
    let ingested = false;
    const unsubscribes = traffic.watchEmailsForUnsubscribes(plans, () => ingested);
    await Promise.all(
      plans.map(async (p) => {
        await sleep(Math.floor((p.index * ingestMs) / options.orders));
        await traffic.run(p);
      }),
    );
    await faultsDone;

    // --- Drain: no more faults; restarted workers run clean.
    fleet.chaosOn = false;
    twilio.setFaults({});
    smtp.setFaults({});
    shop.rates = { error503: 0, late: 0, dropped: 0 };
    for (const w of [...fleet.workers.values()]) {
      if (w.faultSpec && !w.expectedExit) {
        w.expectedExit = true;
        w.child.kill('SIGKILL');
      }
    }
    // A large run ends with a backlog: each expired recovery still needs its wake-up to run.
    const drainDeadlineMs = expireAfterMs + 90_000 + options.orders * 10;
    const drained = await waitUntil(
      async () => {
        const { rows } = await db.query<{ active: number; sending: number }>(
          `select (select count(*)::int from recoveries where state = 'active') as active,
                  (select count(*)::int from messages where status = 'sending') as sending`,
        );
        return rows[0]?.active === 0 && rows[0]?.sending === 0;
      },
      drainDeadlineMs,
      'every recovery to end',
    ).then(
      () => true,
      () => false,
    );
    // Then every event told to the shop: retries of the last failed deliveries are seconds apart.
    const webhooksDrained = await waitUntil(
      () => webhooksSettled(db),
      60_000 + options.orders * 20,
      'webhooks to settle',
    ).then(
      () => true,
      () => false,
    );
    ingested = true;
    await unsubscribes;
    fleet.finishing = true;
    // Planned faults that never came: a server crash point never reached, no STOP-like event of a kind answered.
    counters.faultPlanSkipped += fleet.serverCrashesLeft;
    const answered: Array<[string, number, number]> = [
      ['unsubscribe', counters.unsubscribesAnswered, count((p) => p.unsubscribeAfterEmailMs !== undefined)],
      ['order.cancelled', counters.cancelsAnswered, count((p) => p.cancelAfterMs !== undefined)],
      ['ops stop', counters.opsStopsAnswered, count((p) => p.opsStopAfterMs !== undefined)],
    ];
    for (const [what, done, planned] of answered) {
      if (planned > 0 && done === 0) {
        counters.faultPlanSkipped += 1;
        console.log(`chaos: no ${what} happened of the ${planned} planned`);
      }
    }

    // --- Checks.
    const report = await check({
      db,
      redis,
      prefix,
      plans,
      twilio,
      smtp,
      unsubscribedAt: traffic.unsubscribedAt,
      readyTimeline: fleet.readyTimeline,
    });
    const webhooks = await checkWebhooks(db, shop);
    const durationS = (Date.now() - started) / 1000;
    const summary: Array<[string, string | number]> = [
      ['orders', options.orders],
      ['orders_accepted', count((p) => p.failedAccepted)],
      ['payments', count((p) => p.paidAckAt !== undefined)],
      ['payments_via_gateway', count((p) => p.paidAckAt !== undefined && p.payViaGateway)],
      ['payments_through_server_crash', count((p) => p.throughServerCrash)],
      ['gateway_deliveries', counters.gatewayDeliveries],
      ['gateway_redeliveries', counters.gatewayRedeliveries],
      ['stops_answered', counters.stopsAnswered],
      ['phone_changes_answered', counters.phoneChangesAnswered],
      ['unsubscribes_answered', counters.unsubscribesAnswered],
      ['cancels_answered', counters.cancelsAnswered],
      ['ops_stops_answered', counters.opsStopsAnswered],
      ['ops_stops_too_late', counters.opsStopsTooLate],
      ['steps_scheduled', report.stepsScheduled],
      ['sent', report.sent],
      ['skipped', report.skipped],
      ['failed', report.failed],
      ['unknown', report.unknown],
      ['deferred_quiet_hours', report.deferredQuietHours],
      ['deferred_daily_cap', report.deferredDailyCap],
      ['customer_days_at_cap', report.customersAtCap],
      ['provider_accepted', twilio.messages.length + smtp.messages.length],
      ['provider_refused', twilio.requests.filter((r) => (r.status ?? 0) >= 400).length + smtp.refused],
      ['duplicates', report.duplicates],
      ['sent_after_payment', report.sentAfterPayment],
      ['accepted_after_payment', report.acceptedAfterPayment],
      ['sent_after_stop', report.sentAfterStop],
      ['sent_after_cancel', report.sentAfterCancel],
      ['sent_to_replaced_address', report.sentToReplacedAddress],
      ['sent_in_quiet_hours', report.sentInQuietHours],
      ['cap_exceeded', report.capExceeded],
      ['accepted_unattributed', report.unattributed],
      ['accepted_within_3s_before_payment_answer', report.acceptedShortlyBeforePayment],
      ['sms_within_3s_before_stop_answer', report.smsShortlyBeforeStop],
      ['sms_within_3s_before_change_answer', report.smsShortlyBeforeChange],
      ['accepted_within_3s_before_unsubscribe_cancel_or_ops_stop', report.acceptedShortlyBeforeOtherStop],
      ['payments_lost', report.paymentsLost],
      ['missed_steps', report.missedSteps],
      ['steps_due_without_worker', report.stepsDueWithoutWorker],
      ['steps_behind_deferral', report.stepsBehindDeferral],
      ['unknown_unresolved', report.unknown],
      ['sent_not_accepted', report.sentNotAccepted],
      ['lost_recoveries', report.lostRecoveries],
      ['still_active', report.stillActive],
      ['stuck_sending', report.stuckSending],
      ['ledger_mismatch', report.ledgerMismatch],
      ['ledger_total', report.ledgerTotal],
      ['payments_total', report.paymentsTotal],
      ['worker_starts', counters.workerStarts],
      ['worker_kills', counters.killsRandom],
      ['worker_kills_skipped', counters.killsSkipped],
      ['fault_plan_skipped', counters.faultPlanSkipped],
      ['fault_point_crashes', counters.faultPointCrashes],
      ['server_starts', counters.serverStarts],
      ['server_crashes', counters.serverCrashes],
      ['webhook_deliveries_cut_by_crash', counters.deliveriesCutByCrash],
      ['pg_connections_terminated', counters.pgTerminated],
      ['partitions', counters.partitions],
      ['partitions_resumed', counters.partitionsHealed],
      ['partitions_cut', counters.partitionsCut],
      ['partition_ms', options.partitionMs],
      ['redis_flushes', counters.redisFlushes],
      ['redis_restarts', counters.redisRestarts],
      ['redis_aof_restarts', counters.redisAofRestarts],
      ['worker_clock_offset_max_ms', counters.clockOffsetMaxMs],
      ['server_clock_offset_max_ms', counters.serverClockOffsetMaxMs],
      ['worker_pauses', counters.pauses],
      ['worker_pause_ms', options.pauseMs],
      ['send_lease_ms', sendLeaseMs],
      ['paused_payment_answer_ms', counters.pausedPaymentAnswerMs ?? 'n/a'],
      ['payments_while_paused', counters.paymentsWhilePaused],
      ['payment_answer_ms_max_while_paused', counters.paymentAnswerMsMaxWhilePaused],
      ['sigterm_exit_ms', counters.sigtermExitMs ?? 'n/a'],
      ['sigterm_exit_code', counters.sigtermExitCode ?? 'n/a'],
      ['shutdown_overruns', counters.shutdownOverruns],
      ['unexpected_exits', counters.unexpectedExits],
      ['webhooks_lost', webhooks.lost],
      ['webhook_ids_reused_for_different_events', webhooks.idsReused],
      ['webhook_events_received', webhooks.uniqueEvents],
      ['webhook_redeliveries', webhooks.redeliveries],
      ['webhook_failed_attempts', webhooks.failedAttempts],
      ['webhook_deliveries_given_up', webhooks.givenUp],
      ['webhooks_drained', webhooksDrained ? 'yes' : 'no'],
      ['recoveries_ended', report.endings],
      ['event_post_retries', counters.postRetries],
      ['event_posts_failed', counters.postsFailed],
      ['drained', drained ? 'yes' : 'no'],
      ['reconcile_bound', reconcileBound],
      ['duration_s', durationS.toFixed(1)],
      ['seed', options.seed],
    ];
    console.log('--- chaos summary');
    for (const [name, value] of summary) console.log(`${name}: ${value}`);
    console.log('---');

    const broken = [
      report.duplicates,
      report.sentAfterPayment,
      report.acceptedAfterPayment,
      report.sentAfterStop,
      report.sentAfterCancel,
      report.sentToReplacedAddress,
      report.sentInQuietHours,
      report.capExceeded,
      report.unattributed,
      report.paymentsLost,
      report.missedSteps,
      counters.faultPlanSkipped,
      report.lostRecoveries,
      report.ledgerMismatch,
      report.sentNotAccepted,
      report.stillActive,
      webhooks.lost,
      webhooks.idsReused,
      counters.shutdownOverruns,
      counters.unexpectedExits,
      counters.postsFailed,
      counters.sigtermExitCode === undefined || counters.sigtermExitCode === 0 ? 0 : 1,
    ].some((n) => n !== 0);
    if (broken) {
      console.log(`chaos: FAILED (seed ${options.seed}); process logs kept in ${logDir}`);
      for (const line of [...report.examples, ...webhooks.examples]) console.log(`  ${line}`);
    } else if (!options.keepLogs) {
      cleanups.unshift(() => fs.rmSync(logDir, { recursive: true, force: true }));
    }
    return broken ? 1 : 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
