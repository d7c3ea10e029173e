/**
 * `npm run bench -- --calls N --duration S [--providers fake|local|cloud] [--workers N] [--redis] [--stt openai|elevenlabs] [--tts-transport http|websocket] [--ramp] [--seed K] [--cpu-prof]`
 * (docs/design/reliability.md §4 recipe 4, §5; docs/design/conversation.md §1.4 and §6).
 *
 * Starts the engine in its own process (`node --import tsx src/main.ts`, loopback, a free port) and,
 * from this process, N simulated callers over the real Twilio protocol (test/support/fake-twilio.ts,
 * playback speed 1). Each caller hears the greeting, then loops until its time is up: says a line
 * (synthesized once with the local voice, leading and trailing silence cut), waits for the reply,
 * sometimes talks over it after ~500 ms, sometimes presses a key; then hangs up. Calls are ramped in
 * over a few seconds. One JSON object goes to stdout; progress to stderr.
 *
 * Measured at the caller (this process's clock, the FakeTwilio's arrival times):
 * - turn latency: send time of the caller's last speech frame → first reply `media` received;
 * - key latency: DTMF sent → first `media` received (fake providers: the only kind of turn, see below);
 * - barge-in reaction: send time of the first speech frame over playing audio → `clear` received;
 * - outbound jitter: per reply (generation and epoch from the mark after each message), how much
 *   later than the previous message's duration each `media` arrived (early = 0), also without the
 *   messages received during this process's own stalls (the pass criterion); and underruns (a
 *   message arriving after the caller's playout buffer ran dry: an audible gap; those outside this
 *   process's stalls, greetings included, must be none to pass).
 * From the engine: its 'turn latency' log lines (stdout JSON), CPU from /proc/<pid>/stat, RSS from
 * /proc/<pid>/status; and, unless --no-probe, heap, array buffers, event-loop delay and utilization
 * from a probe this same file installs when the engine preloads it (`--import ./scripts/bench.ts`,
 * reporting over the IPC channel; the engine's source is untouched). Also this process's own
 * event-loop delay and CPU, to show the load generator was not the bottleneck.
 *
 * Providers: `local` = the embedded ones (energy VAD, offline recognizer, rule-based receptionist,
 * flite). `fake` = STT/TTS/agent fakes with the energy VAD: the fake VAD never fires unless a test
 * scripts it, so nothing could be heard. The fake STT's script is empty in a started engine, so every
 * utterance finalizes as '' and no speech turn happens (the machine goes back to waiting); with fake
 * providers the turns are therefore key turns ('1' → "caller pressed 1: appointment" → the fake
 * agent's "Okay." → a fake tone), and barge-ins happen over the key menu ('*'). Speech is still sent,
 * so VAD, recognizer plumbing and endpointing run. `cloud` = the engine's real OpenAI (Realtime STT,
 * chat) and ElevenLabs adapters against the fake vendor servers, started in this process with
 * realistic latencies (scripts/bench-cloud.ts); callers behave as with `local`, and the JSON gains
 * `cloud` (the engine's own time per speech turn, vendor spans, windows) and `usage` (per call, from
 * the journals' outcome lines).
 *
 * `--workers N` runs the engine with WORKERS=N (src/cluster: a primary and N worker processes behind
 * the one port); CPU and RSS are then the sum over the primary and every worker, and the in-engine
 * probe (heap, event loop) is off (its IPC channel is the cluster's in a worker).
 *
 * `--redis` starts a local redis-server for each run (Debian's /usr/bin/redis-server or REDIS_SERVER,
 * loopback, persistence off: test/support/redis.ts) and gives the engine REDIS_URL, so stream-token
 * claims, the call directory's heartbeats and relays go through Redis as with several instances
 * (every worker is one). Its CPU is not in the engine's figures; `redis.cpuSeconds` reports it.
 *
 * Loopback only, bounded in wall time (duration + 240 s; ramp: --ramp-budget + duration + 180 s),
 * stops by itself and kills the engine on exit, Ctrl-C included (a second Ctrl-C: at once). TWILIO_ACCOUNT_SID is deliberately not given to the
 * engine: with it the engine would call api.twilio.com (recordings on the test clinic).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { arch, cpus, loadavg, platform, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FakeTwilio } from '../test/support/fake-twilio.js';
import type * as BenchCloud from './bench-cloud.js';
import { freePort } from './free-port.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

// =============================================================================================
// Engine-side probe: runs inside the engine when it preloads this file with VETLINE_BENCH_PROBE=1.

type ProbeMessage = {
  probe: 1;
  atMs: number;
  /** Since the last reset. */
  lagMs: { p50: number; p99: number; max: number; mean: number };
  elu: number;
  heapUsed: number;
  heapUsedPeak: number;
  arrayBuffers: number;
  arrayBuffersPeak: number;
  rss: number;
};

function installProbe(): void {
  const send = process.send?.bind(process);
  if (!send) return;
  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  let elu = performance.eventLoopUtilization();
  let heapPeak = 0;
  let abPeak = 0;
  const sample = () => {
    const m = process.memoryUsage();
    heapPeak = Math.max(heapPeak, m.heapUsed);
    abPeak = Math.max(abPeak, m.arrayBuffers);
    return m;
  };
  const report = () => {
    const m = sample();
    // The histogram records whole timer periods: subtract the 10 ms resolution to get the delay.
    const ms = (ns: number) => Math.max(0, Math.round(ns / 1e4 - 1000) / 100);
    const msg: ProbeMessage = {
      probe: 1,
      atMs: Date.now(),
      lagMs: { p50: ms(lag.percentile(50)), p99: ms(lag.percentile(99)), max: ms(lag.max), mean: ms(lag.mean) },
      elu: Math.round(performance.eventLoopUtilization(elu).utilization * 1000) / 1000,
      heapUsed: m.heapUsed,
      heapUsedPeak: heapPeak,
      arrayBuffers: m.arrayBuffers,
      arrayBuffersPeak: abPeak,
      rss: m.rss,
    };
    if (process.connected) send(msg);
  };
  setInterval(sample, 250).unref();
  setInterval(report, 1000).unref();
  process.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || !('probe' in m)) return;
    if ((m as { probe: string }).probe === 'reset') {
      lag.reset();
      elu = performance.eventLoopUtilization();
      heapPeak = abPeak = 0;
    }
    report();
  });
  process.channel?.unref(); // the IPC channel must not keep the engine alive
}

// =============================================================================================
// Small helpers.

type Dist = { count: number; p50: number | null; p95: number | null; p99: number | null; max: number | null; mean: number | null };

/** Nearest-rank percentiles, ms rounded to 0.1. */
export function dist(values: readonly number[]): Dist {
  const v = [...values].sort((a, b) => a - b);
  const r = (x: number | undefined) => (x === undefined ? null : Math.round(x * 10) / 10);
  const q = (p: number) => r(v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)]);
  const mean = v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
  return { count: v.length, p50: q(50), p95: q(95), p99: q(99), max: r(v.at(-1)), mean: r(mean) };
}

/** mulberry32: a small seeded generator, so a run can be repeated. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
/** monitorEventLoopDelay (resolution 10) records whole timer periods: the delay is the excess. */
const lagMs = (ns: number) => Math.max(0, Math.round(ns / 1e4 - 1000) / 100);
const mb = (bytes: number | null) => (bytes === null ? null : Math.round((bytes / 1048576) * 10) / 10);

// =============================================================================================
// The engine child.

type ProviderSet = 'fake' | 'local' | 'cloud';

interface EngineOptions {
  providers: ProviderSet;
  probe: boolean;
  cpuProfDir: string | null;
  maxCalls: number;
  /** WORKERS: engine processes behind the port (1: the engine in one process). */
  workers: number;
  /** cloud: keys, base URLs of the fake vendor servers, provider names, TTS transport. */
  env: Record<string, string>;
}

/**
 * A call's `usage` from its journal outcome line (src/calls/session.ts journalSummary), with its
 * thrown-away prepared replies (`discarded`) and how many of its answered turns were prepared.
 */
interface CallUsage {
  agentInputTokens: number;
  agentOutputTokens: number;
  ttsCharacters: number;
  sttSpeechMs: number;
  discarded?: { replies: number; agentInputTokens: number; agentOutputTokens: number; ttsCharacters: number };
  turns?: number;
  preparedTurns?: number;
}

interface EngineTurn {
  callSid: string;
  atWallMs: number;
  endOfSpeechToAudioMs: number | null;
  endpointMs: number | null;
  sttMs: number | null;
  agentFirstTextMs: number | null;
  ttsFirstAudioMs: number | null;
  firstAudioMs: number | null;
  /** The end-of-turn window the engine chose (`endOfTurn.windowMs`), and whether the reply was prepared. */
  windowMs: number | null;
  prepared: boolean | null;
}

interface ProcSample { atMs: number; ticks: number; rss: number }

class EngineChild {
  readonly port: number;
  readonly token = randomBytes(16).toString('hex');
  readonly turns: EngineTurn[] = [];
  readonly bargeInMs: number[] = [];
  readonly outcomes = new Map<string, number>();
  readonly errors: string[] = [];
  readonly warningsByMsg = new Map<string, number>();
  readonly stderrTail: string[] = [];
  readonly probes: ProbeMessage[] = [];
  readonly proc: ProcSample[] = [];
  interrupted = 0;
  droppedFrames = 0;
  callsEnded = 0;
  warnings = 0;
  readyInfo: Record<string, unknown> | null = null;
  /** Worker processes' pids (WORKERS > 1), from their 'vetline ready' lines. */
  private readonly workerPids = new Set<number>();
  exited: { code: number | null; signal: string | null } | null = null;
  private child: ChildProcess | null = null;
  private readonly journalDir = mkdtempSync(join(tmpdir(), 'vetline-bench-journal-'));
  private procTimer: NodeJS.Timeout | null = null;
  private readonly clkTck = 100; // getconf CLK_TCK on Linux x86-64/arm64

  /** One per journal with an outcome line, read when the engine has stopped. */
  readonly usages: CallUsage[] = [];

  private constructor(port: number, private readonly opts: EngineOptions) {
    this.port = port;
  }

  static async start(opts: EngineOptions): Promise<EngineChild> {
    const e = new EngineChild(await freePort(), opts);
    try {
      await e.spawn();
    } catch (err) {
      e.kill(); // and its temporary journal folder
      throw err;
    }
    return e;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private async spawn(): Promise<void> {
    const p = this.opts.providers;
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? tmpdir(),
      NODE_ENV: 'production',
      PORT: String(this.port),
      HOST: '127.0.0.1',
      PUBLIC_BASE_URL: 'https://bench.test',
      TWILIO_AUTH_TOKEN: this.token,
      STREAM_TOKEN_SECRET: randomBytes(32).toString('hex'),
      TENANTS_DIR: 'test/fixtures/tenants',
      JOURNAL_DIR: this.journalDir,
      ...(p === 'cloud' ? {} : { STT_PROVIDER: p, TTS_PROVIDER: p, AGENT_PROVIDER: p }),
      VAD_PROVIDER: 'energy', // the fake VAD never fires without a script
      LOG_LEVEL: 'info',
      MAX_CALLS: String(this.opts.maxCalls),
      WORKERS: String(this.opts.workers),
      DRAIN_TIMEOUT_MS: '3000',
      ...(this.opts.probe ? { VETLINE_BENCH_PROBE: '1' } : {}),
      ...this.opts.env,
    };
    // Node 20 refuses --cpu-prof in NODE_OPTIONS ("not allowed"): it goes on the command line.
    const prof = this.opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${this.opts.cpuProfDir}`] : [];
    const args = [...prof, '--import', 'tsx', ...(this.opts.probe ? ['--import', pathToFileURL(SELF).href] : []), 'src/main.ts'];
    const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe', ...(this.opts.probe ? ['ipc' as const] : [])] });
    this.child = child;
    child.on('exit', (code, signal) => {
      this.exited = { code, signal };
    });
    child.on('message', (m: unknown) => {
      if (typeof m === 'object' && m !== null && (m as { probe?: unknown }).probe === 1) this.probes.push(m as ProbeMessage);
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 40) this.stderrTail.shift();
    });
    const ready = new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`engine not ready within 120 s\n${this.stderrTail.join('\n')}`)), 120_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        rej(new Error(`engine exited during start-up (code ${code})\n${this.stderrTail.join('\n')}`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (this.onLine(line) === 'ready') {
          clearTimeout(timer);
          res();
        }
      });
    });
    await ready;
    this.sampleProc();
    this.procTimer = setInterval(() => this.sampleProc(), 1000);
    this.procTimer.unref();
  }

  private onLine(line: string): 'ready' | null {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return null;
    }
    const msg = o.msg;
    const level = typeof o.level === 'number' ? o.level : 30;
    if (level >= 50) this.errors.push(typeof msg === 'string' ? msg : line.slice(0, 200));
    else if (level >= 40) {
      this.warnings++;
      const key = `${typeof msg === 'string' ? msg : '?'}${typeof o.reason === 'string' ? ` (${o.reason})` : ''}`;
      this.warningsByMsg.set(key, (this.warningsByMsg.get(key) ?? 0) + 1);
    }
    const num = (v: unknown) => (typeof v === 'number' ? v : null);
    if (msg === 'vetline ready') {
      this.readyInfo = o;
      if (typeof o.pid === 'number' && this.opts.workers > 1) this.workerPids.add(o.pid);
      return this.opts.workers <= 1 || this.workerPids.size >= this.opts.workers ? 'ready' : null;
    }
    if (msg === 'turn latency' && typeof o.turn === 'object' && o.turn !== null) {
      const t = o.turn as Record<string, unknown>;
      this.turns.push({
        callSid: typeof o.callSid === 'string' ? o.callSid : '',
        atWallMs: num(o.time) ?? Date.now(),
        endOfSpeechToAudioMs: num(t.endOfSpeechToAudioMs),
        endpointMs: num(t.endpointMs),
        sttMs: num(t.sttMs),
        agentFirstTextMs: num(t.agentFirstTextMs),
        ttsFirstAudioMs: num(t.ttsFirstAudioMs),
        firstAudioMs: num(t.firstAudioMs),
        windowMs: num((t.endOfTurn as Record<string, unknown> | undefined)?.windowMs),
        prepared: typeof t.prepared === 'boolean' ? t.prepared : null,
      });
    }
    // Not logged by the engine today (record.bargeIns stays in memory); read if a line ever carries it.
    const clear = num(o.clearLatencyMs) ?? num((o.bargeIn as Record<string, unknown> | undefined)?.clearLatencyMs);
    if (clear !== null) this.bargeInMs.push(clear);
    if (msg === 'caller interrupted') this.interrupted++;
    if (msg === 'outbound frame dropped') this.droppedFrames++;
    if (msg === 'call ended') {
      this.callsEnded++;
      const outcome = typeof o.outcome === 'string' ? o.outcome : 'unknown';
      this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    }
    return null;
  }

  /** CPU ticks and RSS of the engine: its process, plus every worker with WORKERS > 1. */
  sampleProc(): ProcSample | null {
    const pid = this.pid;
    if (pid === null || this.exited) return null;
    try {
      let ticks = 0;
      let rss = 0;
      for (const p of [pid, ...this.workerPids]) {
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
        ticks += Number(fields[11]) + Number(fields[12]); // utime (#14) + stime (#15)
        const status = readFileSync(`/proc/${p}/status`, 'utf8');
        rss += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
      }
      const s = { atMs: performance.now(), ticks, rss };
      this.proc.push(s);
      return s;
    } catch {
      return null;
    }
  }

  /** CPU % of one core between two samples. */
  cpuPercent(a: ProcSample, b: ProcSample): number {
    return Math.round(((b.ticks - a.ticks) / this.clkTck / ((b.atMs - a.atMs) / 1000)) * 1000) / 10;
  }

  /** Asks the probe to restart its window; resolves with the report that follows (null without a probe). */
  async probe(reset: boolean): Promise<ProbeMessage | null> {
    const child = this.child;
    if (!this.opts.probe || !child?.connected) return null;
    const before = this.probes.length;
    child.send({ probe: reset ? 'reset' : 'report' });
    for (let i = 0; i < 50 && this.probes.length === before; i++) await sleep(20);
    return this.probes.length > before ? (this.probes.at(-1) ?? null) : null;
  }

  async waitCallsEnded(n: number, timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (this.callsEnded < n && performance.now() < end && !this.exited) await sleep(50);
  }

  /** SIGTERM (the engine drains, exits 0 and writes its CPU profile), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (this.procTimer) clearInterval(this.procTimer);
    const child = this.child;
    if (child && !this.exited) {
      child.kill('SIGTERM');
      const end = performance.now() + 10_000;
      while (!this.exited && performance.now() < end) await sleep(50);
      if (!this.exited) child.kill('SIGKILL');
    }
    this.killWorkers();
    this.readUsage();
    rmSync(this.journalDir, { recursive: true, force: true });
  }

  /** Each journal's outcome line (its last) carries the call's usage. */
  private readUsage(): void {
    for (const file of readdirSync(this.journalDir).filter((f) => f.endsWith('.jsonl'))) {
      const last = readFileSync(join(this.journalDir, file), 'utf8').trimEnd().split('\n').at(-1) ?? '';
      try {
        const o = JSON.parse(last) as { type?: string; record?: { usage?: CallUsage; turns?: { prepared?: boolean }[] } };
        if (o.type === 'outcome' && o.record?.usage) {
          const turns = o.record.turns ?? [];
          this.usages.push({ ...o.record.usage, turns: turns.length, preparedTurns: turns.filter((t) => t.prepared === true).length });
        }
      } catch {
        // a journal cut short (engine killed): no outcome line
      }
    }
  }

  /** Workers outlive a primary killed with SIGKILL only until they notice (their IPC channel closes): no waiting for that. */
  private killWorkers(): void {
    for (const pid of this.workerPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** Synchronous last resort (process 'exit'). */
  kill(): void {
    if (this.child && !this.exited) this.child.kill('SIGKILL');
    this.killWorkers();
    rmSync(this.journalDir, { recursive: true, force: true });
  }
}

// =============================================================================================
// The load generator's own stalls: a 5 ms ticker; a gap over 15 ms between ticks is a stall, and a
// message received in one may have waited in this process, not in the engine.

class StallTracker {
  readonly stalls: Array<[number, number]> = [];
  private last = performance.now();
  private timer: NodeJS.Timeout | null = null;

  start(): void {
    this.last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      if (now - this.last > 15) this.stalls.push([this.last, now]);
      this.last = now;
    }, 5);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Was performance-time `t` inside (or within 2 ms after) a stall? */
  covers(t: number): boolean {
    let lo = 0;
    let hi = this.stalls.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [a, b] = this.stalls[mid]!;
      if (t < a) hi = mid - 1;
      else if (t > b + 2) lo = mid + 1;
      else return true;
    }
    return false;
  }
}

// =============================================================================================
// One simulated caller.

interface Line {
  text: string;
  ulaw: Uint8Array;
  /** cloud: frames from the line's last one to those on which the engine's VAD reports the pause and closes the segment (bench-cloud.ts). */
  vadFrames: { pause: number; close: number } | null;
}
interface TurnSample {
  callSid: string;
  kind: 'speech' | 'barge';
  latencyMs: number;
  firstAudioWallMs: number;
  engine: EngineTurn | null;
  /** For cloud turn breakdowns: the caller, and the end of its speech, the VAD's decision frame and the first reply media on this process's performance clock. */
  callIndex: number;
  endPerfMs: number;
  pausePerfMs: number | null;
  decisionPerfMs: number | null;
  firstPerfMs: number;
}
interface KeySample { key: string; latencyMs: number }
interface BargeSample { over: 'reply' | 'prompt'; line: string; reactionMs: number }
interface CallResult {
  callSid: string;
  ok: boolean;
  failure: string | null;
  endedByEngine: string | null;
  turns: TurnSample[];
  unanswered: number;
  keys: KeySample[];
  keysUnanswered: number;
  bargeIns: BargeSample[];
  bargeMissed: number;
  bargeSkipped: number;
  jitterMs: number[];
  /** Jitter samples of messages not received during one of this process's stalls. */
  jitterCleanMs: number[];
  underruns: number;
  greetingUnderruns: number;
  /** Underruns, the greeting's included, of messages not received during one of this process's stalls. */
  underrunsClean: number;
  maxUnderrunMs: number;
  mediaMessages: number;
}

interface SimOptions {
  engine: EngineChild;
  providers: ProviderSet;
  lines: Line[];
  durationMs: number;
  seed: number;
  accountSid: string;
  FakeTwilioClass: typeof FakeTwilio;
  aborted: () => boolean;
  stalls: StallTracker;
  /** cloud: the 20 ms frame said before each line that names the caller to the transcription fake. */
  tagFor: ((index: number) => Uint8Array) | null;
}

const QUIET_MS = 700;

class SimCall {
  private call: FakeTwilio | null = null;
  private readonly random: () => number;
  private scanned = 0;
  private playoutEnd = 0;
  private lastAudioAt = -Infinity;
  private readonly mediaAt: number[] = [];
  private t0 = 0;
  private wallOffset = 0;
  /** performance.now() of this call's t = 0. */
  private perfOffset = 0;
  readonly result: CallResult;

  private readonly tag: Uint8Array | null;

  constructor(private readonly o: SimOptions, private readonly index: number) {
    this.random = rng(o.seed * 7919 + index);
    this.tag = o.tagFor?.(index) ?? null;
    this.result = {
      callSid: '', ok: false, failure: null, endedByEngine: null, turns: [], unanswered: 0, keys: [], keysUnanswered: 0,
      bargeIns: [], bargeMissed: 0, bargeSkipped: 0, jitterMs: [], jitterCleanMs: [], underruns: 0, greetingUnderruns: 0, underrunsClean: 0, maxUnderrunMs: 0, mediaMessages: 0,
    };
  }

  private get c(): FakeTwilio {
    if (!this.call) throw new Error('not dialled');
    return this.call;
  }

  private now(): number {
    return this.c.now();
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.random() * xs.length)] ?? (xs[0] as T);
  }

  private open(): boolean {
    return this.call !== null && this.call.closed === null;
  }

  /** Reads newly received outbound messages: playout position and media arrival times. */
  private scan(): void {
    const out = this.c.outbound;
    for (; this.scanned < out.length; this.scanned++) {
      const r = out[this.scanned]!;
      const m = r.message;
      if (m?.event === 'media') {
        const p = m.media.payload;
        const ms = ((p.length / 4) * 3 - (p.endsWith('==') ? 2 : p.endsWith('=') ? 1 : 0)) / 8;
        this.playoutEnd = Math.max(r.atMs, this.playoutEnd) + ms;
        this.lastAudioAt = r.atMs;
        this.mediaAt.push(r.atMs);
      } else if (m?.event === 'clear') {
        this.playoutEnd = Math.min(this.playoutEnd, r.atMs);
      }
    }
  }

  private firstMediaAfter(t: number): number | null {
    for (let i = this.mediaAt.length - 1; i >= 0; i--) {
      const at = this.mediaAt[i]!;
      if (at <= t) return this.mediaAt[i + 1] ?? null;
      if (i === 0) return at;
    }
    return null;
  }

  private async until(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const end = this.now() + timeoutMs;
    for (;;) {
      this.scan();
      if (pred()) return true;
      if (this.now() >= end || !this.open() || this.o.aborted()) return false;
      await sleep(15);
    }
  }

  /** The engine has been silent (nothing playing, nothing arriving) for `ms`. */
  private quietFor(ms: number): boolean {
    const now = this.now();
    return now - Math.max(this.playoutEnd, this.lastAudioAt) >= ms;
  }

  /** Send time of the next inbound frame (frames go out at t0 + 20·(n+1)). */
  private nextFrameSlot(t: number): number {
    return this.t0 + 20 * Math.ceil((t - this.t0 + 0.5) / 20);
  }

  async run(startDelayMs: number): Promise<CallResult> {
    const o = this.o;
    await sleep(startDelayMs);
    if (o.aborted()) {
      this.result.failure = 'aborted before dialling';
      return this.result;
    }
    const deadline = performance.now() + o.durationMs;
    try {
      this.call = await o.FakeTwilioClass.call({
        serverUrl: o.engine.url,
        publicBaseUrl: 'https://bench.test',
        authToken: o.engine.token,
        accountSid: o.accountSid,
        to: '+15550109000',
        from: `+1555${String(Math.floor(this.random() * 1e7)).padStart(7, '0')}`,
        playbackSpeed: 1,
      });
    } catch (err) {
      this.result.failure = `dial: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`;
      return this.result;
    }
    this.t0 = this.now();
    this.perfOffset = performance.now() - this.now();
    this.wallOffset = performance.timeOrigin + this.perfOffset;
    this.result.callSid = this.c.callSid;
    try {
      await this.converse(deadline);
    } catch (err) {
      this.result.failure = `caller: ${err instanceof Error ? err.message : String(err)}`;
    }
    return this.finish();
  }

  private async converse(deadline: number): Promise<void> {
    const c = this.c;
    if (!(await this.until(() => this.mediaAt.length > 0, 10_000))) {
      this.result.failure = this.open() ? 'no greeting within 10 s' : 'stream closed before the greeting';
      return;
    }
    await this.until(() => this.quietFor(QUIET_MS), 20_000);
    const local = this.o.providers === 'local';
    const speech = this.o.providers !== 'fake'; // local and cloud: speech turns, as in local runs
    const lines = this.o.lines;
    while (this.open() && !this.o.aborted() && performance.now() < deadline - 2_500) {
      const r = this.random();
      if (r < (speech ? 0.15 : 0.55)) {
        // A key: local, cloud → '*' (the menu clip; '1' would start the booking flow's long windows);
        // fake → '1' (an agent turn) or '*'.
        const key = speech || this.random() < 0.45 ? '*' : '1';
        const t = this.now();
        c.dtmf(key);
        if (await this.until(() => this.firstMediaAfter(t) !== null, 6_000)) {
          const first = this.firstMediaAfter(t)!;
          this.result.keys.push({ key, latencyMs: first - t });
          if (key === '*' && this.random() < 0.6) await this.bargeIn(first, 'prompt');
        } else this.result.keysUnanswered++;
      } else {
        const line = this.pick(lines.slice(0, 2));
        const spoken = await this.say(line);
        if (!spoken) break;
        const end = this.now();
        if (speech) {
          const first = await this.reply(end, 'speech', line);
          if (first !== null && this.random() < 0.35) await this.bargeIn(first, 'reply');
        } else await sleep(300 + this.random() * 500);
      }
      await this.until(() => this.quietFor(QUIET_MS), 20_000);
      await sleep(200 + this.random() * 600);
    }
    // The booking line last (its reply asks for details with a long end-of-turn window, which
    // would change every later turn's latency), if there is time to hear the start of its reply.
    if (local && this.open() && !this.o.aborted() && performance.now() < deadline - 2_000) {
      const booking = lines[2];
      if (booking && (await c.say(booking.ulaw))) await this.reply(this.now(), 'speech');
    }
    while (this.open() && !this.o.aborted() && performance.now() < deadline) await sleep(Math.min(100, deadline - performance.now()));
  }

  /** Says a line; cloud: after the caller's tag frame. */
  private say(line: Line): Promise<boolean> {
    return this.c.say(this.tag ? new Uint8Array(Buffer.concat([this.tag, line.ulaw])) : line.ulaw);
  }

  /** First reply audio after the caller stopped at `end`: a turn sample. */
  private async reply(end: number, kind: TurnSample['kind'], line: Line | null = null): Promise<number | null> {
    if (!(await this.until(() => this.firstMediaAfter(end) !== null, 6_000))) {
      if (this.open()) this.result.unanswered++;
      return null;
    }
    const first = this.firstMediaAfter(end)!;
    const frames = line?.vadFrames ?? null;
    const at = (n: number | undefined) => (n === undefined ? null : this.perfOffset + end + 20 * n);
    this.result.turns.push({
      callSid: this.c.callSid, kind, latencyMs: first - end, firstAudioWallMs: this.wallOffset + first, engine: null,
      callIndex: this.index, endPerfMs: this.perfOffset + end, pausePerfMs: at(frames?.pause), decisionPerfMs: at(frames?.close), firstPerfMs: this.perfOffset + first,
    });
    return first;
  }

  /** ~500 ms into audio that started at `audioStart`, talk over it; measure onset → clear. */
  private async bargeIn(audioStart: number, over: BargeSample['over']): Promise<void> {
    const c = this.c;
    const at = audioStart + 450 + this.random() * 100;
    await this.until(() => this.now() >= at, 2_000);
    this.scan();
    // The engine paces audio ~200 ms ahead, so the caller cannot know how much is left: talk over
    // it if it is still playing.
    if (this.playoutEnd <= this.now() + 20) {
      this.result.bargeSkipped++;
      return;
    }
    const line = this.pick(this.o.lines.slice(0, 2));
    const onset = this.nextFrameSlot(this.now());
    const clearsBefore = c.clears.length;
    const spoken = this.say(line);
    const cleared = await this.until(() => c.clears.length > clearsBefore, 2_500);
    if (cleared) this.result.bargeIns.push({ over, line: line.text, reactionMs: c.clears[clearsBefore]! - onset });
    // A miss only if the engine kept sending audio well after the onset (its guard is ≤ 300 ms).
    else if (this.open() && this.lastAudioAt > onset + 600) this.result.bargeMissed++;
    else this.result.bargeSkipped++;
    // Without a clear the engine may still be talking: "first audio after the line" would be its old audio.
    if (!(await spoken) || !cleared) return;
    if (this.o.providers !== 'fake') await this.reply(this.now(), 'barge');
  }

  private async finish(): Promise<CallResult> {
    const c = this.call;
    if (!c) return this.result;
    const res = this.result;
    if (c.closed && !res.failure) {
      const { code, reason } = c.closed;
      if (code === 1000) res.endedByEngine = reason || 'closed';
      else res.failure = `engine closed the stream: ${code} ${reason}`;
    }
    await c.hangUp().catch(() => undefined);
    if (c.protocolErrors.length > 0 && !res.failure) res.failure = `protocol errors: ${c.protocolErrors.slice(0, 3).map((e) => e.reason).join('; ')}`;
    if (c.socketErrors.length > 0 && !res.failure) res.failure = `socket errors: ${c.socketErrors.slice(0, 3).join('; ')}`;
    this.jitter(c);
    await c.dispose();
    this.call = null;
    res.ok = res.failure === null;
    return res;
  }

  /**
   * Per reply (generation:epoch from the mark that follows each media message): how late each
   * message arrived relative to the previous one's duration (early = 0), and underruns.
   */
  private jitter(c: FakeTwilio): void {
    let group = '';
    let prevAt = 0;
    let prevMs = 0;
    let playout = 0;
    let pending: { atMs: number; ms: number } | null = null;
    let firstGroup: string | null = null;
    const res = this.result;
    for (const r of c.outbound) {
      const m = r.message;
      if (m?.event === 'media') {
        const p = m.media.payload;
        pending = { atMs: r.atMs, ms: ((p.length / 4) * 3 - (p.endsWith('==') ? 2 : p.endsWith('=') ? 1 : 0)) / 8 };
        res.mediaMessages++;
      } else if (m?.event === 'mark' && pending) {
        const parts = m.mark.name.split(':');
        const g = `${parts[0]}:${parts[1]}`;
        firstGroup ??= g;
        if (g === group) {
          const late = Math.max(0, pending.atMs - prevAt - prevMs);
          const clean = !this.o.stalls.covers(pending.atMs + this.perfOffset);
          res.jitterMs.push(late);
          if (clean) res.jitterCleanMs.push(late);
          if (pending.atMs > playout + 1) {
            if (firstGroup === g) res.greetingUnderruns++;
            else res.underruns++;
            if (clean) res.underrunsClean++;
            res.maxUnderrunMs = Math.max(res.maxUnderrunMs, pending.atMs - playout);
          }
        } else playout = pending.atMs;
        group = g;
        prevAt = pending.atMs;
        prevMs = pending.ms;
        playout = Math.max(playout, pending.atMs) + pending.ms;
        pending = null;
      } else if (m?.event === 'clear') {
        group = '';
      }
    }
  }
}

// =============================================================================================
// One run: N calls against a fresh engine.

interface RunOptions {
  calls: number;
  durationS: number;
  providers: ProviderSet;
  /** cloud: the recognizer (OpenAI Realtime or ElevenLabs Scribe Realtime). */
  stt: 'openai' | 'elevenlabs';
  ttsTransport: 'http' | 'websocket';
  seed: number;
  probe: boolean;
  cpuProf: boolean;
  workers: number;
  redis: boolean;
}

let current: EngineChild | null = null;
let abortRequested = false;

async function callerLines(): Promise<Line[]> {
  // Imported lazily: this file is also preloaded into the engine as the probe.
  const { callerSpeech } = await import('../test/support/caller-speech.js');
  const texts = ['what are your hours', 'where are you located', 'i want to book an appointment'];
  return Promise.all(texts.map(async (text) => ({ text, ulaw: await callerSpeech(text), vadFrames: null })));
}

/** A redis-server for one run (test/support/redis.ts), and the CPU it used (from /proc). */
async function startBenchRedis(): Promise<{ url: string; cpuSeconds(): number | null; stop(): Promise<void> }> {
  const { findRedisServer, startRedis } = await import('../test/support/redis.js');
  const binary = findRedisServer();
  if (!binary) throw new UsageError('--redis needs redis-server (apt-get install redis-server, or set REDIS_SERVER)');
  const server = await startRedis(binary);
  const cpuSeconds = () => {
    try {
      const stat = readFileSync(`/proc/${server.pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, CLK_TCK 100
    } catch {
      return null;
    }
  };
  log(`redis-server pid ${server.pid} on ${server.url}`);
  return { url: server.url, cpuSeconds, stop: () => server.stop() };
}

async function runOnce(o: RunOptions, baseLines: Line[]) {
  const { FakeTwilio: FakeTwilioClass } = await import('../test/support/fake-twilio.js');
  const cpuProfDir = o.cpuProf ? mkdtempSync(join(tmpdir(), 'vetline-cpuprof-')) : null;
  const t0 = performance.now();
  log(`starting engine (${o.providers} providers)…`);
  // cloud: the fake vendor servers live in this process, so their CPU is the load generator's.
  const cloudKit = o.providers === 'cloud' ? await import('./bench-cloud.js') : null;
  const cloud = cloudKit ? await cloudKit.startCloudFakes(o.ttsTransport, o.stt) : null;
  const lines = cloudKit ? baseLines.map((l) => ({ ...l, vadFrames: cloudKit.vadFrames(l.ulaw) })) : baseLines;
  const redis = o.redis ? await startBenchRedis() : null;
  let engine: EngineChild;
  try {
    engine = current = await EngineChild.start({
      providers: o.providers, probe: o.probe && o.workers <= 1, cpuProfDir, maxCalls: Math.max(500, o.calls * 2), workers: o.workers,
      env: { ...(cloud?.env ?? {}), ...(redis ? { REDIS_URL: redis.url } : {}) },
    });
  } catch (err) {
    await cloud?.close();
    await redis?.stop();
    throw err;
  }
  const startupMs = Math.round(performance.now() - t0);
  log(`engine pid ${engine.pid} ready on ${engine.url} in ${startupMs} ms`);

  // Idle baseline.
  await sleep(1_500);
  await engine.probe(true);
  const idleStart = engine.sampleProc();
  await sleep(3_000);
  const idleProbe = await engine.probe(false);
  const idleEnd = engine.sampleProc();

  const genLag = monitorEventLoopDelay({ resolution: 10 });
  genLag.enable();
  const genCpu0 = process.cpuUsage();
  const genT0 = performance.now();
  const stalls = new StallTracker();
  stalls.start();

  const rampMs = Math.min(10_000, Math.max(2_000, o.calls * 40));
  const durationMs = o.durationS * 1000;
  const accountSid = `AC${randomBytes(16).toString('hex')}`;
  const sims = Array.from({ length: o.calls }, (_, i) => new SimCall({
    engine, providers: o.providers, lines, durationMs, seed: o.seed, accountSid, FakeTwilioClass, aborted: () => abortRequested, stalls, tagFor: cloudKit?.callerTag ?? null,
  }, i));
  log(`${o.calls} calls over ${rampMs} ms, ${o.durationS} s each (seed ${o.seed})`);
  const runStart = performance.now();
  const results = sims.map((s, i) => s.run((i * rampMs) / o.calls));

  // Steady window: all calls in and past their greeting, until the first one hangs up.
  const steadyFrom = runStart + rampMs + 3_000;
  const steadyTo = runStart + durationMs - 500;
  let steadyProbe: ProbeMessage | null = null;
  let steadyA: ProcSample | null = null;
  let steadyB: ProcSample | null = null;
  let peakRss = 0;
  let maxCpu = 0;
  let lastProc: ProcSample | null = null;
  const monitor = (async () => {
    let lastLog = performance.now();
    while (!abortRequested && performance.now() < runStart + rampMs + durationMs) {
      await sleep(250);
      const t = performance.now();
      if (!steadyA && t >= steadyFrom && steadyTo - steadyFrom >= 3_000) {
        steadyA = engine.sampleProc();
        genLag.reset();
        await engine.probe(true);
      }
      if (steadyA && !steadyB && t >= steadyTo) {
        steadyB = engine.sampleProc();
        steadyProbe = await engine.probe(false);
      }
      const s = engine.proc.at(-1);
      if (s && s !== lastProc) {
        peakRss = Math.max(peakRss, s.rss);
        if (lastProc) maxCpu = Math.max(maxCpu, engine.cpuPercent(lastProc, s));
        lastProc = s;
      }
      if (t - lastLog >= 5_000) {
        lastLog = t;
        log(`t+${Math.round((t - runStart) / 1000)} s: engine turns ${engine.turns.length}, calls ended ${engine.callsEnded}, rss ${mb(s?.rss ?? 0)} MB`);
      }
      if (engine.exited) break;
    }
  })();
  const done = await Promise.all(results);
  await monitor;
  stalls.stop();
  const genCpu = process.cpuUsage(genCpu0);
  const genWallS = (performance.now() - genT0) / 1000;
  genLag.disable();
  await engine.waitCallsEnded(done.filter((r) => r.callSid).length, 5_000);
  const endProc = engine.sampleProc();
  const endProbe = await engine.probe(false);
  await engine.stop();
  current = null;
  await cloud?.close();
  const redisCpuSeconds = redis ? redis.cpuSeconds() : null;
  await redis?.stop();

  // Caller turns ↔ engine turn lines: same callSid, engine log time within 300 ms of the arrival.
  const byCall = new Map<string, EngineTurn[]>();
  for (const t of engine.turns) byCall.set(t.callSid, [...(byCall.get(t.callSid) ?? []), t]);
  const turns = done.flatMap((r) => r.turns);
  for (const t of turns) {
    const candidates = byCall.get(t.callSid) ?? [];
    let best: EngineTurn | null = null;
    for (const e of candidates) if (Math.abs(e.atWallMs - t.firstAudioWallMs) < 300 && (!best || Math.abs(e.atWallMs - t.firstAudioWallMs) < Math.abs(best.atWallMs - t.firstAudioWallMs))) best = e;
    if (best) {
      t.engine = best;
      candidates.splice(candidates.indexOf(best), 1);
    }
  }
  const matched = turns.filter((t) => t.engine);
  const cloudReport = cloud && cloudKit ? cloudSummary(cloudKit, cloud, turns, o.ttsTransport) : null;
  const usage = usageSummary(engine.usages);
  const pick = (f: (e: EngineTurn) => number | null, from: readonly EngineTurn[]) => dist(from.map(f).filter((x): x is number => x !== null));
  const keys = done.flatMap((r) => r.keys);
  const barges = done.flatMap((r) => r.bargeIns);
  const overReplyDist = dist(barges.filter((b) => b.over === 'reply').map((b) => b.reactionMs));
  const jitter = done.flatMap((r) => r.jitterMs);
  const failures = done.filter((r) => !r.ok);
  const failureReasons = new Map<string, number>();
  for (const f of failures) failureReasons.set(f.failure ?? '?', (failureReasons.get(f.failure ?? '?') ?? 0) + 1);

  const idleRss = idleEnd?.rss ?? null;
  const steady = steadyA && steadyB ? { a: steadyA as ProcSample, b: steadyB as ProcSample } : null;
  const first = engine.proc[0];
  const last = endProc ?? engine.proc.at(-1);
  const callerTurnDist = dist(turns.map((t) => t.latencyMs));
  const keyDist = dist(keys.map((k) => k.latencyMs));
  const jitterDist = dist(jitter);
  const turnP95 = o.providers === 'fake' ? keyDist.p95 : callerTurnDist.p95;
  const addedP95 = cloudReport?.engineAddedMs.p95 ?? null;
  const jitterP99 = dist(done.flatMap((r) => r.jitterCleanMs)).p99;
  const underrunsClean = done.reduce((n, r) => n + r.underrunsClean, 0);
  const sp = steadyProbe as ProbeMessage | null;

  return {
    config: {
      calls: o.calls,
      durationS: o.durationS,
      workers: o.workers,
      redis: redis ? { cpuSeconds: redisCpuSeconds } : null,
      providers: o.providers === 'local'
        ? { vad: 'energy', stt: 'local', tts: 'local', agent: 'local' }
        : o.providers === 'cloud'
          ? { vad: 'energy', stt: o.stt === 'openai' ? 'openai (realtime)' : 'elevenlabs (scribe realtime)', tts: `elevenlabs (${o.ttsTransport})`, agent: 'openai', vendors: 'fake servers in the bench process' }
          : { vad: 'energy', stt: 'fake', tts: 'fake', agent: 'fake' },
      seed: o.seed,
      rampInMs: rampMs,
      tenant: 'quick-vet (test/fixtures/tenants)',
      callerLines: lines.map((l) => ({ text: l.text, ms: l.ulaw.length / 8 })),
      engineStartupMs: startupMs,
      probe: o.probe && o.workers <= 1,
    },
    calls: {
      started: done.filter((r) => r.callSid).length,
      completed: done.filter((r) => r.ok).length,
      failed: failures.length,
      endedByEngine: done.filter((r) => r.endedByEngine).length,
      failures: Object.fromEntries(failureReasons),
      engineOutcomes: Object.fromEntries(engine.outcomes),
    },
    turns: {
      note: o.providers === 'fake' ? 'fake STT finalizes every utterance as "": no speech turns; see keyTurns' : 'end of the caller\'s last speech frame → first reply media at the caller',
      caller: callerTurnDist,
      callerSpeechOnly: dist(turns.filter((t) => t.kind === 'speech').map((t) => t.latencyMs)),
      callerAfterBargeIn: dist(turns.filter((t) => t.kind === 'barge').map((t) => t.latencyMs)),
      unanswered: done.reduce((n, r) => n + r.unanswered, 0),
      matchedToEngine: matched.length,
      engine: {
        note: o.providers === 'fake' ? 'key turns only: endOfSpeechToAudioMs would start at an earlier, unrelated speech end' : 'from the engine\'s \'turn latency\' log lines',
        lines: engine.turns.length,
        endOfSpeechToAudioMs: o.providers === 'fake' ? null : pick((e) => e.endOfSpeechToAudioMs, engine.turns),
        stages: o.providers === 'fake' ? null : {
          endpointMs: pick((e) => e.endpointMs, engine.turns),
          sttMs: pick((e) => e.sttMs, engine.turns),
          agentFirstTextMs: pick((e) => e.agentFirstTextMs, engine.turns),
          ttsFirstAudioMs: pick((e) => e.ttsFirstAudioMs, engine.turns),
          firstAudioMs: pick((e) => e.firstAudioMs, engine.turns),
        },
        callerMinusEngineMs: o.providers === 'fake' ? null : dist(matched.map((t) => t.latencyMs - (t.engine!.endOfSpeechToAudioMs ?? NaN)).filter(Number.isFinite)),
      },
    },
    keyTurns: {
      note: "DTMF sent → first media at the caller ('1': agent turn, '*': menu clip)",
      caller: keyDist,
      byKey: Object.fromEntries(['1', '*'].map((k) => [k, dist(keys.filter((x) => x.key === k).map((x) => x.latencyMs))])),
      unanswered: done.reduce((n, r) => n + r.keysUnanswered, 0),
      engineCommitToAudioMs: o.providers === 'fake' ? pick((e) => e.firstAudioMs, engine.turns) : null,
    },
    bargeIns: {
      note: 'first caller speech frame over playing audio → clear at the caller; the engine needs bargeInMinSpeechMs (150) over a reply, minSpeechMs (100) over a prompt',
      caller: dist(barges.map((b) => b.reactionMs)),
      overReply: overReplyDist,
      overPrompt: dist(barges.filter((b) => b.over === 'prompt').map((b) => b.reactionMs)),
      overReplyByLine: Object.fromEntries(lines.slice(0, 2).map((l) => [l.text, dist(barges.filter((b) => b.over === 'reply' && b.line === l.text).map((b) => b.reactionMs))])),
      missed: done.reduce((n, r) => n + r.bargeMissed, 0),
      skipped: done.reduce((n, r) => n + r.bargeSkipped, 0),
      engineInterruptedLines: engine.interrupted,
      engine: engine.bargeInMs.length ? dist(engine.bargeInMs) : null,
    },
    jitter: {
      note: 'per reply: media arrival minus (previous arrival + previous duration), early counts 0',
      messages: done.reduce((n, r) => n + r.mediaMessages, 0),
      lateMs: jitterDist,
      lateMsOutsideGeneratorStalls: dist(done.flatMap((r) => r.jitterCleanMs)),
      underruns: done.reduce((n, r) => n + r.underruns, 0),
      greetingUnderruns: done.reduce((n, r) => n + r.greetingUnderruns, 0),
      underrunsOutsideGeneratorStalls: underrunsClean,
      maxUnderrunMs: Math.round(Math.max(0, ...done.map((r) => r.maxUnderrunMs))),
    },
    engine: {
      pid: engine.pid,
      cpuPercentOfOneCore: {
        idle: idleStart && idleEnd ? engine.cpuPercent(idleStart, idleEnd) : null,
        steady: steady ? engine.cpuPercent(steady.a, steady.b) : null,
        wholeRun: first && last ? engine.cpuPercent(first, last) : null,
        max1s: Math.round(maxCpu * 10) / 10,
      },
      rssMB: {
        idle: mb(idleRss),
        peak: mb(peakRss),
        perCall: idleRss === null ? null : Math.round(((peakRss - idleRss) / o.calls / 1048576) * 100) / 100,
        afterCalls: mb(endProc?.rss ?? null),
      },
      probe: o.probe
        ? {
            idle: idleProbe ? { lagMs: idleProbe.lagMs, elu: idleProbe.elu, heapUsedMB: mb(idleProbe.heapUsed), arrayBuffersMB: mb(idleProbe.arrayBuffers) } : null,
            steady: sp ? { lagMs: sp.lagMs, elu: sp.elu, heapUsedPeakMB: mb(sp.heapUsedPeak), arrayBuffersPeakMB: mb(sp.arrayBuffersPeak) } : null,
            heapPerCallMB: idleProbe && sp ? Math.round(((sp.heapUsedPeak - idleProbe.heapUsed) / o.calls / 1048576) * 100) / 100 : null,
            afterCalls: endProbe ? { heapUsedMB: mb(endProbe.heapUsed), arrayBuffersMB: mb(endProbe.arrayBuffers) } : null,
          }
        : null,
      logErrors: engine.errors.length,
      logErrorSamples: [...new Set(engine.errors)].slice(0, 5),
      logWarnings: Object.fromEntries(engine.warningsByMsg),
      outboundFramesDropped: engine.droppedFrames,
      exit: engine.exited,
      cpuProfileDir: cpuProfDir,
    },
    loadGenerator: {
      eventLoopDelayMs: {
        p50: lagMs(genLag.percentile(50)),
        p99: lagMs(genLag.percentile(99)),
        max: lagMs(genLag.max),
      },
      cpuPercentOfOneCore: Math.round(((genCpu.user + genCpu.system) / 1e6 / genWallS) * 1000) / 10,
      stallsOver15Ms: { count: stalls.stalls.length, totalMs: Math.round(stalls.stalls.reduce((n, [a, b]) => n + b - a, 0)), max: Math.round(Math.max(0, ...stalls.stalls.map(([a, b]) => b - a))) },
    },
    criteria: criteriaOf(o.providers, {
      turnP50: callerTurnDist.p50,
      turnP95,
      jitterP99,
      underruns: underrunsClean,
      failures: failures.length,
      engineAddedP95: addedP95,
      bargeInOverReplyP95: overReplyDist.p95,
    }),
    ...(cloudReport ? { cloud: cloudReport } : {}),
    usage,
  };
}

/**
 * What `pass` means (the criteria row of the bench fields in docs/performance.md): no failed call, jitter p99 < 20 ms and no
 * underrun (greetings included; both outside the load generator's own stalls) always;
 * fake and local: turn p95 < 800 ms (fake: key turns); cloud: the turn-speed targets at realistic
 * vendor latencies, speech turns p50 ≤ 650 and p95 ≤ 800 ms at the caller, the engine's own time
 * per turn p95 ≤ 20 ms, and a barge-in over a reply cleared p95 ≤ 250 ms after its onset.
 */
function criteriaOf(providers: ProviderSet, v: {
  turnP50: number | null; turnP95: number | null; jitterP99: number | null; underruns: number; failures: number; engineAddedP95: number | null; bargeInOverReplyP95: number | null;
}) {
  const jitterP99Ms = { target: '< 20', value: v.jitterP99, of: 'media lateness outside the load generator\'s own stalls', met: (v.jitterP99 ?? 0) < 20 };
  const underruns = { target: 0, value: v.underruns, of: 'audible gaps (greetings included) outside the load generator\'s own stalls', met: v.underruns === 0 };
  const failures = { target: 0, value: v.failures, met: v.failures === 0 };
  if (providers !== 'cloud') {
    const turnP95Ms = { target: '< 800', value: v.turnP95, of: providers === 'fake' ? 'key turns at the caller' : 'speech turns at the caller', met: (v.turnP95 ?? Infinity) < 800 };
    return { turnP95Ms, jitterP99Ms, underruns, failures, pass: turnP95Ms.met && jitterP99Ms.met && underruns.met && failures.met };
  }
  const turnP50Ms = { target: '<= 650', value: v.turnP50, of: 'speech turns at the caller', met: (v.turnP50 ?? Infinity) <= 650 };
  const turnP95Ms = { target: '<= 800', value: v.turnP95, of: 'speech turns at the caller', met: (v.turnP95 ?? Infinity) <= 800 };
  const engineAddedP95Ms = { target: '<= 20', value: v.engineAddedP95, of: 'cloud.engineAddedMs', met: (v.engineAddedP95 ?? Infinity) <= 20 };
  const bargeInP95Ms = { target: '<= 250', value: v.bargeInOverReplyP95, of: 'bargeIns.overReply: speech onset → clear at the caller', met: (v.bargeInOverReplyP95 ?? Infinity) <= 250 };
  const all = [turnP50Ms, turnP95Ms, engineAddedP95Ms, bargeInP95Ms, jitterP99Ms, underruns, failures];
  return { turnP50Ms, turnP95Ms, engineAddedP95Ms, bargeInP95Ms, jitterP99Ms, underruns, failures, pass: all.every((c) => c.met) };
}

// =============================================================================================
// Cloud turn breakdown and usage.

/** The engine's own time per speech turn, and the vendor spans and windows around it (bench-cloud.ts `breakdown`). */
function cloudSummary(kit: typeof BenchCloud, fakes: BenchCloud.CloudFakes, turns: readonly TurnSample[], transport: 'http' | 'websocket') {
  const callers = turns.flatMap((t) => (t.kind === 'speech' && t.decisionPerfMs !== null && t.pausePerfMs !== null
    ? [{ call: t.callIndex, endAt: t.endPerfMs, pauseAt: t.pausePerfMs, decisionAt: t.decisionPerfMs, firstAudioAt: t.firstPerfMs, windowMs: t.engine?.windowMs ?? null, enginePrepared: t.engine?.prepared ?? null }]
    : []));
  const rows = kit.matchTurns(callers, fakes.turns.values()).flatMap((m) => {
    const b = kit.breakdown(m.caller, m.provider);
    return b ? [{ ...b, enginePrepared: m.caller.enginePrepared }] : [];
  });
  type Row = (typeof rows)[number];
  const d = (f: (b: Row) => number) => dist(rows.map(f));
  const count = (f: (b: Row) => boolean) => rows.filter(f).length;
  return {
    note: 'engineAddedMs = first reply media at the caller − the first audio the same vendor spans and chosen windows allow: max(reply audio, window end, final), reply audio = (VAD decision if prepared, else max(final, window end)) + agent first clause + TTS first audio; all on the bench clock (docs/performance.md)',
    ttsTransport: transport,
    vendorLatencyMs: kit.CLOUD_LATENCY,
    speechTurns: callers.length,
    measuredTurns: rows.length,
    providerTurns: fakes.turns.size,
    untaggedCommits: fakes.counts.untagged,
    ambiguousTurns: fakes.counts.ambiguous,
    requests: { chat: fakes.counts.chatRequests, tts: fakes.counts.ttsRequests },
    callerLatencyMs: d((b) => b.callerLatencyMs),
    engineAddedMs: d((b) => b.engineAddedMs),
    /** Measured turns: reply asked before the final (prepared), kept on the first request, chat requests thrown away (issue: ≤ 1 per 4 turns). */
    prepare: {
      turns: rows.length,
      prepared: count((b) => b.prepared),
      engineSaysPrepared: count((b) => b.enginePrepared === true),
      keptFirst: count((b) => b.prepared && b.requests === 1),
      discardedRequests: rows.reduce((n, b) => n + b.discarded, 0),
      discardedPerTurn: ratio(rows.reduce((n, b) => n + b.discarded, 0), rows.length),
    },
    boundBy: { reply: count((b) => b.boundBy === 'reply'), window: count((b) => b.boundBy === 'window'), final: count((b) => b.boundBy === 'final') },
    engineSegmentsMs: {
      vadToSttCommit: d((b) => b.segments.vadToCommit),
      toAgentRequest: d((b) => b.segments.toAgentRequest),
      agentClauseToTtsRequest: d((b) => b.segments.clauseToTtsRequest),
      release: d((b) => b.segments.release),
    },
    vendorSpansMs: {
      sttCommitToFinal: d((b) => b.provider.stt),
      agentRequestToFirstClause: d((b) => b.provider.agentFirstClause),
      ttsRequestToFirstAudio: d((b) => b.provider.ttsFirstAudio),
    },
    windowsMs: {
      vadSilence: d((b) => b.windows.vadSilence),
      endOfTurn: d((b) => b.windows.endOfTurn),
    },
    turns: rows.map((b) => ({ ref: b.ref, call: b.call, callerLatencyMs: b.callerLatencyMs, engineAddedMs: b.engineAddedMs, prepared: b.prepared, requests: b.requests, discarded: b.discarded, windowMs: b.windows.endOfTurn, boundBy: b.boundBy, segments: b.segments, provider: b.provider })),
  };
}

/** Mean usage per call over the journals' outcome lines. */
function usageSummary(usages: readonly CallUsage[]) {
  if (usages.length === 0) return null;
  const mean = (f: (u: CallUsage) => number) => Math.round((usages.reduce((n, u) => n + f(u), 0) / usages.length) * 10) / 10;
  return {
    note: 'per call, from the journal outcome lines (record.usage); see docs/providers.md "Latency and cost per call"',
    calls: usages.length,
    meanPerCall: {
      agentInputTokens: mean((u) => u.agentInputTokens),
      agentOutputTokens: mean((u) => u.agentOutputTokens),
      ttsCharacters: mean((u) => u.ttsCharacters),
      sttSpeechMs: mean((u) => u.sttSpeechMs),
      // Prepared replies thrown away (the caller went on): each one more agent request, and the
      // characters synthesized for it; tokens as the chat API reported them before the abort.
      discarded: {
        replies: mean((u) => u.discarded?.replies ?? 0),
        agentInputTokens: mean((u) => u.discarded?.agentInputTokens ?? 0),
        agentOutputTokens: mean((u) => u.discarded?.agentOutputTokens ?? 0),
        ttsCharacters: mean((u) => u.discarded?.ttsCharacters ?? 0),
      },
    },
    /** Answered turns whose reply was prepared during the end-of-turn window, and discarded replies per answered turn (issue target ≤ 0.25). */
    preparedTurnShare: ratio(usages.reduce((n, u) => n + (u.preparedTurns ?? 0), 0), usages.reduce((n, u) => n + (u.turns ?? 0), 0)),
    discardedPerTurn: ratio(usages.reduce((n, u) => n + (u.discarded?.replies ?? 0), 0), usages.reduce((n, u) => n + (u.turns ?? 0), 0)),
  };
}

const ratio = (a: number, b: number) => (b === 0 ? null : Math.round((a / b) * 1000) / 1000);

// =============================================================================================
// CLI.

interface Cli {
  calls: number;
  durationS: number;
  providers: ProviderSet;
  stt: 'openai' | 'elevenlabs';
  ttsTransport: 'http' | 'websocket';
  ramp: boolean;
  rampBudgetS: number;
  seed: number;
  probe: boolean;
  cpuProf: boolean;
  workers: number;
  redis: boolean;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Cli {
  const cli: Cli = { calls: 10, durationS: 30, providers: 'fake', stt: 'openai', ttsTransport: 'http', ramp: false, rampBudgetS: 300, seed: Math.floor(Math.random() * 1e6), probe: true, cpuProf: false, workers: 1, redis: false };
  const usage = 'usage: npm run bench -- --calls N --duration S [--providers fake|local|cloud] [--workers N] [--redis] [--stt openai|elevenlabs] [--tts-transport http|websocket] [--ramp] [--ramp-budget S] [--seed K] [--no-probe] [--cpu-prof]';
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
    if (a === '--calls') cli.calls = int(1, 5000);
    else if (a === '--duration') cli.durationS = int(5, 600);
    else if (a === '--workers') cli.workers = int(1, 64);
    else if (a === '--redis') cli.redis = true;
    else if (a === '--providers') {
      const v = value();
      if (v !== 'fake' && v !== 'local' && v !== 'cloud') throw new UsageError(`--providers must be fake, local or cloud\n${usage}`);
      cli.providers = v;
    } else if (a === '--stt') {
      const v = value();
      if (v !== 'openai' && v !== 'elevenlabs') throw new UsageError(`--stt must be openai or elevenlabs\n${usage}`);
      cli.stt = v;
    } else if (a === '--tts-transport') {
      const v = value();
      if (v !== 'http' && v !== 'websocket') throw new UsageError(`--tts-transport must be http or websocket\n${usage}`);
      cli.ttsTransport = v;
    } else if (a === '--ramp') cli.ramp = true;
    else if (a === '--ramp-budget') cli.rampBudgetS = int(30, 3600);
    else if (a === '--seed') cli.seed = int(0, 2 ** 31);
    else if (a === '--no-probe') cli.probe = false;
    else if (a === '--cpu-prof') cli.cpuProf = true;
    else if (a === '--help' || a === '-h') {
      process.stderr.write(`${usage}\n`);
      process.exit(0);
    } else throw new UsageError(`unknown argument ${a}\n${usage}`);
  }
  return cli;
}

const loadAtStart = loadavg().map((x) => Math.round(x * 100) / 100);

/** The machine, and its load average (1/5/15 min) at start and end: other work on it skews every figure. */
function machine() {
  const c = cpus();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  return { cpus: c.length, cpuModel: c[0]?.model ?? 'unknown', memGB: Math.round(totalmem() / 1e9), node: process.version, platform: `${platform()} ${arch()}`, vetline: pkg.version,
    loadAverage: { atStart: loadAtStart, atEnd: loadavg().map((x) => Math.round(x * 100) / 100) } };
}

type RunResult = Awaited<ReturnType<typeof runOnce>>;

async function main(): Promise<void> {
  const cli = parseArgs(process.argv.slice(2));
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`;
  // Ctrl-C reaches this process twice (from the terminal and relayed by the tsx/npm parents): a
  // repeat within a second is the same keypress; a later one means "now".
  let firstSignalAt: number | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    const now = performance.now();
    if (firstSignalAt !== null && now - firstSignalAt < 1_000) return;
    const again = firstSignalAt !== null;
    firstSignalAt ??= now;
    abortRequested = true;
    log(`${signal}: stopping the calls and the engine${again ? ' now' : ''}`);
    if (again) {
      current?.kill();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => current?.kill());

  if (loadAtStart[0]! > cpus().length) {
    log(`the machine is busy (load average ${loadAtStart.join(' ')} on ${cpus().length} cores): figures will be pessimistic`);
  }
  const lines = await callerLines();
  log(`caller lines: ${lines.map((l) => `"${l.text}" ${l.ulaw.length / 8} ms`).join(', ')}`);

  // Wall-clock bound: a run never outlives its duration by much.
  const boundS = cli.ramp ? cli.rampBudgetS + cli.durationS + 180 : cli.durationS + 240;
  setTimeout(() => {
    log(`wall-clock bound of ${boundS} s reached: aborting`);
    abortRequested = true;
    setTimeout(() => {
      current?.kill();
      process.exit(2);
    }, 20_000).unref();
  }, boundS * 1000).unref();

  if (!cli.ramp) {
    const r = await runOnce(cli, lines);
    process.stdout.write(`${JSON.stringify({ bench: 'vetline', command, machine: machine(), aborted: abortRequested, ...r }, null, 2)}\n`);
    // A target missed is a failed benchmark: exit 1, the JSON saying which.
    process.exitCode = abortRequested ? 130 : r.criteria.pass ? 0 : 1;
    return;
  }

  // From --calls (default 10) up: 10, 25, 50, 100, 150, 200, 300, …
  const steps = [...new Set([cli.calls, ...[10, 25, 50, 100, 150, 200, 300, 400, 600, 800, 1000].filter((n) => n > cli.calls)])];
  const table: Array<Record<string, unknown>> = [];
  const runs: RunResult[] = [];
  let largest: number | null = null;
  let stoppedBecause = 'all steps passed';
  const budgetEnd = performance.now() + cli.rampBudgetS * 1000;
  for (const n of steps) {
    if (abortRequested) {
      stoppedBecause = 'aborted';
      break;
    }
    const estimateMs = (cli.durationS + Math.min(10, n * 0.04) + 15) * 1000;
    if (performance.now() + estimateMs > budgetEnd) {
      stoppedBecause = `ramp budget of ${cli.rampBudgetS} s reached before ${n} calls`;
      break;
    }
    const r = await runOnce({ ...cli, calls: n }, lines);
    runs.push(r);
    const row = {
      calls: n,
      pass: r.criteria.pass,
      failed: r.calls.failed,
      turnP95Ms: r.criteria.turnP95Ms.value,
      ...(r.cloud ? { engineAddedP95Ms: r.cloud.engineAddedMs.p95 } : {}),
      keyP50Ms: r.keyTurns.caller.p50,
      bargeInP95Ms: r.bargeIns.caller.p95,
      jitterP99Ms: r.criteria.jitterP99Ms.value,
      jitterP99RawMs: r.jitter.lateMs.p99,
      underruns: r.jitter.underruns,
      underrunsOutsideGeneratorStalls: r.criteria.underruns.value,
      engineCpuPercent: r.engine.cpuPercentOfOneCore.steady,
      engineElu: r.engine.probe?.steady?.elu ?? null,
      engineLagP99Ms: r.engine.probe?.steady?.lagMs.p99 ?? null,
      rssPerCallMB: r.engine.rssMB.perCall,
      generatorLagP99Ms: r.loadGenerator.eventLoopDelayMs.p99,
      generatorCpuPercent: r.loadGenerator.cpuPercentOfOneCore,
    };
    table.push(row);
    log(`step ${n}: ${JSON.stringify(row)}`);
    if (!r.criteria.pass) {
      const why = Object.entries(r.criteria).flatMap(([name, c]) => (typeof c === 'object' && !c.met ? [`${name} ${String(c.value)} (target ${String(c.target)})`] : []));
      stoppedBecause = `${n} calls failed: ${why.join(', ')}`;
      break;
    }
    largest = n;
  }
  const out = { bench: 'vetline', mode: 'ramp', command, machine: machine(), providers: cli.providers, workers: cli.workers, redis: cli.redis, durationS: cli.durationS, seed: cli.seed, largestPassingCalls: largest, stoppedBecause, table, lastPassing: runs.filter((r) => r.criteria.pass).at(-1) ?? null, firstFailing: runs.find((r) => !r.criteria.pass) ?? null };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  process.exitCode = abortRequested ? 130 : 0;
}

if (process.env.VETLINE_BENCH_PROBE === '1' && process.argv[1] !== undefined && resolve(process.argv[1]) !== SELF) {
  installProbe();
} else if (process.argv[1] !== undefined && resolve(process.argv[1]) === SELF) {
  main().catch((err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    log(err instanceof Error ? (err.stack ?? err.message) : String(err));
    current?.kill();
    process.exit(1);
  });
}
