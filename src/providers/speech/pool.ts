/**
 * The speech workers: the offline recognizer and synthesizer run in worker threads, so the event
 * loop only moves frames (docs/design/architecture.md §9). One pool per process (`speechPool()`),
 * `SPEECH_WORKERS` threads (default: the number of cores), each loading the engines it is asked for.
 *
 * - A recognizer session (one call's stream) is pinned to the worker with the fewest sessions for
 *   its whole life: the worker keeps its utterance and decoder. Audio goes over in transferred
 *   batches (../stt/local.ts).
 * - Syntheses (one sentence each) are queued here and handed to a worker with none in flight,
 *   preferring the one decoding least, so they spread across the pool; a job aborted while queued
 *   is dropped.
 * - A worker that exits unexpectedly (an uncaught error, a WASM trap, `process.exit`), or that
 *   owes an answer and has said nothing for 30 s, is ended and replaced: its sessions get
 *   `onError` (the call's recognizer-error path: the key menu) and its syntheses reject (the reply's
 *   speech is skipped); nothing waits forever. A worker that dies before it ever loaded is restarted
 *   after a growing delay (0.1 → 10 s).
 * - Workers are unref'd whenever nothing waits on them (no synthesis, final or load in flight), so
 *   they never keep a process alive; `close()` terminates them.
 *
 * Under tsx (npm start, the Dockerfile, tests) the worker's TypeScript is loaded by registering tsx
 * inside the worker first: Node 20 does not pass the parent's loader hooks to a worker's entry.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Engine, FromWorker, ToWorker, WorkerOptions } from './protocol.js';
import type { RecognizerSession, RecognizerSink } from './session-types.js';

export type { RecognizerSession, RecognizerSink } from './session-types.js';

const STALL_MS = 30_000;
const DEFAULT_SCRIPT = new URL('./speech.worker.ts', import.meta.url);

export interface SpeechPoolOptions {
  /** Worker threads. Default: availableParallelism(). */
  workers?: number;
  /** Recognizer decoders per worker (~22 MB each). Default 4. */
  maxDecoders?: number;
  /** The worker's entry module (tests wrap the real one). Default ./speech.worker.ts. */
  script?: URL;
}

interface Session {
  readonly id: number;
  readonly sink: RecognizerSink;
  /** Utterances ended whose final has not come yet. */
  readonly owed: Set<number>;
  /** Highest utterance whose final came (the 15 s cap can send it before the end). */
  lastFinal: number;
  speaking: boolean;
}

interface Job {
  readonly id: number;
  readonly text: string;
  readonly voice: string;
  resolve(audio: Uint8Array): void;
  reject(error: Error): void;
  readonly signal: AbortSignal | undefined;
  onAbort?: () => void;
}

interface Slot {
  readonly index: number;
  worker: Worker | null;
  threadId: number;
  readonly sessions: Map<number, Session>;
  job: Job | null;
  readonly loads: Map<Engine, { resolve(): void; reject(e: Error): void }>;
  loaded: Set<Engine>;
  lastHeard: number;
  refd: boolean;
  everLoaded: boolean;
  restartDelay: number;
  exitReason: string | null;
}

let shared: SpeechPool | null = null;

/** The process's speech workers; the first caller's options size it (the engine at start-up). */
export function speechPool(options: SpeechPoolOptions = {}): SpeechPool {
  return (shared ??= new SpeechPool(options));
}

export class SpeechPool {
  readonly size: number;
  private readonly maxDecoders: number;
  private readonly script: URL;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly wanted = new Map<Engine, Promise<void>>();
  private readonly warningListeners = new Set<(message: string) => void>();
  private readonly stopListeners = new Set<(message: string) => void>();
  private readonly warned = new Set<string>();
  private nextId = 1;
  private closed = false;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(options: SpeechPoolOptions = {}) {
    this.size = Math.max(1, Math.floor(options.workers ?? availableParallelism()));
    this.maxDecoders = Math.max(1, options.maxDecoders ?? 4);
    this.script = options.script ?? DEFAULT_SCRIPT;
  }

  /** Loads `engine` in every worker (starting them on first use); rejects if a worker cannot. */
  load(engine: Engine): Promise<void> {
    if (this.closed) return Promise.reject(new Error('speech workers are closed'));
    let p = this.wanted.get(engine);
    if (!p) {
      if (this.slots.length === 0) this.start();
      p = Promise.all(this.slots.map((s) => this.loadIn(s, engine))).then(() => undefined);
      p.catch(() => this.wanted.delete(engine));
      this.wanted.set(engine, p);
    }
    return p;
  }

  /** Recognizer warnings (words left out of a grammar), each message once. Default: process warnings. */
  onWarning(listener: (message: string) => void): void {
    this.warningListeners.add(listener);
  }

  /** Told when a worker stops unexpectedly (and is replaced). Default: a process warning. */
  onWorkerStopped(listener: (message: string) => void): void {
    this.stopListeners.add(listener);
  }

  /** Thread ids of the live workers (diagnostics and tests). */
  threadIds(): number[] {
    return this.slots.flatMap((s) => (s.worker ? [s.threadId] : []));
  }

  openRecognizer(vocabulary: readonly string[], sink: RecognizerSink): RecognizerSession {
    const id = this.nextId++;
    const live = this.slots.filter((s) => s.worker);
    const slot = live.sort((a, b) => a.sessions.size - b.sessions.size || a.index - b.index)[0];
    if (!slot) {
      queueMicrotask(() => sink.error(new Error('no speech worker is running')));
      return { start() {}, audio() {}, end() {}, close() {} };
    }
    const session: Session = { id, sink, owed: new Set(), lastFinal: -1, speaking: false };
    slot.sessions.set(id, session);
    this.post(slot, { t: 'stt.open', id, vocabulary });
    const mine = () => slot.sessions.get(id) === session;
    return {
      start: (utt, preRoll) => {
        if (!mine()) return;
        session.speaking = true;
        this.post(slot, { t: 'stt.start', id, utt, pcm: own(preRoll) }, true);
      },
      audio: (utt, pcm) => {
        if (mine()) this.post(slot, { t: 'stt.audio', id, utt, pcm: own(pcm) }, true);
      },
      end: (utt) => {
        if (!mine()) return;
        session.speaking = false;
        if (utt > session.lastFinal) session.owed.add(utt);
        this.post(slot, { t: 'stt.end', id, utt });
        this.updateRef(slot);
      },
      close: () => {
        if (!mine()) return;
        slot.sessions.delete(id);
        this.post(slot, { t: 'stt.close', id });
        this.updateRef(slot);
      },
    };
  }

  /** One sentence to μ-law 8 kHz on the next free worker. Rejects with the signal's reason if aborted first. */
  async synthesize(text: string, voice: string, signal?: AbortSignal): Promise<Uint8Array> {
    await this.load('tts');
    signal?.throwIfAborted();
    return new Promise<Uint8Array>((resolve, reject) => {
      const job: Job = { id: this.nextId++, text, voice, resolve, reject, signal };
      if (signal) {
        job.onAbort = () => {
          const i = this.queue.indexOf(job);
          if (i < 0) return; // already running: it finishes and is dropped by the caller
          this.queue.splice(i, 1);
          reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        };
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** Terminates every worker. Sessions and syntheses still open get no further answer. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchdog) clearInterval(this.watchdog);
    for (const job of this.queue.splice(0)) job.reject(new Error('speech workers are closed'));
    await Promise.all(this.slots.map(async (s) => {
      const w = s.worker;
      s.worker = null;
      s.job?.reject(new Error('speech workers are closed'));
      for (const l of s.loads.values()) l.reject(new Error('speech workers are closed'));
      if (w) await w.terminate();
    }));
    if (shared === this) shared = null;
  }

  private start(): void {
    for (let index = 0; index < this.size; index++) {
      const slot: Slot = {
        index, worker: null, threadId: 0, sessions: new Map(), job: null, loads: new Map(), loaded: new Set(),
        lastHeard: 0, refd: true, everLoaded: false, restartDelay: 100, exitReason: null,
      };
      this.slots.push(slot);
      this.spawn(slot);
    }
    this.watchdog = setInterval(() => this.checkStalls(), 1000);
    this.watchdog.unref();
  }

  private spawn(slot: Slot): void {
    const workerData: WorkerOptions = { maxDecoders: this.maxDecoders };
    const href = this.script.href;
    // Node 20 hands a worker neither the parent's tsx hooks nor a .ts entry: register tsx first.
    const w = href.endsWith('.ts')
      ? new Worker(`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(href)}); })`,
        { eval: true, workerData, execArgv: [] })
      : new Worker(this.script, { workerData, execArgv: [] });
    slot.worker = w;
    slot.threadId = w.threadId;
    slot.loaded = new Set();
    slot.exitReason = null;
    slot.lastHeard = performance.now();
    w.on('message', (m: FromWorker) => this.receive(slot, m));
    w.on('error', (e) => {
      slot.exitReason = e.message;
    });
    w.on('exit', (code) => this.exited(slot, w, code));
    slot.refd = true; // a new worker starts ref'd
    // A replacement loads what the pool had loaded, and what was asked of it while it was down.
    for (const engine of new Set([...this.wanted.keys(), ...slot.loads.keys()])) {
      if (!slot.loads.has(engine)) slot.loads.set(engine, { resolve() {}, reject() {} });
      this.post(slot, { t: 'load', engine });
    }
    this.updateRef(slot);
  }

  private loadIn(slot: Slot, engine: Engine): Promise<void> {
    if (slot.loaded.has(engine)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const previous = slot.loads.get(engine);
      slot.loads.set(engine, {
        resolve: () => { previous?.resolve(); resolve(); },
        reject: (e) => { previous?.reject(e); reject(e); },
      });
      if (!previous) this.post(slot, { t: 'load', engine }); // no worker: spawn() asks when it starts one
      this.updateRef(slot);
    });
  }

  private receive(slot: Slot, m: FromWorker): void {
    slot.lastHeard = performance.now();
    switch (m.t) {
      case 'loaded':
        slot.loaded.add(m.engine);
        slot.everLoaded = true;
        slot.restartDelay = 100;
        this.settleLoad(slot, m.engine)?.resolve();
        this.dispatch();
        break;
      case 'loadFailed':
        this.settleLoad(slot, m.engine)?.reject(new Error(`speech worker could not load the ${m.engine === 'stt' ? 'recognizer' : 'synthesizer'}: ${m.message}`));
        break;
      case 'warning':
        if (this.warned.has(m.message)) break;
        this.warned.add(m.message);
        if (this.warningListeners.size === 0) process.emitWarning(m.message, 'VetlineSttWarning');
        for (const l of this.warningListeners) l(m.message);
        break;
      case 'stt.partial':
        slot.sessions.get(m.id)?.sink.partial(m.utt, m.text);
        break;
      case 'stt.final': {
        const s = slot.sessions.get(m.id);
        if (!s) break;
        s.owed.delete(m.utt);
        s.lastFinal = Math.max(s.lastFinal, m.utt);
        this.updateRef(slot);
        s.sink.final(m.utt, m.text, m.confidence);
        break;
      }
      case 'stt.error': {
        const s = slot.sessions.get(m.id);
        if (!s) break;
        slot.sessions.delete(m.id);
        this.updateRef(slot);
        s.sink.error(new Error(`local STT: ${m.message}`));
        break;
      }
      case 'tts.done':
      case 'tts.error': {
        const job = slot.job;
        if (job?.id !== m.job) break;
        slot.job = null;
        this.updateRef(slot);
        if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
        if (m.t === 'tts.done') job.resolve(new Uint8Array(m.audio));
        else job.reject(new Error(`local TTS: ${m.message}`));
        this.dispatch();
        break;
      }
    }
  }

  private settleLoad(slot: Slot, engine: Engine) {
    const l = slot.loads.get(engine);
    slot.loads.delete(engine);
    this.updateRef(slot);
    return l;
  }

  /** Hands queued syntheses to workers with none in flight, least busy decoding first. */
  private dispatch(): void {
    while (this.queue.length > 0) {
      const free = this.slots.filter((s) => s.worker && !s.job && s.loaded.has('tts'));
      if (free.length === 0) return;
      const load = (s: Slot) => [...s.sessions.values()].filter((x) => x.speaking || x.owed.size > 0).length;
      const slot = free.sort((a, b) => load(a) - load(b) || a.sessions.size - b.sessions.size || a.index - b.index)[0]!;
      const job = this.queue.shift()!;
      slot.job = job;
      this.post(slot, { t: 'tts', job: job.id, text: job.text, voice: job.voice });
      this.updateRef(slot);
    }
  }

  private post(slot: Slot, m: ToWorker, transfer = false): void {
    const w = slot.worker;
    if (!w) return;
    if (transfer && (m.t === 'stt.start' || m.t === 'stt.audio')) w.postMessage(m, [m.pcm]);
    else w.postMessage(m);
  }

  /** Ref'd only while something waits on the worker, so idle workers never keep the process alive. */
  private updateRef(slot: Slot): void {
    const w = slot.worker;
    if (!w) return;
    const waiting = slot.job !== null || slot.loads.size > 0 || [...slot.sessions.values()].some((s) => s.owed.size > 0);
    if (waiting && !slot.refd) w.ref();
    if (!waiting && slot.refd) w.unref();
    slot.refd = waiting;
  }

  private checkStalls(): void {
    const now = performance.now();
    for (const slot of this.slots) {
      const owes = slot.job !== null || [...slot.sessions.values()].some((s) => s.owed.size > 0);
      if (slot.worker && owes && now - slot.lastHeard > STALL_MS) {
        slot.exitReason = `no answer for ${STALL_MS / 1000} s`;
        void slot.worker.terminate();
      }
    }
  }

  private exited(slot: Slot, w: Worker, code: number): void {
    if (slot.worker !== w) return; // closed, or already replaced
    slot.worker = null;
    if (this.closed) return;
    const reason = new Error(`local speech worker stopped (${slot.exitReason ?? `exit code ${code}`})`);
    if (this.stopListeners.size === 0) process.emitWarning(reason.message, 'VetlineSpeechWorker');
    for (const l of this.stopListeners) l(reason.message);
    const sessions = [...slot.sessions.values()];
    slot.sessions.clear();
    const job = slot.job;
    slot.job = null;
    const loads = [...slot.loads.values()];
    slot.loads.clear();
    for (const l of loads) l.reject(reason);
    if (job) {
      if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
      job.reject(reason);
    }
    for (const s of sessions) s.sink.error(reason);
    const delay = slot.everLoaded ? 0 : slot.restartDelay;
    if (!slot.everLoaded) slot.restartDelay = Math.min(10_000, slot.restartDelay * 2);
    slot.everLoaded = false;
    const respawn = () => {
      if (this.closed) return;
      this.spawn(slot);
      this.dispatch();
    };
    if (delay === 0) respawn();
    else setTimeout(respawn, delay).unref();
  }
}

/** The array's own whole buffer, to transfer (a copy when it is a view of a larger one). */
function own(pcm: Int16Array): ArrayBuffer {
  const whole = pcm.byteOffset === 0 && pcm.byteLength === pcm.buffer.byteLength ? pcm : pcm.slice();
  return whole.buffer as ArrayBuffer;
}
