/**
 * Offline speech to text: soundswallower (PocketSphinx in WASM), its bundled 8 kHz en-US model and
 * a JSGF phrase grammar for a vet clinic's front desk (docs/design/stack.md §3.5).
 *
 * Understands one short utterance of the grammar in ./local-grammar.ts: an optional lead
 * (yes/no/okay/hi/hello), a core phrase, then optional details ("for bella", "tomorrow morning")
 * and "please"/"thank you". Core phrases: yes/no variants; menu words (one, two, zero, nine, star,
 * front desk, operator, staff, a person, a human, "talk to someone"); booking ("i want to book an
 * appointment", "see the vet", "a checkup", "vaccinations"); refills ("i need a refill"); hours
 * ("what are your hours", "when are you open"); address ("where are you located"); services;
 * goodbyes and thanks; backchannels in the dictionary (mhm, uh-huh, okay, right, i see);
 * emergencies as subject + condition ("my dog is bleeding", "my cat ate poison", "he can't
 * breathe", "she is having a seizure") or "it's (not) an emergency"; ~40 common pet/owner first
 * names, alone or after "my name is" / "his name is"; days, parts of day and clock times ("monday
 * afternoon", "at ten", "friday at three thirty p.m."); and the call's `vocabulary`
 * (sttVocabularyFor: staff names, services, emergency keywords) where its words are in the
 * dictionary.
 *
 * Cannot understand anything else. It is a closed grammar, not dictation: other speech is forced
 * onto the nearest phrase, with the same confidence (~0.85–0.9) as a real match. Measured: "my
 * rabbit has a sore ear" → "my rabbit had a seizure" (a false emergency), "my dog ate xylitol" →
 * "my dog ate chocolate please", "is chocolate bad for dogs" → "it's coco thanks", "can you call
 * me back later" → "at noon twelve a.m. thank you", a phone number → "my horse won't eat thank
 * you", "mm-hmm" (not in the dictionary) → "emily thanks". Unlisted names, drugs, numbers, dates
 * and free-form reasons are out of reach; out-of-dictionary words (mm-hmm, xylitol, heartworm,
 * parvo) are dropped with one warning. Short words get swapped (yes/yeah/yep, no/nope).
 *
 * Engine: the WASM module loads once per process (~230 ms with the first decoder). This grammar
 * costs ~95 ms of CPU per second of speech (2 busy cores; a 6-phrase grammar ~30 ms), so one
 * decoder shared serially would block the event loop 100–300 ms at each speechEnded. Decoders
 * (~24 MB each; the first, with the module, ~38 MB) come from a pool instead (default 4, grown in
 * the background as calls open), checked out per utterance and preferring the one the call used
 * last (its live CMN has adapted to that line): frames are decoded as they arrive (~1.9 ms per
 * 20 ms frame), a partial is the running hypothesis read every 500 ms of audio (~1 ms), and the
 * final costs ~4 ms. With every decoder busy, the stream buffers and catches up when one frees.
 *
 * Per call: 300 ms of pre-roll (VAD back-dating + ~200 ms). Only audio between speechStarted and
 * speechEnded is decoded (silence or a tone comes back as "yes"/"no"). Every sample gets ±8 LSB
 * triangular dither from a seeded generator, since digital silence derails the recogniser.
 * Utterances are capped at 15 s: the final comes at the cap, and the speechEnded that follows
 * emits nothing. A speechEnded with no open segment emits an empty final.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import createModule from 'soundswallower';
import type { Decoder, SoundSwallowerModule } from 'soundswallower';
import { buildGrammar } from './local-grammar.js';
import type { SttOptions, SttProvider, SttStream } from './types.js';

export { buildGrammar, sttVocabularyFor } from './local-grammar.js';

const RATE = 8000;
const MAX_UTTERANCE_SAMPLES = 15 * RATE;
const PARTIAL_EVERY_SAMPLES = RATE / 2;
const DITHER_LSB = 8;

export interface LocalSttOptions {
  /** Audio kept from before speechStarted (VAD back-dating + margin). Default 300. */
  preRollMs?: number;
  /** Decoders kept at most (~25–30 MB each). Default 4. */
  maxDecoders?: number;
  /** Where dropped out-of-dictionary words are reported; default process.emitWarning. */
  onWarning?: (message: string) => void;
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

/** Decoders checked out per utterance, shared by the whole process; grows in the background. */
class DecoderPool {
  private readonly free: Pooled[] = [];
  private readonly waiters: Array<(d: Pooled) => void> = [];
  private count = 1;
  private pending = 0;
  max = 1;

  constructor(private readonly ss: SoundSwallowerModule, readonly first: Pooled) {
    this.free.push(first);
  }

  /** Makes sure `n` decoders exist or are on their way (~200 ms of async work each). */
  reserve(n: number, grammar: string): void {
    while (this.count + this.pending < Math.min(n, this.max)) {
      this.pending++;
      newDecoder(this.ss).then(
        (d) => { this.pending--; this.count++; this.release(d); this.prepare(grammar); },
        (e: unknown) => { this.pending--; process.emitWarning(`local STT: no new decoder: ${String(e)}`); },
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

let loaded: Promise<DecoderPool> | undefined;

/** Loads the WASM module and the first decoder once per process (~250 ms cold). */
function load(): Promise<DecoderPool> {
  loaded ??= (async () => {
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
    return new DecoderPool(ss, await newDecoder(ss));
  })().catch((e: unknown) => {
    loaded = undefined;
    throw e;
  });
  return loaded;
}

/** Creates the provider; resolves once the model and the first decoder are loaded. */
export async function createLocalStt(options: LocalSttOptions = {}): Promise<SttProvider> {
  const pool = await load();
  pool.max = Math.max(pool.max, options.maxDecoders ?? 4);
  const warned = new Set<string>();
  const warn = options.onWarning ?? ((m: string) => process.emitWarning(m, 'VetlineSttWarning'));
  const preRoll = Math.max(1, Math.round(((options.preRollMs ?? 300) * RATE) / 1000));
  const grammars = new Map<string, string>();
  const inDict = (w: string) => pool.first.decoder.lookup_word(w) != null;
  let open = 0;
  const grammarFor = (vocabulary: readonly string[]): string => {
    const key = vocabulary.join('\n');
    let g = grammars.get(key);
    if (g === undefined) {
      const built = buildGrammar(vocabulary, inDict);
      const fresh = built.dropped.filter((w) => !warned.has(w));
      fresh.forEach((w) => warned.add(w));
      if (fresh.length) warn(`local STT: not in the dictionary, left out of the grammar: ${fresh.join(', ')}`);
      if (grammars.size >= 64) grammars.clear();
      grammars.set(key, (g = built.jsgf));
    }
    return g;
  };
  pool.prepare(grammarFor([]));
  return {
    name: 'local',
    open(o: SttOptions): SttStream {
      const grammar = grammarFor(o.vocabulary);
      pool.reserve(++open, grammar);
      pool.prepare(grammar);
      return new LocalSttStream(pool, grammar, o, preRoll, () => open--);
    },
  };
}

class LocalSttStream implements SttStream {
  private readonly ring: Int16Array;
  private ringPos = 0;
  private ringFull = false;
  private readonly buf = new Float32Array(MAX_UTTERANCE_SAMPLES);
  private len = 0;
  private fed = 0;
  private state: 'idle' | 'open' | 'closed' = 'idle';
  private dec: Pooled | null = null;
  /** The decoder of this call's previous utterance: its live CMN has adapted to this line. */
  private lastDecoder: Pooled | null = null;
  private cancelWait: (() => void) | null = null;
  private capped = false;
  private ended = false;
  private finalSent = false;
  private nextPartialAt = 0;
  private lastPartial = '';
  private seed = 0x9e3779b9;
  private readonly onAbort = () => this.close();

  constructor(private readonly pool: DecoderPool, private readonly grammar: string, private readonly o: SttOptions,
    preRoll: number, private readonly onClose: () => void) {
    this.ring = new Int16Array(preRoll);
    if (o.signal.aborted) this.close();
    else o.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  write(pcm: Int16Array): void {
    if (this.state === 'idle') {
      for (let i = 0; i < pcm.length; i++) {
        this.ring[this.ringPos++] = pcm[i]!;
        if (this.ringPos === this.ring.length) {
          this.ringPos = 0;
          this.ringFull = true;
        }
      }
    } else if (this.state === 'open' && !this.capped) {
      this.append(pcm, 0, pcm.length);
      this.capped = this.len >= this.buf.length;
      this.step();
    }
  }

  speechStarted(): void {
    if (this.state !== 'idle') return;
    this.state = 'open';
    this.len = this.fed = 0;
    this.capped = this.ended = this.finalSent = false;
    this.lastPartial = '';
    if (this.ringFull) this.append(this.ring, this.ringPos, this.ring.length);
    this.append(this.ring, 0, this.ringPos);
    this.ringPos = 0;
    this.ringFull = false;
    this.nextPartialAt = this.len + PARTIAL_EVERY_SAMPLES;
    this.guard(() => {
      const d = this.pool.acquire(this.grammar, this.lastDecoder);
      if (d) this.attach(d);
      else this.cancelWait = this.pool.wait((w) => this.guard(() => this.attach(w), w));
    });
  }

  speechEnded(): void {
    if (this.state === 'idle') this.o.onFinal('', null); // nothing open: decode nothing
    if (this.state !== 'open') return;
    this.ended = true;
    if (this.finalSent) this.reset();
    else this.step();
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.cancelWait?.();
    this.detach();
    this.o.signal.removeEventListener('abort', this.onAbort);
    this.onClose();
  }

  private attach(d: Pooled): void {
    this.cancelWait = null;
    if (this.state !== 'open' || this.finalSent) return this.pool.release(d);
    this.dec = this.lastDecoder = d;
    setGrammar(d, this.grammar);
    d.decoder.start();
    this.step();
  }

  /** Feeds new audio, emits a partial every 500 ms and the final once the segment is over. */
  private step(): void {
    const d = this.dec;
    if (!d) return;
    this.guard(() => {
      if (this.fed < this.len) d.decoder.process_audio(this.buf.subarray(this.fed, this.len), false, false);
      this.fed = this.len;
      if (this.ended || this.capped) return this.finish(d);
      if (this.len < this.nextPartialAt) return;
      this.nextPartialAt = this.len + PARTIAL_EVERY_SAMPLES;
      const text = d.decoder.get_text().trim();
      if (text && text !== this.lastPartial) this.o.onPartial((this.lastPartial = text));
    }, d);
  }

  private finish(d: Pooled): void {
    d.decoder.stop();
    let text = d.decoder.get_text().trim();
    if (!text && this.len > RATE / 2) {
      // No path reached the end of the grammar: live CMN (the mean carried over from earlier
      // utterances) can be far off for a new line. Decode again in batch, with this utterance's
      // own mean: rare, and ~30–100 ms when it happens.
      d.decoder.start();
      d.decoder.process_audio(this.buf.subarray(0, this.len), false, true);
      d.decoder.stop();
      text = d.decoder.get_text().trim();
    }
    let confidence: number | null = null;
    if (text) {
      const words = (d.decoder.get_alignment().w ?? []).filter((w) => !/^(<|\(NULL\)|\[)/.test(w.t));
      if (words.length) confidence = Math.round((words.reduce((s, w) => s + w.p, 0) / words.length) * 1000) / 1000;
    }
    this.dec = null;
    this.finalSent = true;
    if (this.ended) this.reset();
    this.o.onFinal(text, confidence);
    this.pool.release(d); // after our final, so a waiting stream's final cannot overtake it
  }

  private reset(): void {
    this.state = 'idle';
    this.len = this.fed = 0;
  }

  /** Abandons the utterance in progress and gives the decoder back. */
  private detach(): void {
    const d = this.dec;
    this.dec = null;
    if (!d) return;
    try {
      d.decoder.stop();
    } catch {
      // nothing to keep; the decoder restarts cleanly on its next start()
    }
    this.pool.release(d);
  }

  private guard(fn: () => void, d?: Pooled): void {
    try {
      fn();
    } catch (e) {
      if (d && this.dec !== d) this.pool.release(d);
      this.close();
      this.o.onError(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Appends PCM16 as dithered float samples (xorshift32: deterministic, allocation-free). */
  private append(src: Int16Array, from: number, to: number): void {
    let s = this.seed;
    const n = Math.min(to - from, this.buf.length - this.len);
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      const a = (s >>> 0) / 4294967296;
      s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
      this.buf[this.len++] = (src[from + i]! + (a - (s >>> 0) / 4294967296) * DITHER_LSB) / 32768;
    }
    this.seed = s;
  }
}
