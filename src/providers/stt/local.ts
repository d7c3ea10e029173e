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
 * Engine (./local-decoder.ts): soundswallower runs in the speech workers
 * (src/providers/speech/pool.ts), never on the event loop; each call's stream is pinned to one
 * worker for its life. This side keeps the pre-roll and sends audio only while the caller speaks:
 * at speechStarted the pre-roll (300 ms: VAD back-dating + ~200 ms), then 200 ms batches as
 * transferred buffers (frames are copied: the call's frame buffer is reused), the last partial
 * batch at speechEnded. Partials (every 500 ms of speech) and the final come back as messages: the
 * final of an utterance typically a few ms after speechEnded, later when the worker is busy.
 * Finals arrive in utterance order. Utterances are capped at 15 s: the final comes at the cap, and
 * the speechEnded that follows emits nothing. A speechEnded with no open segment emits an empty
 * final at once. A worker that fails or stops ends the stream with onError.
 */
import { speechPool, type RecognizerSession, type SpeechPool } from '../speech/pool.js';
import type { SttOptions, SttProvider, SttStream } from './types.js';

export { buildGrammar, sttVocabularyFor } from './local-grammar.js';

const RATE = 8000;
/** Audio sent to the worker at once while the caller speaks: 200 ms. */
const BATCH_SAMPLES = RATE / 5;

export interface LocalSttOptions {
  /** Audio kept from before speechStarted (VAD back-dating + margin). Default 300. */
  preRollMs?: number;
  /** Recognizer decoders per speech worker when this call starts the pool (~24 MB each). Default 4. */
  maxDecoders?: number;
  /** Where dropped out-of-dictionary words are reported; default process.emitWarning. */
  onWarning?: (message: string) => void;
  /** The speech workers; default the process's pool (speechPool()). */
  pool?: SpeechPool;
}

/** Creates the provider; resolves once every speech worker has loaded the recognizer. */
export async function createLocalStt(options: LocalSttOptions = {}): Promise<SttProvider> {
  const pool = options.pool ?? speechPool(options.maxDecoders === undefined ? {} : { maxDecoders: options.maxDecoders });
  if (options.onWarning) pool.onWarning(options.onWarning);
  await pool.load('stt');
  const preRoll = Math.max(1, Math.round(((options.preRollMs ?? 300) * RATE) / 1000));
  return {
    name: 'local',
    open: (o: SttOptions): SttStream => new LocalSttStream(pool, o, preRoll),
  };
}

class LocalSttStream implements SttStream {
  private readonly ring: Int16Array;
  private ringPos = 0;
  private ringFull = false;
  private batch = new Int16Array(BATCH_SAMPLES);
  private batchLen = 0;
  private state: 'idle' | 'open' | 'closed' = 'idle';
  /** The current (or last) utterance. */
  private utt = 0;
  /** The open utterance already has its final (the 15 s cap): the rest of it is not sent. */
  private capped = false;
  private readonly session: RecognizerSession;
  private readonly onAbort = () => this.close();

  constructor(pool: SpeechPool, private readonly o: SttOptions, preRoll: number) {
    this.ring = new Int16Array(preRoll);
    this.session = pool.openRecognizer(o.vocabulary, {
      partial: (utt, text) => {
        if (this.state === 'open' && utt === this.utt) o.onPartial(text);
      },
      final: (utt, text, confidence) => {
        if (this.state === 'closed') return;
        if (this.state === 'open' && utt === this.utt) this.capped = true;
        o.onFinal(text, confidence);
      },
      error: (e) => {
        if (this.state === 'closed') return;
        this.close();
        o.onError(e);
      },
    });
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
      for (let at = 0; at < pcm.length;) {
        const n = Math.min(pcm.length - at, BATCH_SAMPLES - this.batchLen);
        this.batch.set(pcm.subarray(at, at + n), this.batchLen);
        this.batchLen += n;
        at += n;
        if (this.batchLen === BATCH_SAMPLES) this.flush();
      }
    }
  }

  speechStarted(): void {
    if (this.state !== 'idle') return;
    this.state = 'open';
    this.capped = false;
    const head = this.ringFull ? this.ring.subarray(this.ringPos) : new Int16Array(0);
    const preRoll = new Int16Array(head.length + this.ringPos);
    preRoll.set(head);
    preRoll.set(this.ring.subarray(0, this.ringPos), head.length);
    this.ringPos = 0;
    this.ringFull = false;
    this.session.start(++this.utt, preRoll);
  }

  speechEnded(): void {
    if (this.state === 'idle') this.o.onFinal('', null); // nothing open: decode nothing
    if (this.state !== 'open') return;
    this.flush();
    this.state = 'idle';
    this.session.end(this.utt);
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.session.close();
    this.o.signal.removeEventListener('abort', this.onAbort);
  }

  /** Sends the batch so far (its buffer is transferred) and starts a new one. */
  private flush(): void {
    if (this.batchLen === 0) return;
    const full = this.batchLen === BATCH_SAMPLES ? this.batch : this.batch.slice(0, this.batchLen);
    this.session.audio(this.utt, full);
    if (full === this.batch) this.batch = new Int16Array(BATCH_SAMPLES);
    this.batchLen = 0;
  }
}
