/**
 * `npm run bench:delivery -- [--followups N] [--concurrency C] [--per-call K] [--talk-ms T] [--db sqlite|postgres]`
 * (figures in docs/performance.md).
 *
 * How fast what a call produced reaches the clinic's webhook, through the engine's own code: the
 * follow-through of src/calls/follow-through.ts (`FollowThrough.forCall(...).commit` during the call,
 * `finish` at its end: template summary, `finishCall` releasing the held deliveries, then the outbox
 * kicked, as src/server.ts wires it), the durable store (SQLite in a temporary directory, or with
 * `--db postgres` a throwaway PostgreSQL server from test/support/postgres.ts), the real outbox
 * (src/delivery/outbox.ts, default concurrency and poll) with the real signed webhook sender, and a
 * real loopback receiver that verifies every signature with the recipe docs/delivery.md gives.
 *
 * C simulated calls run at once, each committing K follow-ups (default 1) then, after T ms of
 * "talk", finishing; as one ends the next starts, until N follow-ups are committed. With T = 0
 * (default) calls end back to back: a stress of the store and the outbox, whose figures are mostly
 * queueing. With T > 0 the calls' starts are spread over T, so calls end at a steady C/T per ms.
 * Measured:
 * - commitMs: `commit` (the follow-up and its held webhook delivery, one transaction) per follow-up;
 * - finishCallMs: the end-of-call transaction (summary, its delivery, release of the held ones);
 * - finishToReceiptMs: finishCall resolved → the follow-up's webhook received (signature verified);
 * - commitToReceiptMs: the commit resolved (what the caller's "I've sent it" waits for) → received;
 *   with --talk-ms 0 this is finishCall plus the outbox's pick-up and send;
 * - summaryFinishToReceiptMs: finishCall resolved → the call summary's webhook received.
 * Every delivery must arrive exactly once and verify, else the exit code is 1. One JSON object goes
 * to stdout (percentiles nearest-rank, ms to 0.1), progress to stderr.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { arch, cpus, loadavg, platform, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { initialContext } from '../machines/call/call.context.js';
import type { StoredRequest } from '../machines/call/call.types.js';
import { toCallTenant } from '../src/calls/call-input.js';
import { newCallRecord } from '../src/calls/call-record.js';
import { FollowThrough } from '../src/calls/follow-through.js';
import { loadTenants } from '../src/config/tenants.js';
import { clinicDeliveries } from '../src/delivery/clinics.js';
import { createOutbox, OUTBOX_CONCURRENCY, OUTBOX_POLL_MS } from '../src/delivery/outbox.js';
import { createLogger } from '../src/observability/logger.js';
import type { CallerRequest } from '../src/providers/agent/types.js';
import { openStore } from '../src/store/index.js';
import type { FollowUpStore } from '../src/store/types.js';
import { receiverVerifies } from '../test/delivery/kit.js';
import { findPostgresBinaries, startPostgres, type PostgresServer } from '../test/support/postgres.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECRET = 'whsec_bench-delivery-0123456789abcdef';
/** Give up waiting for deliveries this long after the last call finished. */
const RECEIPT_TIMEOUT_MS = 60_000;

class UsageError extends Error {}

interface Cli {
  followUps: number;
  concurrency: number;
  perCall: number;
  talkMs: number;
  db: 'sqlite' | 'postgres';
}

const usage = 'usage: npm run bench:delivery -- [--followups N] [--concurrency C] [--per-call K] [--talk-ms T] [--db sqlite|postgres]';

function parseArgs(argv: string[]): Cli {
  const cli: Cli = { followUps: 200, concurrency: 20, perCall: 1, talkMs: 0, db: 'sqlite' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value\n${usage}`);
      return v;
    };
    const int = (min: number, max: number) => {
      const v = Number(value());
      if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`${a} must be an integer ${min}-${max}\n${usage}`);
      return v;
    };
    if (a === '--followups' || a === '-n') cli.followUps = int(1, 100_000);
    else if (a === '--concurrency' || a === '-c') cli.concurrency = int(1, 1_000);
    else if (a === '--per-call') cli.perCall = int(1, 20);
    else if (a === '--talk-ms') cli.talkMs = int(0, 60_000);
    else if (a === '--db') {
      const v = value();
      if (v !== 'sqlite' && v !== 'postgres') throw new UsageError(`--db must be sqlite or postgres\n${usage}`);
      cli.db = v;
    } else if (a === '--help' || a === '-h') {
      process.stderr.write(`${usage}\n`);
      process.exit(0);
    } else throw new UsageError(`unknown argument ${a}\n${usage}`);
  }
  return cli;
}

type Dist = { count: number; p50: number | null; p95: number | null; p99: number | null; max: number | null; mean: number | null };

/** Nearest-rank percentiles, ms rounded to 0.1 (as scripts/bench.ts). */
function dist(values: readonly number[]): Dist {
  const v = [...values].sort((a, b) => a - b);
  const r = (x: number | undefined) => (x === undefined ? null : Math.round(x * 10) / 10);
  const q = (p: number) => r(v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]);
  const mean = v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
  return { count: v.length, p50: q(50), p95: q(95), p99: q(99), max: r(v.at(-1)), mean: r(mean) };
}

const loadAtStart = loadavg().map((x) => Math.round(x * 100) / 100);

function machine() {
  const c = cpus();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  return { cpus: c.length, cpuModel: c[0]?.model ?? 'unknown', memGB: Math.round(totalmem() / 1e9), node: process.version, platform: `${platform()} ${arch()}`, vetline: pkg.version,
    loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((x) => Math.round(x * 100) / 100) } };
}

const log = (msg: string) => process.stderr.write(`[bench:delivery] ${msg}\n`);

interface Receipt {
  at: number;
  verified: boolean;
}

/** The clinic's receiver: verifies each signature (docs/delivery.md recipe), notes when each id arrived. */
async function startReceiver(): Promise<{ url: string; receipts: Map<string, Receipt[]>; close(): Promise<void> }> {
  const receipts = new Map<string, Receipt[]>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const at = performance.now();
      const raw = Buffer.concat(chunks);
      const header = req.headers['x-vetline-signature'];
      const verified = receiverVerifies(SECRET, typeof header === 'string' ? header : undefined, raw);
      const id = String((JSON.parse(raw.toString('utf8')) as { id?: unknown }).id);
      const list = receipts.get(id) ?? [];
      list.push({ at, verified });
      receipts.set(id, list);
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/vetline`,
    receipts,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The store with the two call-path writes timed (performance.now() when each resolved). */
function timedStore(real: FollowUpStore, finished: Map<string, { start: number; done: number }>): FollowUpStore & { finishedCall(callSid: string): Promise<void> } {
  const waiters = new Map<string, () => void>();
  const store = new Proxy(real, {
    get(target, prop) {
      if (prop === 'finishCall') {
        const finishCall: FollowUpStore['finishCall'] = async (summary, deliveries, now) => {
          const start = performance.now();
          await target.finishCall(summary, deliveries, now);
          finished.set(summary.callSid, { start, done: performance.now() });
          waiters.get(summary.callSid)?.();
        };
        return finishCall;
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value; // private fields need the real `this`
    },
  });
  return Object.assign(store, {
    /** Resolves once this call's finishCall resolved. */
    finishedCall: (callSid: string) => new Promise<void>((resolve) => (finished.has(callSid) ? resolve() : waiters.set(callSid, resolve))),
  });
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

const request = (n: number): CallerRequest => ({
  kind: n % 5 === 4 ? 'message' : 'appointment',
  petName: 'Rex',
  petSpecies: 'dog',
  ownerName: 'Jane Smith',
  reason: n % 5 === 4 ? null : 'vaccinations',
  preferredTime: n % 5 === 4 ? null : 'tomorrow at 10 am',
  message: n % 5 === 4 ? 'Please call about the test results.' : null,
  recipient: n % 5 === 4 ? 'Dr. Lee' : null,
  callback: { kind: 'spoken', number: '5550100200' },
  urgency: 'routine',
});

async function run(cli: Cli) {
  const dir = mkdtempSync(join(tmpdir(), 'vetline-bench-delivery-'));
  let pg: PostgresServer | null = null;
  const receiver = await startReceiver();
  try {
    // The clinic: the test fixture quick-vet with a webhook to the receiver.
    const tenantsDir = join(dir, 'tenants');
    mkdirSync(tenantsDir);
    const quick = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/tenants/quick-vet.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(tenantsDir, 'quick-vet.json'), JSON.stringify({ ...quick, $schema: undefined, followUps: { webhook: { url: receiver.url, secretEnv: 'BENCH_WEBHOOK_SECRET' } } }));
    const tenants = await loadTenants(tenantsDir, { env: { BENCH_WEBHOOK_SECRET: SECRET }, nodeEnv: 'development' });
    const tenant = tenants.byId('quick-vet')!;

    let databaseUrl: string;
    if (cli.db === 'postgres') {
      const bins = findPostgresBinaries();
      if (!bins) throw new UsageError('--db postgres needs PostgreSQL binaries (/usr/lib/postgresql/<version>/bin or PG_BINDIR)');
      log(`starting PostgreSQL ${bins.version}`);
      pg = await startPostgres(bins);
      databaseUrl = await pg.createDatabase('bench');
    } else databaseUrl = `sqlite:${join(dir, 'bench.db')}`;
    const real = await openStore(databaseUrl);
    const finished = new Map<string, { start: number; done: number }>();
    const store = timedStore(real, finished);

    const logger = createLogger({ level: 'warn' });
    const clinic = clinicDeliveries(tenants, { smtp: false, sms: false });
    const outbox = createOutbox({ store, clinic, logger, version: 'bench' });
    // As src/server.ts wires it.
    const followThrough = new FollowThrough({
      store,
      channels: (t) => {
        const d = clinic(t.id);
        return { webhook: d?.webhook != null, email: d?.email != null, sms: d?.sms != null };
      },
      due: () => void outbox.kick(),
      logger,
    });
    outbox.start();

    const commits: { id: string; callSid: string; calledAt: number; doneAt: number }[] = [];
    let next = 0;
    let callNo = 0;
    const callProviders = { vad: 'energy', stt: 'fake', agent: 'fake', tts: 'fake' };

    const oneCall = async (): Promise<void> => {
      const callSid = `CA${String(++callNo).padStart(32, '0')}`;
      const record = newCallRecord(callSid, tenant.id, callProviders);
      const followUps = followThrough.forCall(callSid, tenant, '+15557654321', () => true);
      const final = initialContext({ callSid, tenant: toCallTenant(tenant) });
      const stored: StoredRequest[] = [];
      for (let k = 0; k < cli.perCall && next < cli.followUps; k++) {
        // A call's steps come from I/O (a caller's words, a model's reply): give the loop back in between,
        // since the SQLite store's settled promises would otherwise chain every call into one long task.
        await yieldToLoop();
        const r = request(next++);
        const calledAt = performance.now();
        const id = await followUps.commit(r);
        commits.push({ id, callSid, calledAt, doneAt: performance.now() });
        stored.push({ ...r, callback: { kind: r.callback.kind }, id });
        final.history.push({ role: 'caller', text: 'I would like to book an appointment for Rex.' }, { role: 'agent', text: "Great. I've sent your request to the team." });
      }
      if (cli.talkMs > 0) await new Promise((r) => setTimeout(r, cli.talkMs));
      else await yieldToLoop();
      final.requests = stored;
      final.outcome = 'callerHungUp';
      record.endedAt = new Date().toISOString();
      followUps.finish(final, record, logger);
      await store.finishedCall(callSid);
    };

    log(`${cli.followUps} follow-ups, ${cli.concurrency} concurrent calls, ${cli.perCall} per call, talk ${cli.talkMs} ms, ${store.kind}`);
    // The engine's event loop also paces every call's audio: a synchronous store write stalls it.
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const started = performance.now();
    // With talk time, the calls' starts are spread over it, so calls end at a steady rate (C per T ms), not in waves.
    await Promise.all(Array.from({ length: cli.concurrency }, async (_, i) => {
      if (cli.talkMs > 0) await new Promise((r) => setTimeout(r, (i * cli.talkMs) / cli.concurrency));
      while (next < cli.followUps) await oneCall();
    }));
    const committedIn = performance.now() - started;
    const calls = [...finished.keys()];
    const expected = [...commits.map((c) => c.id), ...calls];
    log(`${commits.length} follow-ups committed in ${Math.round(committedIn)} ms; waiting for ${expected.length} deliveries`);
    const deadline = performance.now() + RECEIPT_TIMEOUT_MS;
    while (expected.some((id) => !receiver.receipts.has(id)) && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const wallMs = performance.now() - started;
    lag.disable();
    // Any duplicate would come from a second send: give the outbox one more poll to make one.
    await new Promise((r) => setTimeout(r, 500));
    await outbox.stop();
    const stats = outbox.stats();
    await followThrough.idle();
    await real.close();

    const first = (id: string) => receiver.receipts.get(id)?.[0]?.at;
    const finishToReceipt: number[] = [];
    const commitToReceipt: number[] = [];
    for (const c of commits) {
      const at = first(c.id);
      const fin = finished.get(c.callSid);
      if (at === undefined || !fin) continue;
      finishToReceipt.push(at - fin.done);
      commitToReceipt.push(at - c.doneAt);
    }
    const summaryToReceipt = calls.flatMap((sid) => {
      const at = first(sid);
      const fin = finished.get(sid);
      return at !== undefined && fin ? [at - fin.done] : [];
    });
    const all = expected.map((id) => receiver.receipts.get(id) ?? []);
    const arrivals = all.flatMap((r) => r.map((x) => x.at));
    const firstFinish = Math.min(...[...finished.values()].map((f) => f.done));
    const lagMs = (ns: number) => Math.round(ns / 1e5) / 10;
    const deliveries = {
      expected: expected.length,
      received: all.filter((r) => r.length > 0).length,
      missing: all.filter((r) => r.length === 0).length,
      duplicates: all.reduce((n, r) => n + Math.max(0, r.length - 1), 0),
      unverified: all.flat().filter((r) => !r.verified).length,
      outbox: { delivered: stats.delivered, retried: stats.retried, failed: stats.failed },
    };
    return {
      config: { db: store.kind, followUps: cli.followUps, calls: calls.length, concurrency: cli.concurrency, perCall: cli.perCall, talkMs: cli.talkMs,
        outboxConcurrency: OUTBOX_CONCURRENCY, outboxPollMs: OUTBOX_POLL_MS, channels: ['webhook'] },
      commitMs: dist(commits.map((c) => c.doneAt - c.calledAt)),
      finishCallMs: dist([...finished.values()].map((f) => f.done - f.start)),
      finishToReceiptMs: dist(finishToReceipt),
      commitToReceiptMs: dist(commitToReceipt),
      summaryFinishToReceiptMs: dist(summaryToReceipt),
      deliveries,
      /** Receipts per second from the first call's end to the last receipt. */
      deliveriesPerSecond: arrivals.length ? Math.round((arrivals.length / ((Math.max(...arrivals) - firstFinish) / 1000)) * 10) / 10 : 0,
      eventLoopDelayMs: { p50: lagMs(lag.percentile(50)), p99: lagMs(lag.percentile(99)), max: lagMs(lag.max) },
      committedInMs: Math.round(committedIn),
      wallMs: Math.round(wallMs),
      followUpsPerSecond: Math.round((commits.length / (wallMs / 1000)) * 10) / 10,
      ok: deliveries.missing === 0 && deliveries.duplicates === 0 && deliveries.unverified === 0,
    };
  } finally {
    await receiver.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const cli = parseArgs(process.argv.slice(2));
  const command = `npm run bench:delivery -- ${process.argv.slice(2).join(' ')}`.trimEnd();
  const result = await run(cli);
  process.stdout.write(`${JSON.stringify({ bench: 'vetline-delivery', command, machine: machine(), ...result }, null, 2)}\n`);
  if (!result.ok) {
    log(`FAILED: ${JSON.stringify(result.deliveries)}`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof UsageError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
