/**
 * A fake OpenAI speech-to-text API on 127.0.0.1, port 0, speaking the real wire protocols so the
 * real openai SDK (batch) and the realtime adapter (ws) are tested unchanged:
 *
 *   POST /v1/audio/transcriptions   multipart (file, model, language, prompt, response_format) → { text, usage }
 *   GET  /v1/realtime?intent=transcription   WebSocket, GA transcription session:
 *     → session.created; session.update → session.updated (effective config);
 *     input_audio_buffer.append / .clear (→ .cleared) / .commit (→ .committed, conversation.item.added,
 *     then conversation.item.input_audio_transcription.delta per word and .completed at `finalMs`);
 *     a commit of < 100 ms → `error` input_audio_buffer_commit_empty, like the real API.
 *
 * `Authorization: Bearer <apiKey>` is required (else 401 with OpenAI's error JSON; the message
 * quotes the whole key, where the real API masks its middle, so a leak of server text shows).
 * Realtime sessions accept `audio/pcmu` only (what the adapter sends; the real API also has 24 kHz
 * `audio/pcm` and `audio/pcma`).
 *
 * Faults: every HTTP request and every WebSocket session takes one FaultPlan from `faults`.
 * `status` answers the request / refuses the upgrade with that status and OpenAI's error JSON
 * (429 with Retry-After). `firstByteMs` delays the response headers / the upgrade. Chunks are the
 * response body in 16-byte pieces (only when the plan has a chunk fault or delay) or the server's
 * realtime events (session.created is chunk 0): `chunkDelayMs` between them, `stallAfterChunks`
 * stops sending, `dropAfterChunks` destroys the connection, `malformedAfterChunks` sends one broken
 * chunk (cut JSON) after that many good ones.
 *
 * Observable: `requests` and `sessions` record what the server received. No vitest imports.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import wavefile from 'wavefile';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { encodeUlaw } from '../../src/audio/ulaw.js';
import { ChunkGate, FaultScript, listenOnLoopback, sleep } from './fault-plan.js';
import type { FaultPlan } from './fault-plan.js';

/** A canary key: tests assert it appears in no error or log line. */
export const FAKE_OPENAI_KEY = 'sk-canary-openai-0123456789abcdefCANARY';

export interface TranscriptionAudio {
  /** The audio received, as 8 kHz μ-law. */
  ulaw: Uint8Array;
  ms: number;
}
export type Responder = (audio: TranscriptionAudio) => string;

export interface FakeTranscriptionRequest {
  path: string;
  authorized: boolean;
  model: string | null;
  language: string | null;
  prompt: string | null;
  responseFormat: string | null;
  /** The uploaded file, if it was a WAV: its format and length. */
  wav: { sampleRate: number; channels: number; bitDepth: string; ms: number } | null;
  /** Status sent (200, or the fault/validation status). */
  status: number | null;
}

export interface FakeCommit {
  itemId: string;
  ulaw: Uint8Array;
  ms: number;
  text: string;
}

export interface FakeRealtimeSession {
  id: string;
  /** Query parameters of the upgrade request. */
  query: Record<string, string>;
  authorized: boolean;
  /** 101, or the status the upgrade was refused with. */
  status: number;
  /** Every `session` object received in session.update, in order. */
  updates: unknown[];
  /** The effective session after the updates. */
  config: SessionConfig;
  /** Types of the client events received, in order. */
  events: string[];
  /** μ-law bytes appended in total, and in the buffer not yet committed or cleared. */
  appendedBytes: number;
  bufferedBytes: number;
  commits: FakeCommit[];
  clears: number;
  /** Who ended the session: the client (close frame or reset), or the server (drop fault, close()). */
  closedBy: 'client' | 'server' | null;
  closeCode: number | null;
}

interface SessionConfig {
  object: 'realtime.session';
  type: 'transcription';
  id: string;
  audio: {
    input: {
      format: { type: string; rate?: number };
      noise_reduction: unknown;
      transcription: { model?: string; language?: string; prompt?: string } | null;
      turn_detection: unknown;
    };
  };
  include: unknown;
}

export interface FakeOpenAiTranscriptionOptions {
  apiKey?: string;
  responder?: Responder;
  /** Commit → completed, ms; deltas are spread before it. Default 300. */
  finalMs?: number;
}

export interface FakeOpenAiTranscription {
  /** `http://127.0.0.1:PORT/v1`: the SDK's baseURL and the adapter's baseUrl. */
  readonly httpUrl: string;
  /** `ws://127.0.0.1:PORT/v1/realtime?intent=transcription`. */
  readonly wsUrl: string;
  readonly apiKey: string;
  readonly faults: FaultScript;
  readonly requests: readonly FakeTranscriptionRequest[];
  readonly sessions: readonly FakeRealtimeSession[];
  responder: Responder;
  finalMs: number;
  close(): Promise<void>;
}

const ERRORS: Record<number, { type: string; code: string | null; message: string }> = {
  400: { type: 'invalid_request_error', code: null, message: 'Invalid request.' },
  403: { type: 'invalid_request_error', code: 'unsupported_country_region_territory', message: 'Country, region, or territory not supported' },
  404: { type: 'invalid_request_error', code: 'model_not_found', message: 'The model does not exist or you do not have access to it.' },
  429: { type: 'requests', code: 'rate_limit_exceeded', message: 'Rate limit reached for requests. Please try again in 1s.' },
  500: { type: 'server_error', code: null, message: 'The server had an error while processing your request. Sorry about that!' },
  502: { type: 'server_error', code: null, message: 'Bad gateway.' },
  503: { type: 'server_error', code: 'service_unavailable', message: 'The engine is currently overloaded, please try again later.' },
};
const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable' };

function errorBody(status: number, presentedKey: string, message?: string): string {
  if (status === 401) {
    return JSON.stringify({ error: { message: `Incorrect API key provided: ${presentedKey}. You can find your API key at https://platform.openai.com/account/api-keys.`,
      type: 'invalid_request_error', param: null, code: 'invalid_api_key' } });
  }
  const e = ERRORS[status] ?? ERRORS[500]!;
  return JSON.stringify({ error: { message: message ?? e.message, type: e.type, param: null, code: e.code } });
}

function errorHeaders(status: number, plan: FaultPlan): Record<string, string> {
  const h: Record<string, string> = { 'content-type': 'application/json', 'x-request-id': `req_${Math.random().toString(36).slice(2)}` };
  if (status === 429 && plan.retryAfterS !== undefined) h['retry-after'] = String(plan.retryAfterS);
  return h;
}

const bearer = (req: IncomingMessage): string => /^Bearer (.*)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';

export async function startFakeOpenAiTranscription(options: FakeOpenAiTranscriptionOptions = {}): Promise<FakeOpenAiTranscription> {
  const apiKey = options.apiKey ?? FAKE_OPENAI_KEY;
  const faults = new FaultScript();
  const requests: FakeTranscriptionRequest[] = [];
  const sessions: FakeRealtimeSession[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const wss = new WebSocketServer({ noServer: true });
  let nextId = 1;

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, ms);
    timers.add(t);
  };

  const fake: FakeOpenAiTranscription = {
    httpUrl: '',
    wsUrl: '',
    apiKey,
    faults,
    requests,
    sessions,
    responder: options.responder ?? (() => 'I would like to book an appointment for Bella.'),
    finalMs: options.finalMs ?? 300,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const plan = faults.next();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const path = (req.url ?? '').split('?')[0]!;
    const rec: FakeTranscriptionRequest = { path, authorized: bearer(req) === apiKey, model: null, language: null, prompt: null, responseFormat: null, wav: null, status: null };
    requests.push(rec);
    let ulaw: Uint8Array | null = null;
    if (req.method === 'POST' && path === '/v1/audio/transcriptions') ulaw = await readUpload(req, Buffer.concat(chunks), rec);
    if (plan.firstByteMs) await sleep(plan.firstByteMs);
    const fail = (status: number, message?: string) => {
      rec.status = status;
      res.writeHead(status, errorHeaders(status, plan)).end(errorBody(status, bearer(req), message));
    };
    if (plan.status) return fail(plan.status);
    if (!rec.authorized) return fail(401);
    if (rec.path !== '/v1/audio/transcriptions' || req.method !== 'POST') return fail(404, `Invalid URL (${req.method ?? ''} ${path})`);
    if (!rec.model) return fail(400, 'you must provide a model parameter');
    if (!ulaw) return fail(400, 'Invalid file format. Supported formats: [\'flac\', \'m4a\', \'mp3\', \'mp4\', \'mpeg\', \'mpga\', \'oga\', \'ogg\', \'wav\', \'webm\']');
    const ms = ulaw.length / 8;
    const body = JSON.stringify({ text: fake.responder({ ulaw, ms }), usage: { type: 'duration', seconds: Math.ceil(ms / 1000) } });
    rec.status = 200;
    const chunked = plan.chunkDelayMs !== undefined || plan.stallAfterChunks !== undefined || plan.dropAfterChunks !== undefined || plan.malformedAfterChunks !== undefined;
    res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': `req_${nextId++}` });
    if (!chunked) return void res.end(body);
    const gate = new ChunkGate(plan, { write: (s) => res.write(s), destroy: () => res.destroy() });
    for (let i = 0; i < body.length; i += 16) gate.push(body.slice(i, i + 16));
    await gate.done();
    if (!gate.stopped) res.end();
  }

  /** Parses the multipart upload into `rec`; returns the audio as μ-law if the file is a PCM16 WAV. */
  async function readUpload(req: IncomingMessage, raw: Buffer, rec: FakeTranscriptionRequest): Promise<Uint8Array | null> {
    let form: FormData;
    try {
      form = await new Request('http://fake/', { method: 'POST', headers: { 'content-type': req.headers['content-type'] ?? '' }, body: raw }).formData();
    } catch {
      return null;
    }
    const field = (k: string) => { const v = form.get(k); return typeof v === 'string' ? v : null; };
    rec.model = field('model');
    rec.language = field('language');
    rec.prompt = field('prompt');
    rec.responseFormat = field('response_format');
    const file = form.get('file');
    if (!file || typeof file === 'string') return null;
    try {
      const wav = new wavefile.WaveFile(new Uint8Array(await file.arrayBuffer()));
      const fmt = wav.fmt as { audioFormat: number; numChannels: number; sampleRate: number };
      const pcm = wav.getSamples(false, Int16Array) as unknown as Int16Array;
      rec.wav = { sampleRate: fmt.sampleRate, channels: fmt.numChannels, bitDepth: wav.bitDepth, ms: (pcm.length / fmt.numChannels / fmt.sampleRate) * 1000 };
      if (fmt.audioFormat !== 1 || fmt.sampleRate !== 8000 || fmt.numChannels !== 1 || wav.bitDepth !== '16') return null;
      return encodeUlaw(pcm);
    } catch {
      return null;
    }
  }

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const plan = faults.next();
    const url = new URL(req.url ?? '/', 'http://fake');
    const session = newSession(url, bearer(req) === apiKey);
    sessions.push(session);
    socket.on('error', () => undefined); // a client reset mid-handshake must not crash the fake
    if (plan.firstByteMs) await sleep(plan.firstByteMs);
    const status = plan.status ?? (!session.authorized ? 401 : url.pathname !== '/v1/realtime' ? 404 : 0);
    if (status) {
      session.status = status;
      session.closedBy = 'server';
      const body = errorBody(status, bearer(req));
      const headers = { ...errorHeaders(status, plan), 'content-length': String(Buffer.byteLength(body)), connection: 'close' };
      socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => runSession(ws, session, plan));
  }

  function newSession(url: URL, authorized: boolean): FakeRealtimeSession {
    const id = `sess_fake${nextId++}`;
    return {
      id, query: Object.fromEntries(url.searchParams), authorized, status: 101, updates: [], events: [], appendedBytes: 0, bufferedBytes: 0,
      commits: [], clears: 0, closedBy: null, closeCode: null,
      config: { object: 'realtime.session', type: 'transcription', id, include: null, audio: { input: {
        format: { type: 'audio/pcm', rate: 24000 }, noise_reduction: null, transcription: null,
        turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 } } } },
    };
  }

  function runSession(ws: WebSocket, s: FakeRealtimeSession, plan: FaultPlan): void {
    let serverEnded = false;
    const gate = new ChunkGate(plan, { write: (m) => ws.send(m), destroy: () => { serverEnded = true; ws.terminate(); } });
    const send = (ev: Record<string, unknown>) => gate.push(JSON.stringify({ event_id: `event_${nextId++}`, ...ev }));
    const error = (code: string, message: string, eventId?: unknown) =>
      send({ type: 'error', error: { type: 'invalid_request_error', code, message, param: null, event_id: eventId ?? null } });
    let buffer: Buffer[] = [];
    let lastItem: string | null = null;

    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      s.closeCode = code;
      s.closedBy ??= serverEnded ? 'server' : 'client';
    });
    send({ type: 'session.created', session: s.config });

    ws.on('message', (data: RawData) => {
      let ev: Record<string, unknown>;
      try {
        ev = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : '') as Record<string, unknown>;
      } catch {
        return error('invalid_json', 'The server could not parse the event as JSON.');
      }
      const type = typeof ev.type === 'string' ? ev.type : '';
      s.events.push(type);
      switch (type) {
        case 'session.update': return update(ev);
        case 'input_audio_buffer.append': {
          const bytes = Buffer.from(typeof ev.audio === 'string' ? ev.audio : '', 'base64');
          buffer.push(bytes);
          s.appendedBytes += bytes.length;
          s.bufferedBytes += bytes.length;
          return;
        }
        case 'input_audio_buffer.clear':
          buffer = [];
          s.bufferedBytes = 0;
          s.clears++;
          return send({ type: 'input_audio_buffer.cleared' });
        case 'input_audio_buffer.commit': return commit(ev.event_id);
        default: return error('unknown_event', `Invalid value: '${type}'. Supported values are: 'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear'.`, ev.event_id);
      }
    });

    function update(ev: Record<string, unknown>): void {
      const next = ev.session as Partial<SessionConfig> | undefined;
      s.updates.push(next);
      if (s.query.intent !== 'transcription') return error('invalid_value', 'A transcription session needs ?intent=transcription.', ev.event_id);
      if (next?.type !== 'transcription') return error('invalid_value', 'session.type must be transcription.', ev.event_id);
      const input = next.audio?.input;
      if (input?.format && input.format.type !== 'audio/pcmu') return error('invalid_value', 'This fake accepts audio/pcmu only.', ev.event_id);
      if (input) s.config.audio.input = { ...s.config.audio.input, ...input };
      send({ type: 'session.updated', session: s.config });
    }

    function commit(eventId: unknown): void {
      const ulaw = new Uint8Array(Buffer.concat(buffer));
      const ms = ulaw.length / 8;
      if (ms < 100) return error('input_audio_buffer_commit_empty', `Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has ${ms.toFixed(2)}ms of audio.`, eventId);
      buffer = [];
      s.bufferedBytes = 0;
      const itemId = `item_fake${nextId++}`;
      const text = fake.responder({ ulaw, ms });
      s.commits.push({ itemId, ulaw, ms, text });
      send({ type: 'input_audio_buffer.committed', previous_item_id: lastItem, item_id: itemId });
      send({ type: 'conversation.item.added', previous_item_id: lastItem, item: { id: itemId, object: 'realtime.item', type: 'message',
        status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] } });
      lastItem = itemId;
      const words = text.split(/(?<=\S)(?=\s)/); // "a b c" → "a", " b", " c": deltas as the API sends them
      const step = fake.finalMs / (words.length + 1);
      words.forEach((delta, i) => later(step * (i + 1), () => send({ type: 'conversation.item.input_audio_transcription.delta', item_id: itemId, content_index: 0, delta })));
      later(fake.finalMs, () => send({ type: 'conversation.item.input_audio_transcription.completed', item_id: itemId, content_index: 0, transcript: text,
        usage: { type: 'duration', seconds: Math.ceil(ms / 1000) } }));
    }
  }

  const server = createServer((req, res) => {
    onRequest(req, res).catch(() => res.destroy());
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch(() => socket.destroy());
  });
  const port = await listenOnLoopback(server, sockets);
  return Object.assign(fake, { httpUrl: `http://127.0.0.1:${port}/v1`, wsUrl: `ws://127.0.0.1:${port}/v1/realtime?intent=transcription` });
}
