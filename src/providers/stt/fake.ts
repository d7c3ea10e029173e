/**
 * Scriptable, observable STT for tests and the `fake` provider name. Each speechEnded consumes the
 * next scripted utterance (shared FIFO across the provider's streams) and emits its partials, then
 * its final; with `partialsAt: 'start'` the partials come at speechStarted instead, the way
 * interim results arrive while the caller still talks. An `{ error }` entry fails the stream.
 * `schedule` defers delivery (default: synchronous). Streams record frames, samples, starts,
 * ends and closes; emitPartial/emitFinal/emitError drive a stream by hand. Only the most recent
 * `keep` streams stay listed: a stream holds its call's callbacks, and one fake serves every call
 * of an engine started with `STT_PROVIDER=fake` (the load bench).
 */
import type { SttOptions, SttProvider, SttStream } from './types.js';

export type FakeSttUtterance =
  | string
  | { partials?: readonly string[]; final: string; confidence?: number | null }
  | { error: Error };

export interface FakeSttOptions {
  script?: readonly FakeSttUtterance[];
  partialsAt?: 'start' | 'end';
  schedule?: (deliver: () => void) => void;
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
  private readonly onAbort = () => this.close();

  constructor(readonly options: SttOptions, private readonly provider: FakeSttProvider) {
    if (options.signal.aborted) this.closed = true;
    else options.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  write(pcm: Int16Array): void {
    if (this.closed) return;
    this.frames++;
    this.samples += pcm.length;
  }

  speechStarted(): void {
    if (this.closed) return;
    this.starts++;
    if (this.provider.partialsAt !== 'start') return;
    const u = (this.current = this.provider.next());
    if (u && typeof u !== 'string' && 'final' in u) for (const p of u.partials ?? []) this.emitPartial(p);
  }

  speechEnded(): void {
    if (this.closed) return;
    this.ends++;
    const u = this.current ?? this.provider.next();
    const partialsDone = this.current !== null;
    this.current = null;
    if (u === null) return this.emitFinal('', null);
    if (typeof u === 'string') return this.emitFinal(u, 0.9);
    if ('error' in u) return this.emitError(u.error);
    if (!partialsDone) for (const p of u.partials ?? []) this.emitPartial(p);
    this.emitFinal(u.final, u.confidence === undefined ? 0.9 : u.confidence);
  }

  close(): void {
    this.closed = true;
    this.options.signal.removeEventListener('abort', this.onAbort);
  }

  emitPartial(text: string): void {
    this.provider.schedule(() => !this.closed && this.options.onPartial(text));
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
  readonly partialsAt: 'start' | 'end';
  readonly schedule: (deliver: () => void) => void;
  private readonly script: FakeSttUtterance[];
  private readonly keep: number;

  constructor(options: FakeSttOptions = {}) {
    this.script = [...(options.script ?? [])];
    this.partialsAt = options.partialsAt ?? 'end';
    this.schedule = options.schedule ?? ((deliver) => deliver());
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

export const createFakeStt = (options: FakeSttOptions = {}) => new FakeSttProvider(options);
