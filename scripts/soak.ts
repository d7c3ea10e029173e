/**
 * `npm run -s soak -- [--calls 10000] [--concurrency 100] [--frames 20] [--sample-every 1000] [--warmup 1000]`
 * (docs/design/reliability.md §4 recipe 3): many short calls against one engine, then leak accounting.
 *
 * The engine runs in this process (so its registry, sockets and call sessions can be counted) on
 * 127.0.0.1 port 0 with the fixture clinics, the energy VAD, fake recognizer/agent/synthesizer and a
 * Twilio REST stand-in that accepts everything; journals go to a temporary directory. Calls come in
 * batches of `--concurrency`, from a pool of caller numbers, each over the real protocol
 * (test/support/fake-twilio.ts): signed webhook, stream, greeting played, `--frames` 20 ms inbound frames (half a tone the VAD hears as
 * speech, half silence), then `stop` and close.
 *
 * Every `--sample-every` calls, with no call in flight and every journal closed: full GC (twice),
 * then heapUsed, arrayBuffers and rss. After `--warmup` calls (registry, inspector and compiler
 * caches fill up first), least-squares slopes in bytes per call. The leak check is exact: the live
 * heap (scripts/heap-live.ts: a heap snapshot's reachable objects, compiled code excluded) at the
 * first sample after warm-up and at the last, per call between them; it and the arrayBuffers slope
 * must stay under `--max-slope` (200 B/call). heapUsed and rss slopes are reported only: heapUsed
 * also counts memory the collector has not handed back (±150 KB between samples). The run turns
 * V8's optimizing compiler and bytecode flushing off (STEADY_HEAP_V8_FLAGS). At the end, with every call over: live calls in the registry, WebSocket clients and
 * HTTP connections, open journals, call sessions not garbage-collected (each owns one call actor),
 * and `process.getActiveResourcesInfo()` by type against the baseline taken before the first call
 * (after up to 10 s for keep-alive sockets to close) must all be back to zero / baseline.
 *
 * `SOAK_PLANT_LEAK=1` (or `--plant-leak [bytes]`) plants a leak through the engine's test seam
 * (`SessionTap`: the engine calls it for every state change): 1 KiB retained per call. The run must
 * then fail (as it does in test/soak/soak.test.ts). Prints one JSON object to stdout (progress to
 * stderr); exit 1 when it fails.
 * Needs `--expose-gc` (the npm script passes it; without it the flag is set at run time).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Writable } from 'node:stream';
import type { SessionTap } from '../src/calls/session.js';
import { loadEnv } from '../src/config/env.js';
import { loadTenants } from '../src/config/tenants.js';
import { createJournalFactory } from '../src/journal/writer.js';
import { createLogger } from '../src/observability/logger.js';
import { createFakeAgent } from '../src/providers/agent/fake.js';
import type { AgentProvider } from '../src/providers/agent/types.js';
import { createFakeStt } from '../src/providers/stt/fake.js';
import type { SttProvider } from '../src/providers/stt/types.js';
import { createFakeTts } from '../src/providers/tts/fake.js';
import { PromptCache } from '../src/providers/tts/prompt-cache.js';
import type { TtsProvider } from '../src/providers/tts/types.js';
import { energyVad } from '../src/providers/vad/energy.js';
import { buildServer } from '../src/server.js';
import type { TwilioRest } from '../src/twilio/rest-types.js';
import { encodeUlaw } from '../src/audio/ulaw.js';
import { FakeTwilio } from '../test/support/fake-twilio.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../test/support/engine.js';
import { liveHeapBytes } from './heap-live.js';

const QUICK_VET = '+15550109000';
const FRAME_MS = 20;

export interface SoakOptions {
  calls: number;
  concurrency: number;
  /** Inbound 20 ms frames per call (≥ 2). */
  frames: number;
  sampleEvery: number;
  warmup: number;
  /** Bound for the live heap's growth and the arrayBuffers slope, bytes per call. */
  maxSlope: number;
  /** Bytes retained per call through the engine's SessionTap (0: no leak planted). */
  plantLeakBytes: number;
  journal: boolean;
  progress?: (line: string) => void;
}

/**
 * V8 flags set for the rest of the process when a run starts. Optimized code with its
 * deoptimization data, and bytecode flushed and compiled again, grew heapUsed by ~1 KiB/call from
 * call 200 to 700 (heap snapshots: code, not data); without them it is flat within a few hundred
 * bytes per call after 200 calls, and the calls take no longer (they wait on sockets and timers).
 */
export const STEADY_HEAP_V8_FLAGS = ['--no-opt', '--no-flush-bytecode'] as const;

export const SOAK_DEFAULTS: SoakOptions = {
  calls: 10_000, concurrency: 100, frames: 20, sampleEvery: 1_000, warmup: 1_000, maxSlope: 200, plantLeakBytes: 0, journal: true,
};

interface Sample { calls: number; heapUsed: number; arrayBuffers: number; rss: number }

export interface SoakResult {
  config: Omit<SoakOptions, 'progress'>;
  v8Flags: readonly string[];
  wallS: number;
  callsCompleted: number;
  callsFailed: number;
  /** Outcomes the engine recorded (the last 200 calls: the registry keeps no more). */
  recentOutcomes: Record<string, number>;
  samples: Sample[];
  slopes: { heapUsed: number | null; arrayBuffers: number | null; rss: number | null; samplesUsed: number };
  /** Live heap (compiled code excluded) at the first sample after warm-up and at the last, and its growth per call between them. */
  liveHeap: { from: { calls: number; bytes: number } | null; to: { calls: number; bytes: number } | null; perCall: number | null };
  /** HTTP keep-alive connections of the webhook client, idle at the end and closed before counting leaks. */
  idleKeepAliveConnectionsClosed: number;
  leaks: {
    registryActive: number;
    websocketClients: number;
    httpConnections: number;
    journalsOpen: number;
    /** Call sessions created and not garbage-collected after the run (each owns one call actor). */
    liveSessions: number;
    /** FakeTwilio callers not collected: a leak in the load generator itself. */
    liveCallers: number;
    /** Active resources above the baseline, by type (e.g. `Timeout`, `TCPSocketWrap`). */
    resourcesOverBaseline: Record<string, number>;
  };
  engineLog: { warnings: number; errors: number };
  failures: string[];
  pass: boolean;
}

/** The `gc` function, exposing it at run time when the process was started without `--expose-gc`. */
function getGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Least-squares slope of y over x; null with fewer than two points. */
export function slope(points: readonly { x: number; y: number }[]): number | null {
  if (points.length < 2) return null;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  return sxx === 0 ? null : Math.round((sxy / sxx) * 10) / 10;
}

function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

function overBaseline(now: Record<string, number>, base: Record<string, number>): Record<string, number> {
  const over: Record<string, number> = {};
  for (const [type, n] of Object.entries(now)) if (n > (base[type] ?? 0)) over[type] = n - (base[type] ?? 0);
  return over;
}

/**
 * The fake providers record every stream, synthesis and session they serve (tests inspect them),
 * so one long-lived instance grows with every call. A fresh fake per use keeps their behaviour and
 * lets each be collected with its call.
 */
function freshFakes(charsPerSecond: number): { stt: SttProvider; tts: TtsProvider; agent: AgentProvider } {
  return {
    stt: { name: 'fake', open: (o) => createFakeStt().open(o) },
    tts: { name: 'fake', synthesize: (text, o) => createFakeTts({ charsPerSecond }).synthesize(text, o) },
    agent: { name: 'fake', startSession: (tenant) => createFakeAgent().startSession(tenant) },
  };
}

/** A Twilio REST API that accepts every request at once. */
const acceptingRest: TwilioRest = {
  updateCallTwiml: () => Promise.resolve(),
  hangup: () => Promise.resolve(),
  startRecording: () => Promise.resolve({ recordingSid: `RE${'0'.repeat(32)}` }),
};

/** A pino destination that keeps only counts of warnings and errors (retaining lines would leak). */
function countingLog() {
  const counts = { warnings: 0, errors: 0 };
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const m of chunk.toString('utf8').matchAll(/"level":(\d+)/g)) {
        if (m[1] === '40') counts.warnings++;
        else if (Number(m[1]) >= 50) counts.errors++;
      }
      done();
    },
  });
  return { counts, destination };
}

/** The caller's part: a tone the energy VAD hears, then silence (μ-law 0xFF), `frames` × 20 ms in all. */
function callerAudio(frames: number): Uint8Array {
  const n = frames * FRAME_MS * 8;
  const speech = Math.floor(frames / 2) * FRAME_MS * 8;
  const pcm = new Int16Array(n);
  for (let i = 0; i < speech; i++) pcm[i] = Math.round(8000 * Math.sin((2 * Math.PI * 300 * i) / 8000));
  return encodeUlaw(pcm);
}

export async function runSoak(options: Partial<SoakOptions> = {}): Promise<SoakResult> {
  const o: SoakOptions = { ...SOAK_DEFAULTS, ...options };
  const progress = o.progress ?? (() => undefined);
  for (const flag of STEADY_HEAP_V8_FLAGS) setFlagsFromString(flag);
  const gc = getGc();
  const fullGc = async () => {
    gc();
    await tick(); // finalizers and WeakRef bookkeeping run between GCs
    gc();
    await tick();
  };
  const started = performance.now();
  const journalDir = o.journal ? await mkdtemp(join(tmpdir(), 'vetline-soak-')) : null;
  const log = countingLog();
  // VETLINE_DEV=1: the inspector's live feed is built and fed, as on a developer's engine (its caches count too).
  const config = loadEnv({
    NODE_ENV: 'test', VETLINE_DEV: '1', PUBLIC_BASE_URL: TEST_BASE_URL, TWILIO_AUTH_TOKEN: TEST_TOKEN, TWILIO_ACCOUNT_SID: TEST_ACCOUNT,
    TENANTS_DIR: FIXTURE_TENANTS_DIR, LOG_LEVEL: 'warn', MAX_CALLS: String(Math.max(500, o.concurrency * 2)),
  });
  const logger = createLogger({ level: config.logLevel, destination: log.destination });
  const tenants = await loadTenants(config.tenantsDir);
  const cps = 50; // brisk fake speech: the greeting is ~0.5 s
  const prompts = new PromptCache(createFakeTts({ charsPerSecond: cps }));
  await prompts.warm(tenants.all());
  const journal = journalDir ? await createJournalFactory({ dir: journalDir, engineVersion: 'soak', logger }) : null;

  // The planted leak lives in the engine: the session tap is called for every state change.
  // A flat string of plantLeakBytes on the heap ('x'.repeat() would build a tree of shared pieces).
  const planted: string[] = [];
  const plant = () => planted.push(Buffer.alloc(o.plantLeakBytes, 0x78).toString('latin1'));
  const tap: SessionTap | undefined = o.plantLeakBytes > 0 ? { transition: (_callSid, state) => void (state === 'greeting' && plant()) } : undefined;
  const engine = await buildServer({
    config, tenants, providers: { vad: energyVad, ...freshFakes(cps) }, prompts, rest: acceptingRest, logger, version: 'soak',
    ...(journal ? { journal } : {}), ...(tap ? { tap } : {}),
  });
  const url = await engine.app.listen({ port: 0, host: '127.0.0.1' });

  const finalized = { sessions: 0, callers: 0 };
  const sessionsGone = new FinalizationRegistry<'session' | 'caller'>((kind) => void (kind === 'session' ? finalized.sessions++ : finalized.callers++));
  const created = { sessions: 0, callers: 0 };
  const audio = callerAudio(o.frames);
  const failures: string[] = [];
  let failed = 0;

  // Callers take turns from a pool of numbers: /twilio/voice admits 2 calls at once and 10 an hour
  // per number (the fixture clinics keep the defaults), and the window behind the hourly limit holds
  // each number for an hour (~750 B each), so one number per call would measure as a leak.
  const callers = Math.max(o.concurrency, Math.ceil(o.calls / 5));
  let dialled = 0;
  const oneCall = async (): Promise<void> => {
    const from = `+1555${String(dialled++ % callers).padStart(7, '0')}`;
    const call = await FakeTwilio.call({ serverUrl: url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from });
    created.callers++;
    sessionsGone.register(call, 'caller');
    try {
      const session = engine.registry.session(call.callSid);
      if (!session) throw new Error('no session for the call');
      created.sessions++;
      sessionsGone.register(session, 'session');
      if (!(await call.say(audio))) throw new Error(`the stream closed early (${call.closed?.reason ?? '?'})`);
      await call.hangUp();
    } finally {
      await call.dispose();
    }
  };
  const connections = () => new Promise<number>((resolve) => engine.app.server.getConnections((_err, n) => resolve(n)));
  /** No call live and every journal closed (a journal holds its lines until its file is closed). */
  const untilIdle = async (timeoutMs: number) => {
    const until = performance.now() + timeoutMs;
    while ((engine.registry.activeCount > 0 || (journal?.stats.open ?? 0) > 0) && performance.now() < until) await sleep(10);
  };

  await fullGc();
  const baseline = resources();
  const samples: Sample[] = [];
  const live: SoakResult['liveHeap'] = { from: null, to: null, perCall: null };
  const sample = async (calls: number) => {
    await untilIdle(5_000);
    await fullGc();
    const m = process.memoryUsage();
    samples.push({ calls, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, rss: m.rss });
    if (calls >= o.warmup && (live.from === null || calls === o.calls)) {
      const point = { calls, bytes: await liveHeapBytes() };
      if (live.from === null) live.from = point;
      else live.to = point;
    }
    progress(`${calls} calls: heap ${(m.heapUsed / 1048576).toFixed(1)} MB, arrayBuffers ${(m.arrayBuffers / 1048576).toFixed(2)} MB, rss ${(m.rss / 1048576).toFixed(0)} MB`);
  };

  let done = 0;
  try {
    await sample(0);
    while (done < o.calls) {
      const batch = Math.min(o.concurrency, o.calls - done);
      const results = await Promise.allSettled(Array.from({ length: batch }, () => oneCall()));
      for (const r of results) {
        if (r.status === 'fulfilled') continue;
        failed++;
        if (failures.length < 5) failures.push(r.reason instanceof Error ? r.reason.message : String(r.reason));
      }
      const before = done;
      done += batch;
      if (Math.floor(done / o.sampleEvery) > Math.floor(before / o.sampleEvery) || done === o.calls) await sample(done);
    }
  } finally {
    await untilIdle(5_000);
  }

  // Leak accounting, every call over. Keep-alive sockets of the webhook client close within ~4 s.
  // The webhook client's keep-alive connections (one per concurrent caller, reused batch after
  // batch) are the generator's pool, not the engine's: close the idle ones, then count what is left.
  const idleKeepAlive = await connections();
  engine.app.server.closeIdleConnections();
  const leaks = async (): Promise<SoakResult['leaks']> => {
    await fullGc();
    const httpConnections = await connections();
    return {
      registryActive: engine.registry.activeCount,
      websocketClients: engine.app.websocketServer.clients.size,
      httpConnections,
      journalsOpen: journal?.stats.open ?? 0,
      liveSessions: created.sessions - finalized.sessions,
      liveCallers: created.callers - finalized.callers,
      resourcesOverBaseline: overBaseline(resources(), baseline),
    };
  };
  const clean = (l: SoakResult['leaks']) =>
    l.registryActive + l.websocketClients + l.httpConnections + l.journalsOpen + l.liveSessions + l.liveCallers === 0 && Object.keys(l.resourcesOverBaseline).length === 0;
  let leaked = await leaks();
  for (const until = performance.now() + 10_000; !clean(leaked) && performance.now() < until; leaked = await leaks()) await sleep(250);

  await engine.app.close();
  await journal?.flushAll();
  if (journalDir) await rm(journalDir, { recursive: true, force: true });

  const steady = samples.filter((s) => s.calls >= o.warmup);
  const fit = (key: 'heapUsed' | 'arrayBuffers' | 'rss') => slope(steady.map((s) => ({ x: s.calls, y: s[key] })));
  const slopes = { heapUsed: fit('heapUsed'), arrayBuffers: fit('arrayBuffers'), rss: fit('rss'), samplesUsed: steady.length };
  const recentOutcomes: Record<string, number> = {};
  for (const r of engine.registry.recentCalls()) recentOutcomes[r.outcome ?? 'none'] = (recentOutcomes[r.outcome ?? 'none'] ?? 0) + 1;

  if (failed > 0) failures.unshift(`${failed} calls failed`);
  if (live.from && live.to) live.perCall = Math.round(((live.to.bytes - live.from.bytes) / (live.to.calls - live.from.calls)) * 10) / 10;
  if (slopes.arrayBuffers === null || live.perCall === null) failures.push(`too few samples after warm-up (${steady.length}) to measure growth`);
  if ((live.perCall ?? 0) >= o.maxSlope) failures.push(`live heap grows ${live.perCall} B/call (bound ${o.maxSlope})`);
  if ((slopes.arrayBuffers ?? 0) >= o.maxSlope) failures.push(`arrayBuffers grow ${slopes.arrayBuffers} B/call (bound ${o.maxSlope})`);
  if (!clean(leaked)) failures.push(`resources left after the calls: ${JSON.stringify(leaked)}`);
  const { progress: _p, ...config_ } = o;
  return {
    config: config_,
    v8Flags: STEADY_HEAP_V8_FLAGS,
    wallS: Math.round((performance.now() - started) / 100) / 10,
    callsCompleted: done - failed,
    callsFailed: failed,
    recentOutcomes,
    samples,
    slopes,
    liveHeap: live,
    idleKeepAliveConnectionsClosed: idleKeepAlive,
    leaks: leaked,
    engineLog: log.counts,
    failures,
    pass: failures.length === 0,
  };
}

function parseCli(argv: string[]): Partial<SoakOptions> {
  const { values } = parseArgs({
    args: argv,
    options: {
      calls: { type: 'string' }, concurrency: { type: 'string' }, frames: { type: 'string' }, 'sample-every': { type: 'string' },
      warmup: { type: 'string' }, 'max-slope': { type: 'string' }, 'plant-leak': { type: 'string' }, 'no-journal': { type: 'boolean' },
    },
  });
  const int = (name: string, v: string | undefined, min: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
  const envLeak = process.env.SOAK_PLANT_LEAK === '1' ? 1024 : undefined;
  const entries = {
    calls: int('calls', values.calls, 1), concurrency: int('concurrency', values.concurrency, 1), frames: int('frames', values.frames, 2),
    sampleEvery: int('sample-every', values['sample-every'], 1), warmup: int('warmup', values.warmup, 0),
    maxSlope: int('max-slope', values['max-slope'], 1), plantLeakBytes: int('plant-leak', values['plant-leak'], 0) ?? envLeak,
    journal: values['no-journal'] ? false : undefined,
  };
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined));
}

async function main(): Promise<void> {
  let options: Partial<SoakOptions>;
  try {
    options = parseCli(process.argv.slice(2).filter((a) => a !== '--'));
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  const result = await runSoak({ ...options, progress: (line) => process.stderr.write(`[soak] ${line}\n`) });
  process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
  process.exit(result.pass ? 0 : 1);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
