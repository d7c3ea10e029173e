/**
 * OpenAI speech to text, streaming: one Realtime transcription session (WebSocket) per call.
 *
 * What was verified, and where (2026, openai 6.49.0):
 * - URL: `wss://api.openai.com/v1/realtime?intent=transcription`, `Authorization: Bearer <key>`,
 *   no `model` in the URL (developers.openai.com/api/docs/guides/realtime-transcription: "omit
 *   model from the URL"; a model there makes a conversation session, and openai-python#2253 shows
 *   the server rejecting a model parameter on a transcription session). No `OpenAI-Beta` header (GA).
 * - Session (GA): `session.update` with `{ type: 'transcription', audio: { input: { format,
 *   transcription: { model, language, prompt }, turn_detection: null } } }` (same guide; client
 *   events reference; `RealtimeTranscriptionSessionCreateRequest` in
 *   node_modules/openai/resources/realtime/realtime.d.ts). The beta `transcription_session.update`
 *   with `input_audio_format: 'g711_ulaw'` is the old shape and is not used.
 * - Audio: `RealtimeAudioFormats` has `audio/pcm` (24 kHz only), `audio/pcmu` (G.711 μ-law) and
 *   `audio/pcma`; G.711 is 8 kHz, so the call's μ-law goes out as is, no resampling. The adapter
 *   checks `session.updated` says `audio/pcmu` (a server that ignored it would mistranscribe).
 * - Events: client `input_audio_buffer.append { audio: base64 }`, `input_audio_buffer.commit`,
 *   `input_audio_buffer.clear`; server `session.created`, `session.updated`,
 *   `input_audio_buffer.committed { item_id }`, `conversation.item.input_audio_transcription.delta
 *   { item_id, delta }`, `.completed { item_id, transcript }`, `.failed { item_id, error }`,
 *   `error { error: { type, code, message } }` (realtime.d.ts). A commit of < 100 ms of audio is
 *   refused (`input_audio_buffer_commit_empty`); utterances this short never reach a commit here.
 * - turn_detection null: no server VAD, our VAD decides; the client commits each turn.
 * - The SDK's `openai/realtime/ws` (OpenAIRealtimeWS) is not used: its URL builder forces `wss:`
 *   (cannot reach a plain local fake) and requires `model` or `callID` in the URL (checked in
 *   node_modules/openai/realtime/internal-base.mjs and by running it). `ws` is used directly.
 *
 * Per call: the socket opens at open() (a bad key fails before the caller speaks). Audio is sent
 * only from speechStarted (with 300 ms of pre-roll) to speechEnded, in 100 ms appends; speechEnded
 * commits. Several commits may be in flight: finals come out in commit order, partials only for
 * the oldest pending utterance. Socket error/close, an `error` event, a failed transcription, an
 * unreadable event or no final within `finalTimeoutMs` → onError(ProviderError) once, socket
 * closed, nothing after. A 401/403/429/5xx at the upgrade maps by status.
 */
import WebSocket from 'ws';
import type { RawData } from 'ws';
import { BUDGETS } from '../../../machines/call/budgets.js';
import { ProviderError, failureForStatus } from '../errors.js';
import type { ProviderFailure } from '../errors.js';
import { OPENAI_STT_DEFAULT_MODEL, createOpenAiBatchStt } from './openai-batch.js';
import { MIN_SPEECH_MS, UtteranceBuffer } from './utterance-buffer.js';
import { isoLanguage, vocabularyPrompt } from './vocabulary.js';
import type { SttOptions, SttProvider, SttStream } from './types.js';

export { createOpenAiBatchStt, transcribeUlaw } from './openai-batch.js';

const MS = 8;
/** Audio is appended in 100 ms pieces: 5 messages a second instead of 50. */
const APPEND_BYTES = 100 * MS;

export interface OpenAiSttOptions {
  apiKey: string;
  /** API base ending in /v1 (http(s)); the WebSocket URL is derived from it. Default api.openai.com. */
  baseUrl?: string | null;
  model?: string;
  /** `realtime` (default): streaming session with partials. `batch`: one HTTP request per utterance. */
  mode?: 'realtime' | 'batch';
  /** Audio kept from before speechStarted. Default 300. */
  preRollMs?: number;
  /** Opening handshake budget. Default 5000. */
  connectTimeoutMs?: number;
  /** speechEnded → final budget (docs/design/reliability.md F9: 2 s). Default 2000. */
  finalTimeoutMs?: number;
}

/** `https://api.openai.com/v1` → `wss://api.openai.com/v1/realtime?intent=transcription`. */
export function realtimeUrl(baseUrl: string | null | undefined): string {
  const url = new URL(baseUrl || 'https://api.openai.com/v1');
  url.protocol = url.protocol === 'http:' || url.protocol === 'ws:' ? 'ws:' : 'wss:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/realtime`;
  url.search = '';
  url.searchParams.set('intent', 'transcription');
  return url.toString();
}

export function createOpenAiStt(opts: OpenAiSttOptions): SttProvider {
  if (opts.mode === 'batch') {
    return createOpenAiBatchStt({
      apiKey: opts.apiKey, baseUrl: opts.baseUrl ?? null,
      ...(opts.model ? { model: opts.model } : {}), ...(opts.preRollMs !== undefined ? { preRollMs: opts.preRollMs } : {}),
    });
  }
  const cfg: StreamConfig = {
    url: realtimeUrl(opts.baseUrl),
    apiKey: opts.apiKey,
    model: opts.model ?? OPENAI_STT_DEFAULT_MODEL,
    preRoll: Math.max(1, Math.round((opts.preRollMs ?? 300) * MS)),
    connectTimeoutMs: opts.connectTimeoutMs ?? 5000,
    finalTimeoutMs: opts.finalTimeoutMs ?? BUDGETS.sttFinalTimeoutMs,
  };
  return { name: 'openai', open: (o) => new RealtimeStream(cfg, o) };
}

interface StreamConfig {
  url: string;
  apiKey: string;
  model: string;
  preRoll: number;
  connectTimeoutMs: number;
  finalTimeoutMs: number;
}

/** One committed utterance waiting for its transcript. */
interface Pending {
  itemId: string | null;
  text: string;
  final: string | null;
}

/** The subset of server events read here; everything else is ignored. */
interface ServerEvent {
  type?: unknown;
  item_id?: unknown;
  delta?: unknown;
  transcript?: unknown;
  session?: { audio?: { input?: { format?: { type?: unknown } } } };
  error?: { type?: unknown; code?: unknown };
}

class RealtimeStream implements SttStream {
  private readonly ws: WebSocket;
  private readonly audio: UtteranceBuffer;
  /** capped: the utterance hit the cap and was committed; speechEnded only closes it. */
  private state: 'idle' | 'open' | 'capped' | 'closed' = 'idle';
  /** Messages written before the socket opened. */
  private outbox: string[] | null = [];
  /** Bytes of the current utterance not yet appended. */
  private unsent = 0;
  private readonly pending: Pending[] = [];
  private finalTimer: NodeJS.Timeout | null = null;
  private readonly onAbort = () => this.close();

  constructor(private readonly cfg: StreamConfig, private readonly o: SttOptions) {
    this.audio = new UtteranceBuffer(cfg.preRoll);
    this.ws = new WebSocket(cfg.url, { headers: { Authorization: `Bearer ${cfg.apiKey}` }, handshakeTimeout: cfg.connectTimeoutMs });
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
    this.send({ type: 'session.update', session: this.session() });
    if (o.signal.aborted) this.close();
    else o.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  write(pcm: Int16Array): void {
    if (this.state === 'idle') this.audio.remember(pcm);
    else if (this.state === 'open') {
      this.unsent += this.audio.add(pcm).length;
      if (this.unsent >= APPEND_BYTES) this.flush();
      if (!this.audio.capped) return;
      this.commit('capped'); // the final comes at the cap; the speechEnded that follows emits nothing
    }
  }

  speechStarted(): void {
    if (this.state !== 'idle') return;
    this.state = 'open';
    this.unsent = this.audio.start().length;
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

  private session(): object {
    const prompt = vocabularyPrompt(this.o.vocabulary);
    const language = isoLanguage(this.o.language);
    return {
      type: 'transcription',
      audio: {
        input: {
          format: { type: 'audio/pcmu' },
          transcription: { model: this.cfg.model, ...(language ? { language } : {}), ...(prompt ? { prompt } : {}) },
          turn_detection: null,
        },
      },
    };
  }

  /** Ends the utterance: commits it, or drops it when too short to transcribe. */
  private commit(next: 'idle' | 'capped'): void {
    this.state = next;
    if (this.audio.speech < MIN_SPEECH_MS * MS) {
      this.audio.reset();
      this.unsent = 0;
      this.send({ type: 'input_audio_buffer.clear' });
      return this.o.onFinal('', null);
    }
    this.flush();
    this.audio.reset();
    this.send({ type: 'input_audio_buffer.commit' });
    this.pending.push({ itemId: null, text: '', final: null });
    this.armFinalTimer();
  }

  /** Appends the audio not yet sent. */
  private flush(): void {
    if (!this.unsent) return;
    const bytes = this.audioTail(this.unsent);
    this.unsent = 0;
    this.send({ type: 'input_audio_buffer.append', audio: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64') });
  }

  private audioTail(n: number): Uint8Array {
    const all = this.audio.current();
    return all.subarray(all.length - n);
  }

  private send(event: object): void {
    if (this.state === 'closed') return;
    const json = JSON.stringify(event);
    if (this.outbox) this.outbox.push(json);
    else this.ws.send(json);
  }

  private onOpen(): void {
    const queued = this.outbox ?? [];
    this.outbox = null;
    if (this.state !== 'closed') for (const m of queued) this.ws.send(m);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.state === 'closed') return;
    let ev: ServerEvent;
    try {
      if (isBinary || !Buffer.isBuffer(data)) throw new TypeError('binary frame');
      ev = JSON.parse(data.toString('utf8')) as ServerEvent;
      if (typeof ev !== 'object' || ev === null || typeof ev.type !== 'string') throw new TypeError('no type');
    } catch {
      return this.fail('protocol', 'unreadable event');
    }
    this.handle(ev);
  }

  private handle(ev: ServerEvent): void {
    switch (ev.type) {
      case 'session.updated': {
        const format = ev.session?.audio?.input?.format?.type;
        if (format !== 'audio/pcmu') this.fail('protocol', `session input format is ${String(format)}, not audio/pcmu`);
        return;
      }
      case 'input_audio_buffer.committed': {
        const p = this.pending.find((u) => u.itemId === null);
        if (p && typeof ev.item_id === 'string') p.itemId = ev.item_id;
        return;
      }
      case 'conversation.item.input_audio_transcription.delta': {
        const p = this.byItem(ev.item_id);
        if (!p || typeof ev.delta !== 'string' || !ev.delta) return;
        p.text += ev.delta;
        if (p === this.pending[0]) this.o.onPartial(p.text.trim());
        return;
      }
      case 'conversation.item.input_audio_transcription.completed': {
        const p = this.byItem(ev.item_id);
        if (!p) return;
        if (typeof ev.transcript !== 'string') return this.fail('protocol', 'completed event without transcript');
        p.final = ev.transcript.trim();
        return this.deliver();
      }
      case 'conversation.item.input_audio_transcription.failed':
        return this.fail('http', `transcription failed${codeOf(ev)}`);
      case 'error':
        return this.fail(failureForErrorEvent(ev), `error event${codeOf(ev)}`);
      default:
    }
  }

  private byItem(itemId: unknown): Pending | undefined {
    return typeof itemId === 'string' ? this.pending.find((u) => u.itemId === itemId) : undefined;
  }

  /** Emits finals that are ready, oldest first; then the next pending utterance's partial so far. */
  private deliver(): void {
    while (this.pending[0]?.final != null && this.state !== 'closed') {
      const done = this.pending.shift()!;
      this.o.onFinal(done.final!, null);
      const next = this.pending[0];
      if (next?.text && next.final == null) this.o.onPartial(next.text.trim());
    }
    this.armFinalTimer();
  }

  /** One deadline for the oldest pending utterance. */
  private armFinalTimer(): void {
    if (this.finalTimer) clearTimeout(this.finalTimer);
    this.finalTimer = null;
    if (this.state === 'closed' || !this.pending.length) return;
    this.finalTimer = setTimeout(() => this.fail('timeout', `no final within ${this.cfg.finalTimeoutMs} ms`), this.cfg.finalTimeoutMs);
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
    this.o.onError(new ProviderError('openai', failure, `OpenAI realtime transcription: ${message}`, status));
  }

  private release(): void {
    this.state = 'closed';
    this.outbox = null;
    this.pending.length = 0;
    if (this.finalTimer) clearTimeout(this.finalTimer);
    this.finalTimer = null;
    this.o.signal.removeEventListener('abort', this.onAbort);
  }
}

const codeOf = (ev: ServerEvent): string => (typeof ev.error?.code === 'string' ? ` (${ev.error.code})` : '');

/** An `error` event's kind: its code/type names auth and rate limits; anything else is a 4xx/5xx-like refusal. */
function failureForErrorEvent(ev: ServerEvent): ProviderFailure {
  const tag = `${String(ev.error?.type)} ${String(ev.error?.code)}`;
  if (/auth|api_key|permission/i.test(tag)) return 'auth';
  if (/rate_limit|quota|concurrent/i.test(tag)) return 'quota';
  return 'http';
}
