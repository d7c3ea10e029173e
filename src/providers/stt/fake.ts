/**
 * Scriptable, observable STT for tests and the `fake` provider name. Each utterance consumes the
 * next scripted entry (shared FIFO across the provider's streams) and emits its partials, then its
 * final at speechEnded. An `{ error }` entry fails the stream. When partials come is the vendor's
 * behaviour the fake plays, and it is honest about it:
 * - `partialsAt: 'end'` (default): after speechEnded, just before the final, like a recognizer that
 *   transcribes only committed audio (OpenAI's gpt-4o(-mini)-transcribe in a Realtime session).
 * - `partialsAt: 'spoken'`: while the caller talks, like a streaming recognizer (ElevenLabs Scribe
 *   Realtime): a partial only once the audio for its words has been written since speechStarted
 *   (`wordMs` of audio per word, default 300 ms); partials still due when speechEnded comes are
 *   dropped (the final covers them). A recognizer cannot know words it has not heard.
 * `schedule` defers finals and errors, `partialSchedule` partials (default: `schedule`; default of
 * both: synchronous). Streams record frames, samples, starts, ends and closes;
 * emitPartial/emitFinal/emitError drive a stream by hand. Only the most recent `keep` streams stay
 * listed: a stream holds its call's callbacks, and one fake serves every call of an engine started
 * with `STT_PROVIDER=fake` (the load bench).
 */
import type { SttOptions, SttProvider, SttStream } from './types.js';

export type FakeSttUtterance =
  | string
  | { partials?: readonly string[]; final: string; confidence?: number | null }
  | { error: Error };

export interface FakeSttOptions {
  script?: readonly FakeSttUtterance[];
  partialsAt?: 'spoken' | 'end';
  /** 'spoken': audio per word before its partial is due. Default 300. */
  wordMs?: number;
  schedule?: (deliver: () => void) => void;
  partialSchedule?: (deliver: () => void) => void;
  /** Streams kept in `streams` (most recent). Default 100. */
  keep?: number;
}

export class FakeSttStream implements SttStream {
  frames = 0;
  samples = 0;
  starts = 0;
  ends = 0;
  closed = false;
  readonly finals: string[] = [];
  private current: FakeSttUtterance | null = null;
  /** 'spoken': samples written since speechStarted, and the next scripted partial to send. */
  private spoken = 0;
  private nextPartial = 0;
  private readonly onAbort = () => this.close();

  constructor(readonly options: SttOptions, private readonly provider: FakeSttProvider) {
    if (options.signal.aborted) this.closed = true;
    else options.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  write(pcm: Int16Array): void {
    if (this.closed) return;
    this.frames++;
    this.samples += pcm.length;
    const u = this.current;
    if (!u || typeof u === 'string' || !('final' in u) || !u.partials) return;
    this.spoken += pcm.length;
    while (this.nextPartial < u.partials.length && this.spoken / 8 >= wordCount(u.partials[this.nextPartial]!) * this.provider.wordMs) {
      this.emitPartial(u.partials[this.nextPartial++]!);
    }
  }

  speechStarted(): void {
    if (this.closed) return;
    this.starts++;
    if (this.provider.partialsAt !== 'spoken') return;
    this.current = this.provider.next();
    this.spoken = 0;
    this.nextPartial = 0;
  }

  speechEnded(): void {
    if (this.closed) return;
    this.ends++;
    const u = this.current ?? this.provider.next();
    const streaming = this.current !== null;
    this.current = null;
    if (u === null) return this.emitFinal('', null);
    if (typeof u === 'string') return this.emitFinal(u, 0.9);
    if ('error' in u) return this.emitError(u.error);
    if (!streaming) for (const p of u.partials ?? []) this.emitPartial(p);
    this.emitFinal(u.final, u.confidence === undefined ? 0.9 : u.confidence);
  }

  close(): void {
    this.closed = true;
    this.options.signal.removeEventListener('abort', this.onAbort);
  }

  emitPartial(text: string): void {
    this.provider.partialSchedule(() => !this.closed && this.options.onPartial(text));
  }

  emitFinal(text: string, confidence: number | null): void {
    this.provider.schedule(() => {
      if (this.closed) return;
      this.finals.push(text);
      this.options.onFinal(text, confidence);
    });
  }

  emitError(error: Error): void {
    this.provider.schedule(() => {
      if (this.closed) return;
      this.closed = true;
      this.options.onError(error);
    });
  }
}

export class FakeSttProvider implements SttProvider {
  readonly name = 'fake';
  readonly streams: FakeSttStream[] = [];
  readonly partialsAt: 'spoken' | 'end';
  readonly wordMs: number;
  readonly schedule: (deliver: () => void) => void;
  readonly partialSchedule: (deliver: () => void) => void;
  private readonly script: FakeSttUtterance[];
  private readonly keep: number;

  constructor(options: FakeSttOptions = {}) {
    this.script = [...(options.script ?? [])];
    this.partialsAt = options.partialsAt ?? 'end';
    this.wordMs = options.wordMs ?? 300;
    this.schedule = options.schedule ?? ((deliver) => deliver());
    this.partialSchedule = options.partialSchedule ?? this.schedule;
    this.keep = options.keep ?? 100;
  }

  /** Appends utterances to the script. */
  enqueue(...utterances: FakeSttUtterance[]): void {
    this.script.push(...utterances);
  }

  /** The next scripted utterance, or null when the script is exhausted (an empty final). */
  next(): FakeSttUtterance | null {
    return this.script.shift() ?? null;
  }

  open(options: SttOptions): FakeSttStream {
    const stream = new FakeSttStream(options, this);
    this.streams.push(stream);
    if (this.streams.length > this.keep) this.streams.shift();
    return stream;
  }

  get last(): FakeSttStream | undefined {
    return this.streams[this.streams.length - 1];
  }
}

const wordCount = (text: string) => text.split(/\s+/).filter(Boolean).length;

export const createFakeStt = (options: FakeSttOptions = {}) => new FakeSttProvider(options);
