/**
 * ElevenLabs Scribe Realtime speech to text: one WebSocket per call, partial transcripts while the
 * caller talks, a committed transcript per utterance (docs/providers.md, "ElevenLabs Scribe").
 *
 * Protocol, as @elevenlabs/elevenlabs-js 2.73.0 speaks it (wrapper/realtime/scribe.js and
 * connection.js) and the API reference describes it:
 * - `GET /v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=ulaw_8000&
 *   commit_strategy=manual&language_code=en&keyterms=…` upgraded to a WebSocket on the API origin
 *   (https → wss), the key in the `xi-api-key` header (never in the URL or a message).
 * - Client: `{ message_type: 'input_audio_chunk', audio_base_64, commit, sample_rate }`; a commit is
 *   a chunk with `commit: true` (the SDK sends it with empty audio). No other client message exists.
 * - Server: `session_started { session_id, config }` (the effective audio_format, commit_strategy,
 *   …), `partial_transcript { text }` for the uncommitted audio while it arrives (the whole
 *   segment so far, not a delta), `committed_transcript { text }` after each commit (also
 *   `…_with_timestamps` / `…_entities` / `edited_transcript`, ignored here), and typed errors
 *   (`auth_error`, `quota_exceeded`, `rate_limited`, `commit_throttled`, `input_error`,
 *   `insufficient_audio_activity`, … each `{ error: string }`), sent before the server closes.
 * - The server closes a session that receives no audio for about 10 s (LiveKit's integration
 *   measured it), so a quiet stream sends 100 ms of μ-law silence every `keepAliveMs`.
 * - The SDK's connection is not used: its message listener runs `JSON.parse` unguarded, so one
 *   malformed frame throws out of the socket and ends the process (tried against a local server);
 *   its `send` throws before the socket opens, and a refused upgrade surfaces only as error text.
 *   Its URL builder does reach a plain ws:// origin. `ws` is used directly, as for OpenAI.
 *
 * Per call: the socket opens at open(), when the call starts (a bad key fails before the caller
 * speaks). Audio goes out from speechStarted (with 300 ms of pre-roll) to speechEnded in 40 ms
 * chunks (CHUNK_BYTES); speechEnded commits. Committed transcripts come back in commit order, one final each.
 * Partials are passed on only while an utterance is open or awaiting its transcript, so nothing
 * heard outside the caller's speech (echo of our own voice) can reach the emergency check.
 * Failures (refused upgrade by status, socket error/close, an error message, an unreadable frame,
 * no committed transcript within `finalTimeoutMs`) → onError(ProviderError) once, then nothing.
 */
import WebSocket from 'ws';
import type { RawData } from 'ws';
import { BUDGETS } from '../../../machines/call/budgets.js';
import { ProviderError, failureForStatus, type ProviderFailure } from '../errors.js';
import type { SttOptions, SttProvider, SttStream } from './types.js';
import { UtteranceBuffer } from './utterance-buffer.js';
import { isoLanguage, vocabularyKeyterms } from './vocabulary.js';

const PROVIDER = 'elevenlabs';
export const SCRIBE_DEFAULT_MODEL = 'scribe_v2_realtime';
const DEFAULT_BASE_URL = 'https://api.elevenlabs.io';
const RATE = 8000;
const MS = RATE / 1000;
/**
 * Audio goes out in 40 ms chunks while the caller speaks: 25 messages a second instead of 50, and
 * the last word reaches the recognizer at most 20 ms after the caller said it (100 ms chunks held it
 * up to 80 ms, 40 on average, and its partial, on which the reply is prepared, with it).
 */
const CHUNK_BYTES = 40 * MS;
/** 100 ms of μ-law digital silence (0xFF is +0): the keep-alive. */
const SILENCE = Buffer.alloc(100 * MS, 0xff).toString('base64');

export interface ElevenLabsSttOptions {
  apiKey: string;
  /** API origin (http(s)); the WebSocket URL is derived from it. Default api.elevenlabs.io. */
  baseUrl?: string | null;
  model?: string;
  /** Audio kept from before speechStarted. Default 300. */
  preRollMs?: number;
  /** Opening handshake budget. Default 5000. */
  connectTimeoutMs?: number;
  /** speechEnded → committed transcript budget. Default BUDGETS.sttFinalTimeoutMs. */
  finalTimeoutMs?: number;
  /** Longest stretch without audio sent before a chunk of silence keeps the session alive. Default 5000. */
  keepAliveMs?: number;
  /** Send the call's vocabulary as `keyterms` (ElevenLabs bills 20 % more for it). Default true. */
  keyterms?: boolean;
}

/** `https://api.elevenlabs.io` → `wss://api.elevenlabs.io/v1/speech-to-text/realtime?model_id=…`. */
export function scribeUrl(baseUrl: string | null | undefined, q: { model: string; language: string; keyterms: readonly string[] }): string {
  const base = baseUrl || DEFAULT_BASE_URL;
  const url = new URL('v1/speech-to-text/realtime', base.endsWith('/') ? base : `${base}/`);
  url.protocol = url.protocol === 'http:' || url.protocol === 'ws:' ? 'ws:' : 'wss:';
  url.searchParams.set('model_id', q.model);
  url.searchParams.set('audio_format', 'ulaw_8000');
  url.searchParams.set('commit_strategy', 'manual');
  if (q.language) url.searchParams.set('language_code', q.language);
  for (const term of q.keyterms) url.searchParams.append('keyterms', term);
  return url.toString();
}

export function createElevenLabsStt(opts: ElevenLabsSttOptions): SttProvider {
  const cfg: StreamConfig = {
    baseUrl: opts.baseUrl ?? null,
    apiKey: opts.apiKey,
    model: opts.model ?? SCRIBE_DEFAULT_MODEL,
    preRoll: Math.max(1, Math.round((opts.preRollMs ?? 300) * MS)),
    connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
    finalTimeoutMs: opts.finalTimeoutMs ?? BUDGETS.sttFinalTimeoutMs,
    keepAliveMs: opts.keepAliveMs ?? 5000,
    keyterms: opts.keyterms ?? true,
  };
  return { name: PROVIDER, open: (o) => new ScribeStream(cfg, o) };
}

interface StreamConfig {
  baseUrl: string | null;
  apiKey: string;
  model: string;
  preRoll: number;
  connectTimeoutMs: number;
  finalTimeoutMs: number;
  keepAliveMs: number;
  keyterms: boolean;
}

/** The subset of server messages read here; everything else is ignored. */
interface ServerMessage {
  message_type?: unknown;
  text?: unknown;
  config?: { audio_format?: unknown };
}

/** Error message types and what they mean for the breaker; unknown `*_error` types count as `http`. */
const ERROR_FAILURES: Record<string, ProviderFailure> = {
  error: 'http',
  auth_error: 'auth',
  unaccepted_terms: 'auth',
  quota_exceeded: 'quota',
  rate_limited: 'quota',
  commit_throttled: 'quota',
  queue_overflow: 'quota',
  resource_exhausted: 'quota',
  transcriber_error: 'http',
  input_error: 'http',
  invalid_request: 'http',
  session_time_limit_exceeded: 'http',
  chunk_size_exceeded: 'http',
  insufficient_audio_activity: 'http',
};

class ScribeStream implements SttStream {
  private readonly ws: WebSocket;
  private readonly audio: UtteranceBuffer;
  /** capped: the utterance hit the cap and was committed; speechEnded only closes it. */
  private state: 'idle' | 'open' | 'capped' | 'closed' = 'idle';
  /** Messages written before the socket opened. */
  private outbox: string[] | null = [];
  /** Bytes of the current utterance not yet sent. */
  private unsent = 0;
  /** Commits waiting for their committed transcript, oldest first. */
  private pending = 0;
  private lastPartial = '';
  private finalTimer: NodeJS.Timeout | null = null;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private readonly onAbort = () => this.close();

  constructor(private readonly cfg: StreamConfig, private readonly o: SttOptions) {
    this.audio = new UtteranceBuffer(cfg.preRoll);
    const url = scribeUrl(cfg.baseUrl, { model: cfg.model, language: isoLanguage(o.language), keyterms: cfg.keyterms ? vocabularyKeyterms(o.vocabulary) : [] });
    this.ws = new WebSocket(url, { headers: { 'xi-api-key': cfg.apiKey }, handshakeTimeout: cfg.connectTimeoutMs, perMessageDeflate: false });
    // Listeners attached before anything can fire: an 'error' without one would crash the process.
    this.ws.on('error', (e: Error & { code?: string }) => this.onSocketError(e));
    this.ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      this.fail(failureForStatus(status), `upgrade refused: HTTP ${status}`, status);
    });
    this.ws.on('open', () => this.onOpen());
    this.ws.on('message', (data: RawData, isBinary: boolean) => this.onMessage(data, isBinary));
    this.ws.on('close', (code: number) => this.fail('network', `socket closed (${code})`));
    if (o.signal.aborted) this.close();
    else o.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  write(pcm: Int16Array): void {
    if (this.state === 'idle') this.audio.remember(pcm);
    else if (this.state === 'open') {
      this.unsent += this.audio.add(pcm).length;
      if (this.unsent >= CHUNK_BYTES) this.flush(false);
      if (this.audio.capped) this.commit('capped'); // the final comes at the cap; the speechEnded that follows emits nothing
    }
  }

  speechStarted(): void {
    if (this.state !== 'idle') return;
    this.state = 'open';
    this.unsent = this.audio.start().length;
    this.flush(false); // the pre-roll at once: Scribe hears the onset as early as we do
  }

  speechEnded(): void {
    if (this.state === 'closed') return;
    if (this.state === 'idle') return this.o.onFinal('', null); // nothing open
    if (this.state === 'capped') this.state = 'idle';
    else this.commit('idle');
  }

  close(): void {
    if (this.state === 'closed') return;
    this.release();
    this.ws.close(1000);
  }

  /** Ends the utterance: sends what is left of it with `commit: true`. */
  private commit(next: 'idle' | 'capped'): void {
    this.state = next;
    this.flush(true);
    this.audio.reset();
    this.pending++;
    this.lastPartial = '';
    if (!this.finalTimer) this.armFinalTimer();
  }

  /** Sends the audio not yet sent (with `commit`, even when there is none). */
  private flush(commit: boolean): void {
    if (!this.unsent && !commit) return;
    const all = this.audio.current();
    const bytes = all.subarray(all.length - this.unsent);
    this.unsent = 0;
    this.sendChunk(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64'), commit);
  }

  private sendChunk(audioBase64: string, commit: boolean): void {
    this.send(JSON.stringify({ message_type: 'input_audio_chunk', audio_base_64: audioBase64, commit, sample_rate: RATE }));
  }

  private send(json: string): void {
    if (this.state === 'closed') return;
    if (this.outbox) this.outbox.push(json);
    else this.ws.send(json);
    this.armKeepAlive();
  }

  /** After keepAliveMs without a message out, 100 ms of silence: the server drops a quiet session. */
  private armKeepAlive(): void {
    if (this.keepAliveTimer) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = null;
    if (this.state === 'closed' || this.outbox) return;
    this.keepAliveTimer = setTimeout(() => this.sendChunk(SILENCE, false), this.cfg.keepAliveMs);
    this.keepAliveTimer.unref();
  }

  private onOpen(): void {
    const queued = this.outbox ?? [];
    this.outbox = null;
    if (this.state === 'closed') return;
    for (const m of queued) this.ws.send(m);
    this.armKeepAlive();
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.state === 'closed') return;
    let msg: ServerMessage;
    try {
      if (isBinary || !Buffer.isBuffer(data)) throw new TypeError('binary frame');
      msg = JSON.parse(data.toString('utf8')) as ServerMessage;
      if (typeof msg !== 'object' || msg === null || typeof msg.message_type !== 'string') throw new TypeError('no message_type');
    } catch {
      return this.fail('protocol', 'unreadable message');
    }
    this.handle(msg.message_type, msg);
  }

  private handle(type: string, msg: ServerMessage): void {
    switch (type) {
      case 'session_started': {
        const format = msg.config?.audio_format;
        if (format !== undefined && format !== 'ulaw_8000') this.fail('protocol', `session audio_format is ${JSON.stringify(format)}, not ulaw_8000`);
        return;
      }
      case 'partial_transcript':
      case 'final_transcript': { // a settled but uncommitted segment: still interim for us
        const text = typeof msg.text === 'string' ? msg.text.trim() : '';
        if (!text || text === this.lastPartial || (this.state === 'idle' && this.pending === 0)) return;
        this.lastPartial = text;
        return this.o.onPartial(text);
      }
      case 'committed_transcript': {
        if (typeof msg.text !== 'string') return this.fail('protocol', 'committed_transcript without text');
        if (this.pending === 0) return; // nothing of ours was waiting (a commit we did not ask for)
        this.pending--;
        this.lastPartial = '';
        this.armFinalTimer();
        return this.o.onFinal(msg.text.trim(), null);
      }
      default: {
        const failure = ERROR_FAILURES[type] ?? (/_error$/.test(type) ? 'http' : null);
        if (failure) this.fail(failure, type); // the server's `error` text is not kept: it could echo what was sent
      }
    }
  }

  /** One deadline for the oldest commit waiting for its transcript. */
  private armFinalTimer(): void {
    if (this.finalTimer) clearTimeout(this.finalTimer);
    this.finalTimer = null;
    if (this.state === 'closed' || this.pending === 0) return;
    this.finalTimer = setTimeout(() => this.fail('timeout', `no committed transcript within ${this.cfg.finalTimeoutMs} ms`), this.cfg.finalTimeoutMs);
  }

  private onSocketError(e: Error & { code?: string }): void {
    if (/handshake has timed out/i.test(e.message)) return this.fail('timeout', 'opening handshake timed out');
    this.fail('network', `socket error${e.code ? ` (${e.code})` : ''}`);
  }

  /** Reports one failure and releases everything; later events are ignored. */
  private fail(failure: ProviderFailure, message: string, status: number | null = null): void {
    if (this.state === 'closed') return;
    this.release();
    this.ws.terminate();
    this.o.onError(new ProviderError(PROVIDER, failure, `ElevenLabs Scribe realtime: ${message}`, status));
  }

  private release(): void {
    this.state = 'closed';
    this.outbox = null;
    this.pending = 0;
    for (const t of [this.finalTimer, this.keepAliveTimer]) if (t) clearTimeout(t);
    this.finalTimer = this.keepAliveTimer = null;
    this.o.signal.removeEventListener('abort', this.onAbort);
  }
}
