/**
 * The offline recognizer's decoding, inside a speech worker (src/providers/speech/speech.worker.ts);
 * ./local.ts is the provider the calls use and explains what it understands.
 *
 * Engine: soundswallower (PocketSphinx in WASM), loaded once per worker (~230 ms with the first
 * decoder). This grammar costs ~95 ms of CPU per second of speech. Decoders (~24 MB each; the
 * first, with the module, ~38 MB) come from the worker's pool (at most `maxDecoders`, grown in the
 * background as sessions open), checked out per utterance and preferring the one the session used
 * last (its live CMN has adapted to that line). With every decoder busy, an utterance's audio is
 * buffered and decoded when one frees.
 *
 * Sessions (one per call, pinned to this worker) get audio only between speechStarted (with the
 * pre-roll) and speechEnded, in batches. Decoding is not done when a batch arrives but in steps of
 * at most 200 ms of audio (~19 ms of CPU), one session after another (a session that just ended
 * goes first), each step a turn of the worker's event loop: a synthesis request (../tts/flite.ts)
 * waits for one step, not for every queued batch, and a long recording segment cannot hold live
 * calls' finals up. A partial is the running hypothesis, read every 500 ms of decoded audio unless
 * the session is 500 ms or more behind (~1 ms each); the final costs ~4 ms.
 *
 * Every sample gets ±8 LSB triangular dither from a seeded generator, since digital silence derails
 * the recogniser. Utterances are capped at 15 s: the final comes at the cap, and the end that
 * follows emits nothing.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import createModule from 'soundswallower';
import type { Decoder, SoundSwallowerModule } from 'soundswallower';
import { buildGrammar } from './local-grammar.js';

const RATE = 8000;
const MAX_UTTERANCE_SAMPLES = 15 * RATE;
const PARTIAL_EVERY_SAMPLES = RATE / 2;
const STEP_SAMPLES = RATE / 5;
const DITHER_LSB = 8;

/** What the recognizer tells the main thread (posted by the worker). */
export interface RecognizerOutput {
  partial(id: number, utt: number, text: string): void;
  final(id: number, utt: number, text: string, confidence: number | null): void;
  /** The session failed and is gone. */
  error(id: number, message: string): void;
  warning(message: string): void;
}

interface Pooled {
  readonly decoder: Decoder;
  grammar: string | null;
}

async function newDecoder(ss: SoundSwallowerModule): Promise<Pooled> {
  // bestpath off: the lattice pass doubled decoding time for no accuracy gain on this grammar.
  const decoder = new ss.Decoder({ samprate: RATE, loglevel: 'FATAL', bestpath: false });
  await decoder.initialize();
  return { decoder, grammar: null };
}

function setGrammar(d: Pooled, grammar: string): void {
  if (d.grammar === grammar) return;
  d.grammar = null;
  d.decoder.set_grammar(grammar);
  d.grammar = grammar;
}

/** This worker's decoders, checked out per utterance; grows in the background. */
class DecoderPool {
  private readonly free: Pooled[] = [];
  private readonly waiters: Array<(d: Pooled) => void> = [];
  private count = 1;
  private pending = 0;

  constructor(private readonly ss: SoundSwallowerModule, readonly first: Pooled, private readonly max: number) {
    this.free.push(first);
  }

  /** Makes sure `n` decoders exist or are on their way (~200 ms of work each). */
  reserve(n: number, grammar: string, warn: (m: string) => void): void {
    while (this.count + this.pending < Math.min(n, this.max)) {
      this.pending++;
      newDecoder(this.ss).then(
        (d) => { this.pending--; this.count++; this.release(d); this.prepare(grammar); },
        (e: unknown) => { this.pending--; warn(`local STT: no new decoder: ${String(e)}`); },
      );
    }
  }

  /** Sets `grammar` (~50–200 ms) on a free decoder ahead of time, so speechStarted need not. */
  prepare(grammar: string): void {
    if (this.free.some((d) => d.grammar === grammar)) return;
    const d = this.free[this.free.length - 1];
    if (d) setGrammar(d, grammar);
  }

  /** A free decoder: `preferred` if free (same caller), else one with `grammar` set, else null. */
  acquire(grammar: string, preferred: Pooled | null): Pooled | null {
    let i = preferred ? this.free.indexOf(preferred) : -1;
    if (i < 0) {
      this.prepare(grammar);
      i = this.free.findIndex((d) => d.grammar === grammar);
    }
    return i >= 0 ? this.free.splice(i, 1)[0]! : null;
  }

  /** Calls `cb` with the next released decoder; returns a cancel function. */
  wait(cb: (d: Pooled) => void): () => void {
    this.waiters.push(cb);
    return () => {
      const i = this.waiters.indexOf(cb);
      if (i >= 0) this.waiters.splice(i, 1);
    };
  }

  release(d: Pooled): void {
    const next = this.waiters.shift();
    if (next) next(d);
    else this.free.push(d);
  }
}

/** One call's recognition, pinned to this worker. */
class Session {
  buf: Float32Array | null = null;
  len = 0;
  fed = 0;
  open = false;
  utt = -1;
  ended = false;
  capped = false;
  finalSent = false;
  nextPartialAt = 0;
  lastPartial = '';
  seed = 0x9e3779b9;
  dec: Pooled | null = null;
  /** The decoder of this call's previous utterance: its live CMN has adapted to this line. */
  lastDecoder: Pooled | null = null;
  cancelWait: (() => void) | null = null;
  queued = false;
  /** Messages of the next utterance, held until this one's final is out. */
  backlog: Array<() => void> = [];

  constructor(readonly id: number, readonly grammar: string) {}
}

/** Loads the WASM module and the first decoder (~250 ms). */
export async function loadRecognizer(maxDecoders: number, out: RecognizerOutput): Promise<Recognizer> {
  const modelBase = join(dirname(fileURLToPath(import.meta.resolve('soundswallower'))), 'model') + '/';
  const before = new Set(process.listeners('uncaughtException'));
  let ss: SoundSwallowerModule;
  try {
    // `modelBase` is read by the package's loader but missing from its Module type.
    ss = await createModule({ modelBase } as Partial<SoundSwallowerModule>);
  } finally {
    // The Emscripten glue turns every uncaught error into exit code 7: take its listener out.
    for (const l of process.listeners('uncaughtException')) if (!before.has(l)) process.off('uncaughtException', l);
  }
  return new Recognizer(new DecoderPool(ss, await newDecoder(ss), Math.max(1, maxDecoders)), out);
}

export class Recognizer {
  private readonly sessions = new Map<number, Session>();
  private readonly grammars = new Map<string, string>();
  private readonly warned = new Set<string>();
  /** Sessions with audio to decode or a final to produce, served in turn. */
  private readonly queue: Session[] = [];
  private scheduled = false;

  constructor(private readonly pool: DecoderPool, private readonly out: RecognizerOutput) {
    pool.prepare(this.grammarFor([]));
  }

  open(id: number, vocabulary: readonly string[]): void {
    this.guard(id, () => {
      const s = new Session(id, this.grammarFor(vocabulary));
      this.sessions.set(id, s);
      this.pool.reserve(this.sessions.size, s.grammar, (m) => this.out.warning(m));
      this.pool.prepare(s.grammar);
    });
  }

  start(id: number, utt: number, pcm: Int16Array): void {
    const s = this.sessions.get(id);
    if (!s || this.defer(s, utt, () => this.start(id, utt, pcm))) return;
    this.detach(s); // a start while open (no end came) abandons that utterance
    s.open = true;
    s.utt = utt;
    s.len = s.fed = 0;
    s.capped = s.ended = s.finalSent = false;
    s.lastPartial = '';
    s.buf ??= new Float32Array(MAX_UTTERANCE_SAMPLES);
    this.append(s, pcm);
    s.nextPartialAt = s.len + PARTIAL_EVERY_SAMPLES;
    this.guard(id, () => {
      const d = this.pool.acquire(s.grammar, s.lastDecoder);
      if (d) this.attach(s, d);
      else s.cancelWait = this.pool.wait((w) => this.guard(id, () => this.attach(s, w), w));
    });
  }

  audio(id: number, utt: number, pcm: Int16Array): void {
    const s = this.sessions.get(id);
    if (!s || this.defer(s, utt, () => this.audio(id, utt, pcm))) return;
    if (!s.open || s.utt !== utt || s.capped) return;
    this.append(s, pcm);
    s.capped = s.len >= MAX_UTTERANCE_SAMPLES;
    this.enqueue(s, false);
  }

  end(id: number, utt: number): void {
    const s = this.sessions.get(id);
    if (!s || this.defer(s, utt, () => this.end(id, utt))) return;
    if (!s.open || s.utt !== utt) return;
    if (s.finalSent) return this.reset(s); // the cap already gave this utterance its final
    s.ended = true;
    this.enqueue(s, true);
  }

  close(id: number): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    s.open = false;
    s.backlog = [];
    s.cancelWait?.();
    this.detach(s);
  }

  /**
   * Holds a message of a later utterance while this one has ended but its final is not out yet
   * (the caller spoke again before it was decoded); finish() replays them in order.
   */
  private defer(s: Session, utt: number, replay: () => void): boolean {
    if (utt === s.utt || !(s.backlog.length > 0 || (s.open && s.ended))) return false;
    s.backlog.push(replay);
    return true;
  }

  private attach(s: Session, d: Pooled): void {
    s.cancelWait = null;
    if (!s.open || s.finalSent || this.sessions.get(s.id) !== s) return this.pool.release(d);
    s.dec = s.lastDecoder = d;
    setGrammar(d, s.grammar);
    d.decoder.start();
    this.enqueue(s, s.ended);
  }

  private enqueue(s: Session, first: boolean): void {
    if (!s.dec) return; // waiting for a decoder: attach() queues it
    if (s.queued) {
      if (!first) return;
      this.queue.splice(this.queue.indexOf(s), 1);
    }
    s.queued = true;
    if (first) this.queue.unshift(s);
    else this.queue.push(s);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  }

  /** One step of one session per turn of the loop; messages that arrived meanwhile go first. */
  private readonly run = (): void => {
    this.scheduled = false;
    const s = this.queue.shift();
    if (s) {
      s.queued = false;
      const d = s.dec;
      if (d && this.sessions.get(s.id) === s) this.guard(s.id, () => this.step(s, d), d);
    }
    if (this.queue.length && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.run);
    }
  };

  /** Decodes up to 200 ms; emits a partial every 500 ms, the final once the segment is over. */
  private step(s: Session, d: Pooled): void {
    const to = Math.min(s.len, s.fed + STEP_SAMPLES);
    if (s.fed < to) d.decoder.process_audio(s.buf!.subarray(s.fed, to), false, false);
    s.fed = to;
    if (s.fed === s.len && (s.ended || s.capped)) return this.finish(s, d);
    // A partial every 500 ms of decoded audio, unless it would be stale already (a backlog).
    if (s.fed >= s.nextPartialAt && s.len - s.fed < PARTIAL_EVERY_SAMPLES) {
      s.nextPartialAt = s.fed + PARTIAL_EVERY_SAMPLES;
      const text = d.decoder.get_text().trim();
      if (text && text !== s.lastPartial) this.out.partial(s.id, s.utt, (s.lastPartial = text));
    }
    if (s.fed < s.len) this.enqueue(s, false);
  }

  private finish(s: Session, d: Pooled): void {
    d.decoder.stop();
    let text = d.decoder.get_text().trim();
    if (!text && s.len > RATE / 2) {
      // No path reached the end of the grammar: live CMN (the mean carried over from earlier
      // utterances) can be far off for a new line. Decode again in batch, with this utterance's
      // own mean: rare, and ~30–100 ms when it happens.
      d.decoder.start();
      d.decoder.process_audio(s.buf!.subarray(0, s.len), false, true);
      d.decoder.stop();
      text = d.decoder.get_text().trim();
    }
    let confidence: number | null = null;
    if (text) {
      const words = (d.decoder.get_alignment().w ?? []).filter((w) => !/^(<|\(NULL\)|\[)/.test(w.t));
      if (words.length) confidence = Math.round((words.reduce((sum, w) => sum + w.p, 0) / words.length) * 1000) / 1000;
    }
    s.dec = null;
    s.finalSent = true;
    const utt = s.utt;
    if (s.ended) this.reset(s);
    this.out.final(s.id, utt, text, confidence);
    this.pool.release(d); // after this final, so a waiting session's final cannot overtake it
    if (!s.open) for (const replay of s.backlog.splice(0)) replay();
  }

  private reset(s: Session): void {
    s.open = false;
    s.len = s.fed = 0;
  }

  /** Abandons the utterance in progress and gives the decoder back. */
  private detach(s: Session): void {
    const d = s.dec;
    s.dec = null;
    if (s.queued) {
      this.queue.splice(this.queue.indexOf(s), 1);
      s.queued = false;
    }
    if (!d) return;
    try {
      d.decoder.stop();
    } catch {
      // nothing to keep; the decoder restarts cleanly on its next start()
    }
    this.pool.release(d);
  }

  /** Runs `fn`; a failure ends session `id` with an error (a WASM trap ends the worker: it is restarted). */
  private guard(id: number, fn: () => void, d?: Pooled): void {
    try {
      fn();
    } catch (e) {
      const s = this.sessions.get(id);
      if (d && s?.dec !== d) this.pool.release(d);
      if (s) this.close(id);
      this.out.error(id, e instanceof Error ? e.message : String(e));
      if (e instanceof Error && e.name === 'RuntimeError') {
        setImmediate(() => {
          throw e;
        });
      }
    }
  }

  private grammarFor(vocabulary: readonly string[]): string {
    const key = vocabulary.join('\n');
    let g = this.grammars.get(key);
    if (g === undefined) {
      const built = buildGrammar(vocabulary, (w) => this.pool.first.decoder.lookup_word(w) != null);
      const fresh = built.dropped.filter((w) => !this.warned.has(w));
      fresh.forEach((w) => this.warned.add(w));
      if (fresh.length) this.out.warning(`local STT: not in the dictionary, left out of the grammar: ${fresh.join(', ')}`);
      if (this.grammars.size >= 64) this.grammars.clear();
      this.grammars.set(key, (g = built.jsgf));
    }
    return g;
  }

  /** Appends PCM16 as dithered float samples (xorshift32: deterministic, allocation-free). */
  private append(s: Session, src: Int16Array): void {
    const buf = s.buf!;
    let x = s.seed;
    const n = Math.min(src.length, buf.length - s.len);
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const a = (x >>> 0) / 4294967296;
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      buf[s.len++] = (src[i]! + (a - (x >>> 0) / 4294967296) * DITHER_LSB) / 32768;
    }
    s.seed = x;
  }
}
