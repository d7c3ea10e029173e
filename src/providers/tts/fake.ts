/**
 * Scriptable, observable TTS for tests and the `fake` provider name. Audio is deterministic
 * μ-law 8 kHz: a 400 Hz tone (audible, and loud enough for an energy VAD to hear as echo) or
 * 0xFF silence, sized by text length at `charsPerSecond` (default 15, about speaking rate),
 * rounded up to whole 20 ms frames, yielded in `chunkMs` chunks (default 200). `delay` is awaited
 * before each chunk (inject a virtual clock); `fail` scripts errors. Calls are recorded: the most
 * recent `keep`, since one fake serves every call of an engine started with `TTS_PROVIDER=fake`.
 */
import alawmulaw from 'alawmulaw';
import type { TtsOptions, TtsProvider } from './types.js';

export interface FakeTtsOptions {
  charsPerSecond?: number;
  chunkMs?: number;
  fill?: 'tone' | 'silence';
  delay?: (chunkIndex: number, signal: AbortSignal) => Promise<void>;
  fail?: (text: string) => Error | null;
  /** Syntheses kept in `calls` (most recent). Default 100. */
  keep?: number;
}

export interface FakeTtsCall {
  text: string;
  voice: string;
  language: string;
  chunks: number;
  bytes: number;
  aborted: boolean;
  done: boolean;
}

const FRAME = 160;
/** 20 samples = exactly one period of 400 Hz at 8 kHz, amplitude 8000 (about -12 dBFS). */
const TONE_PERIOD = alawmulaw.mulaw.encode(Int16Array.from({ length: 20 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * i) / 20))));

/** Bytes of audio the fake produces for `text`. */
export function fakeTtsBytes(text: string, charsPerSecond = 15): number {
  if (!text.trim()) return 0;
  return Math.max(1, Math.ceil(((text.length / charsPerSecond) * 8000) / FRAME)) * FRAME;
}

export class FakeTtsProvider implements TtsProvider {
  readonly name = 'fake';
  readonly calls: FakeTtsCall[] = [];

  constructor(private readonly options: FakeTtsOptions = {}) {}

  async *synthesize(text: string, o: TtsOptions): AsyncGenerator<Uint8Array> {
    const call: FakeTtsCall = { text, voice: o.voice, language: o.language, chunks: 0, bytes: 0, aborted: false, done: false };
    this.calls.push(call);
    if (this.calls.length > (this.options.keep ?? 100)) this.calls.shift();
    const error = this.options.fail?.(text);
    if (error) throw error;
    const total = fakeTtsBytes(text, this.options.charsPerSecond);
    const chunk = Math.max(FRAME, Math.round(((this.options.chunkMs ?? 200) * 8) / FRAME) * FRAME);
    for (let at = 0; at < total; at += chunk) {
      if (this.options.delay) await this.options.delay(call.chunks, o.signal);
      if (o.signal.aborted) {
        call.aborted = true;
        return;
      }
      const bytes = new Uint8Array(Math.min(chunk, total - at));
      if (this.options.fill === 'silence') bytes.fill(0xff);
      else for (let i = 0; i < bytes.length; i++) bytes[i] = TONE_PERIOD[(at + i) % 20]!;
      call.chunks++;
      call.bytes += bytes.length;
      yield bytes;
    }
    call.done = !o.signal.aborted;
    call.aborted = o.signal.aborted;
  }

  get last(): FakeTtsCall | undefined {
    return this.calls[this.calls.length - 1];
  }
}

export const createFakeTts = (options: FakeTtsOptions = {}) => new FakeTtsProvider(options);
