/**
 * Offline speech to text: soundswallower (PocketSphinx in WASM), its bundled 8 kHz en-US model and
 * a JSGF phrase grammar for a vet clinic's front desk (stack.md §3.5).
 *
 * Understands one short utterance of the grammar below: an optional lead (yes/no/okay/hi/hello),
 * a core phrase, then optional details ("for bella", "tomorrow morning") and "please"/"thank you".
 * Core phrases: yes/no variants; menu words (one, two, zero, nine, star, front desk, operator,
 * staff, a person, a human, "talk to someone"); booking ("i want to book an appointment", "see the
 * vet", "a checkup", "vaccinations"); refills ("i need a refill"); hours ("what are your hours",
 * "when are you open"); address ("where are you located"); services; goodbyes and thanks;
 * backchannels in the dictionary (mhm, uh-huh, okay, right, i see); emergencies as subject +
 * condition ("my dog is bleeding", "my cat ate poison", "he can't breathe", "she is having a
 * seizure") or "it's (not) an emergency"; ~40 common pet/owner first names, alone or after "my
 * name is" / "his name is"; days, parts of day and clock times ("monday afternoon", "at ten",
 * "friday at three thirty p.m."); and the call's `vocabulary` (sttVocabularyFor: staff names,
 * services, emergency keywords) where its words are in the dictionary.
 *
 * Cannot understand anything else. It is a closed grammar, not dictation: other speech is forced
 * onto the nearest phrase ("my rabbit has a sore ear" → "my rabbit is sick") with a confidence
 * that barely differs. Unlisted names, drugs, phone numbers, dates ("the fifteenth"), spelling and
 * free-form reasons are out of reach; out-of-dictionary words (mm-hmm, xylitol, heartworm, parvo)
 * are dropped with one warning. Short words get swapped (yes/yeah/yep, no/nope, he/it).
 *
 * Engine: the WASM module loads once per process. This grammar costs ~40–110 ms of CPU per second
 * of speech (a 6-phrase grammar ~30 ms), so one decoder shared serially would block the event
 * loop 100–300 ms at each speechEnded. Decoders (~25–30 MB each) come from a pool instead (default
 * 4, grown in the background as calls open), checked out per utterance: frames are decoded as they
 * arrive (~1–2 ms per 20 ms frame), a partial is the running hypothesis read every 500 ms of
 * audio, and the final costs ~4 ms. With every decoder busy, the stream buffers and catches up.
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
import type { Tenant } from '../../config/tenant.schema.js';
import type { SttOptions, SttProvider, SttStream } from './types.js';

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

  /** A free decoder with `grammar` set, or null; prefers one that already has it. */
  acquire(grammar: string): Pooled | null {
    this.prepare(grammar);
    const i = this.free.findIndex((d) => d.grammar === grammar);
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
      const d = this.pool.acquire(this.grammar);
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
    this.detach(true);
    this.o.signal.removeEventListener('abort', this.onAbort);
    this.onClose();
  }

  private attach(d: Pooled): void {
    this.cancelWait = null;
    if (this.state !== 'open' || this.finalSent) return this.pool.release(d);
    this.dec = d;
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
    const text = d.decoder.get_text().trim();
    let confidence: number | null = null;
    if (text) {
      const words = (d.decoder.get_alignment().w ?? []).filter((w) => !/^(<|\(NULL\)|\[)/.test(w.t));
      if (words.length) confidence = Math.round((words.reduce((s, w) => s + w.p, 0) / words.length) * 1000) / 1000;
    }
    this.detach(false);
    this.finalSent = true;
    if (this.ended) this.reset();
    this.o.onFinal(text, confidence);
  }

  private reset(): void {
    this.state = 'idle';
    this.len = this.fed = 0;
  }

  private detach(stop: boolean): void {
    const d = this.dec;
    this.dec = null;
    if (!d) return;
    if (stop) {
      try {
        d.decoder.stop();
      } catch {
        // the utterance is being abandoned; the decoder restarts cleanly on its next start()
      }
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

/** Words and phrases a tenant adds to the grammar: staff names, services, emergency keywords. */
export function sttVocabularyFor(tenant: Tenant): string[] {
  const titles = /^(dr|doctor|dvm|vmd|mr|mrs|ms|miss|prof)$/i;
  const out = new Set<string>([...tenant.emergency.keywords, ...tenant.info.services]);
  for (const person of tenant.info.staff) {
    const words = person.replace(/\(.*?\)/g, ' ').split(/[\s,.]+/).filter((w) => w && !titles.test(w));
    if (words[0]) out.add(words[0]);
    if (/\b(dr|doctor)\b/i.test(person) && words.length > 1) out.add(`doctor ${words[words.length - 1]!}`);
  }
  return [...out];
}

// Grammar. Each rule is a list of JSGF alternatives; an alternative with a plain word missing from
// the dictionary is dropped (and reported). Factored on shared prefixes, because decoding cost
// grows with the number of words that can start at any point (the flat list of full sentences
// the brief sketched, `<phrase> [<phrase>]`, decoded 5× slower and inserted a second phrase
// into trailing noise: "front desk ten").
const NAMES = 'bella max luna charlie lucy cooper bailey daisy sadie molly buddy lola stella tucker milo rocky bear ' +
  'duke oliver leo jack toby maggie penny ruby oscar tiger shadow pepper coco simba lucky sarah john mary emily david anna';
const RULES: Record<string, readonly string[]> = {
  lead: ['yes', 'no', 'okay', 'hi', 'hello'],
  polite: ['please', 'thank you', 'thanks'],
  yesno: ['yes [please]', 'yeah', 'yep', 'sure', 'correct', 'no [thanks | thank you]', 'nope', 'not really',
    "that's (right | correct | wrong)"],
  menu: ['one', 'two', 'zero', 'nine', 'star', '[the] front desk', 'operator', 'staff', '[a] [real] person', 'a human',
    'someone', '[the] receptionist'],
  ask: ['[i want to | can i | let me] (talk | speak) to', '(connect | transfer) me to'],
  book: ["[(i want | i need | i'd like) to] (book | make | schedule) an appointment", 'i need an appointment',
    '[an] appointment', '[i need to] see (the | a) vet', 'a checkup', 'vaccinations', 'shots',
    '(reschedule | cancel) my appointment'],
  refill: ['i need a refill', '[a] prescription [refill]', 'refill [a prescription]', '[i need more] medication'],
  hours: ['what are your hours', '[what are your] opening hours', 'hours', 'when are you open',
    'are you open [today | tomorrow]', 'what time do you (open | close)'],
  address: ['where are you [located]', 'what is your address', "what's your address", 'address', 'location',
    'directions', 'how do i get there'],
  services: ['what services do you offer', 'what do you offer', 'services', 'do you do (surgery | dental)',
    'grooming', 'boarding', 'dental cleaning', 'spay', 'neuter'],
  bye: ['[bye] bye', 'goodbye', 'thanks', 'thank you', "that's all", "that's it", 'nothing else', 'have a nice day'],
  back: ['mm-hmm', 'mhm', 'uh-huh', 'okay', 'right', 'alright', 'i see', 'got it'],
  emerg: ['<subject> <condition>', "[it's | this is | it is] [not] an emergency", 'emergency', "[it's] urgent"],
  subject: ['(my | the) <species>', 'he', 'she', 'it', 'my pet'],
  species: ['dog', 'cat', 'puppy', 'kitten', 'rabbit', 'bunny', 'bird', 'parrot', 'hamster', 'guinea pig', 'ferret',
    'horse', 'lizard', 'snake', 'turtle'],
  condition: ['is (bleeding | choking | unconscious | dying | vomiting | limping | sick | (not breathing) | ' +
    '(having a seizure) | (in pain))', 'ate ([rat] poison | chocolate | antifreeze | grapes)', "can't breathe",
    'had a seizure', 'collapsed', 'was hit by a car', "won't eat"],
  names: ["((my name | (his | her | my dog's | my cat's) name) is | this is | it's) <name>", '<name>'],
  name: NAMES.split(' '),
  when: ['<day> [<part>] [<clock>]', '<part> [<clock>]', '<clock>'],
  day: ['today', 'tomorrow', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday',
    'this week', 'next week', 'as soon as possible'],
  part: ['[in the] (morning | afternoon | evening)', '[at] noon'],
  clock: ["at <hour> [<min>] [o'clock | a.m. | p.m.]", "<hour> [<min>] (o'clock | a.m. | p.m.)"],
  hour: 'one two three four five six seven eight nine ten eleven twelve'.split(' '),
  min: ['fifteen', 'thirty', 'forty five'],
};
const TOP = `public <utt> = ([<lead>] (<book> | <refill>) [<when> | (for <name>)] [<polite>])
  | (<yesno> [<polite>]) | ([<lead>] (<when> | <emerg> | <hours> | <address> | <services>) [<polite>])
  | (<names> [<polite>]) | ([<ask>] (<menu> | <vocab>) [<polite>]) | <bye> | <back>;`;

const normalise = (p: string) => p.toLowerCase().replace(/[^a-z'. ]+/g, ' ').replace(/\s+/g, ' ').trim();

/** JSGF for the clinic grammar plus `vocabulary`; alternatives with out-of-dictionary words are dropped. */
export function buildGrammar(vocabulary: readonly string[], inDict: (word: string) => boolean): { jsgf: string; dropped: string[] } {
  const dropped = new Set<string>();
  const keep = (alt: string) => {
    const missing = alt.replace(/<\w+>|[[\]()|]/g, ' ').split(' ').filter((w) => w && !inDict(w));
    missing.forEach((w) => dropped.add(w));
    return missing.length === 0;
  };
  const vocab = [...new Set(vocabulary.map(normalise))].filter((p) => p && keep(p));
  const rules = { ...RULES, vocab: vocab.length ? vocab : ['<VOID>'] };
  const lines = Object.entries(rules).map(([name, alts]) => {
    const ok = alts.filter(keep);
    return `<${name}> = ${ok.length ? ok.map((a) => `(${a})`).join(' | ') : '<VOID>'};`;
  });
  return { jsgf: ['#JSGF V1.0;', 'grammar vetline;', TOP, ...lines, ''].join('\n'), dropped: [...dropped] };
}
