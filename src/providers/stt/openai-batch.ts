/**
 * OpenAI speech to text, one request per utterance: the utterance (μ-law, with pre-roll) is wrapped
 * as an 8 kHz mono PCM16 WAV and sent to `POST /v1/audio/transcriptions` through the openai SDK
 * (`audio.transcriptions.create`, `toFile`), as docs/design/stack.md §3.2 does: PCM WAV is the safe upload.
 * No partials; the final arrives one round trip after speechEnded. Finals keep speechEnded order
 * even when two requests overlap.
 *
 * Verified against openai 6.49.0 in node_modules: `TranscriptionCreateParams` takes `file`, `model`,
 * `language` (ISO-639-1, so `en-US` is sent as `en`), `prompt` (free text for gpt-4o(-mini)-transcribe,
 * keywords for whisper-1) and `response_format: 'json'` → `{ text }`. SDK errors: `APIError.status`
 * (401/403/429/5xx), `APIConnectionTimeoutError` (its own `timeout`), `APIConnectionError`,
 * `APIUserAbortError` (our signal).
 *
 * Failures become ProviderError('openai', …). Their messages name the status and OpenAI's error
 * code only: OpenAI's 401 message quotes (part of) the key, so no server text or SDK error is kept.
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError, toFile } from 'openai';
import wavefile from 'wavefile';
import { decodeUlaw } from '../../audio/ulaw.js';
import { ProviderError, failureForStatus } from '../errors.js';
import type { SttOptions, SttProvider, SttStream } from './types.js';
import { MIN_SPEECH_MS, UtteranceBuffer } from './utterance-buffer.js';
import { isoLanguage, vocabularyPrompt } from './vocabulary.js';

export { MAX_UTTERANCE_MS, MIN_SPEECH_MS, UtteranceBuffer } from './utterance-buffer.js';
export { isoLanguage, vocabularyPrompt } from './vocabulary.js';

const RATE = 8000;
const MS = RATE / 1000;
export const OPENAI_STT_DEFAULT_MODEL = 'gpt-4o-mini-transcribe';

export interface TranscribeOptions {
  model: string;
  /** ISO-639-1 code or a tag such as `en-US` (cut to `en`); empty leaves it to the model. */
  language: string;
  prompt: string;
  signal: AbortSignal;
  /**
   * Deadline for the whole request, body included. The SDK's own `timeout` stops at the response
   * headers: a body that stalls after them hangs (seen against the fake's stall fault).
   */
  timeoutMs?: number;
}

/** 8 kHz mono 16-bit PCM WAV of a μ-law utterance. */
export function ulawToWav(ulaw: Uint8Array): Uint8Array {
  const wav = new wavefile.WaveFile();
  wav.fromScratch(1, RATE, '16', decodeUlaw(ulaw));
  return wav.toBuffer();
}

/** Translates an openai SDK error into a ProviderError; rethrows our own abort unchanged. */
export function openAiFailure(e: unknown, what: string): Error {
  if (e instanceof ProviderError) return e;
  if (e instanceof APIUserAbortError) return e;
  if (e instanceof APIConnectionTimeoutError) return new ProviderError('openai', 'timeout', `${what}: request timed out`);
  if (e instanceof APIConnectionError) return new ProviderError('openai', 'network', `${what}: connection failed`);
  if (e instanceof APIError && typeof e.status === 'number') {
    const code = typeof e.code === 'string' ? ` (${e.code})` : '';
    return new ProviderError('openai', failureForStatus(e.status), `${what}: HTTP ${e.status}${code}`, e.status);
  }
  // A response the SDK could not read (broken JSON) or a missing `text`.
  return new ProviderError('openai', 'protocol', `${what}: unreadable response`);
}

/** Transcribes one μ-law utterance; throws ProviderError (or the SDK's abort error when `signal` fired). */
export async function transcribeUlaw(client: OpenAI, ulaw: Uint8Array, opts: TranscribeOptions): Promise<string> {
  const deadline = new AbortController();
  const timer = opts.timeoutMs ? setTimeout(() => deadline.abort(), opts.timeoutMs) : null;
  try {
    const file = await toFile(ulawToWav(ulaw), 'utterance.wav', { type: 'audio/wav' });
    const language = isoLanguage(opts.language);
    const r = await client.audio.transcriptions.create(
      { file, model: opts.model, response_format: 'json', ...(language ? { language } : {}), ...(opts.prompt ? { prompt: opts.prompt } : {}) },
      { signal: AbortSignal.any([opts.signal, deadline.signal]) },
    );
    if (typeof r?.text !== 'string') throw new TypeError('no text');
    return r.text.trim();
  } catch (e) {
    if (deadline.signal.aborted && !opts.signal.aborted) throw new ProviderError('openai', 'timeout', `OpenAI transcription: no answer within ${opts.timeoutMs} ms`);
    throw openAiFailure(e, 'OpenAI transcription');
  } finally {
    if (timer) clearTimeout(timer);
  }
}

export interface OpenAiBatchSttOptions {
  apiKey: string;
  /** API base ending in /v1 (a fake in tests); null/absent: the SDK's default. */
  baseUrl?: string | null;
  model?: string;
  /** Audio kept from before speechStarted (VAD back-dating + margin). Default 300. */
  preRollMs?: number;
  /** Per request. Default 10 s (the resilience layer sets the tighter deadline). */
  timeoutMs?: number;
}

export function createOpenAiBatchStt(opts: OpenAiBatchSttOptions): SttProvider {
  // maxRetries 0: the resilience layer retries; the SDK's 2 retries and 600 s would hide outages.
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const client = new OpenAI({ apiKey: opts.apiKey, maxRetries: 0, timeout: timeoutMs, ...(opts.baseUrl ? { baseURL: opts.baseUrl } : {}) });
  const model = opts.model ?? OPENAI_STT_DEFAULT_MODEL;
  const preRoll = Math.max(1, Math.round((opts.preRollMs ?? 300) * MS));
  return {
    name: 'openai-batch',
    open: (o) => new BatchStream(client, { model, timeoutMs }, o, preRoll),
  };
}

class BatchStream implements SttStream {
  private readonly audio: UtteranceBuffer;
  private state: 'idle' | 'open' | 'closed' = 'idle';
  /** Finals are delivered in speechEnded order: each waits for the one before. */
  private tail: Promise<void> = Promise.resolve();
  private readonly ac = new AbortController();
  private readonly prompt: string;
  private readonly onAbort = () => this.close();

  constructor(private readonly client: OpenAI, private readonly req: { model: string; timeoutMs: number }, private readonly o: SttOptions,
    preRoll: number) {
    this.audio = new UtteranceBuffer(preRoll);
    this.prompt = vocabularyPrompt(o.vocabulary);
    if (o.signal.aborted) this.close();
    else o.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  write(pcm: Int16Array): void {
    if (this.state === 'idle') this.audio.remember(pcm);
    else if (this.state === 'open') this.audio.add(pcm);
  }

  speechStarted(): void {
    if (this.state !== 'idle') return;
    this.state = 'open';
    this.audio.start();
  }

  speechEnded(): void {
    if (this.state === 'closed') return;
    const open = this.state === 'open';
    this.state = 'idle';
    const speechMs = open ? this.audio.speech / MS : 0;
    const ulaw = this.audio.take();
    if (speechMs < MIN_SPEECH_MS) return this.deliver(Promise.resolve(''));
    this.deliver(transcribeUlaw(this.client, ulaw, { ...this.req, language: this.o.language, prompt: this.prompt, signal: this.ac.signal }));
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.o.signal.removeEventListener('abort', this.onAbort);
    this.ac.abort();
  }

  private deliver(text: Promise<string>): void {
    text.catch(() => undefined); // handled in order below; keeps a rejection from going unhandled meanwhile
    this.tail = this.tail.then(() => text).then(
      (t) => { if (this.state !== 'closed') this.o.onFinal(t, null); },
      (e: unknown) => {
        if (this.state === 'closed') return;
        this.close();
        this.o.onError(e instanceof Error ? e : new Error(String(e)));
      },
    );
  }
}
