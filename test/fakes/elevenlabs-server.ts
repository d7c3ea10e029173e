/**
 * A fake ElevenLabs text-to-speech API on 127.0.0.1, port 0: the two streaming endpoints the
 * adapters use, answered the way @elevenlabs/elevenlabs-js 2.73.0 and the stream-input docs expect.
 *
 *   POST /v1/text-to-speech/{voice_id}/stream?output_format=…&optimize_streaming_latency=…
 *        JSON body { text, model_id, language_code?, … }, header xi-api-key → raw audio, chunked
 *   GET  /v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…  (WebSocket)
 *        client: { text: ' ', voice_settings?, generation_config?, xi_api_key? }, then
 *        { text: 'words ', flush?, try_trigger_generation? }…, then { text: '' } to close;
 *        server: { audio: base64, normalizedAlignment } per chunk, then { isFinal: true }, close 1000.
 *
 * The audio is valid μ-law 8 kHz: `fakeAudio(text)`, 60 ms (480 bytes) of a tone per character, the
 * pitch derived from the character, so tests can compare what they heard with what was asked for and
 * `fakeAudio(a + b)` equals `fakeAudio(a)` followed by `fakeAudio(b)`.
 *
 * WebSocket generation follows the documented buffering, approximately: text is buffered until the
 * buffer reaches the first `chunk_length_schedule` value (default 120 characters), a message has
 * `flush: true` or `try_trigger_generation: true`, the client sends `{ text: '' }`, or, with
 * `auto_mode=true`, at once for every message. The real service's model behaviour is not simulated.
 *
 * Each HTTP request or WebSocket session takes one FaultPlan from `faults` (test/fakes/fault-plan.ts):
 * firstByteMs delays the headers (HTTP) or the first audio message after text triggered a generation
 * (WebSocket); status answers with ElevenLabs' error JSON `{ detail: { status, message } }` (HTTP) or
 * rejects the upgrade with it (WebSocket); the chunk faults count audio chunks. A malformed HTTP chunk
 * is broken chunked framing (the only way raw audio can be unreadable); on the WebSocket it is a
 * frame that is not JSON.
 *
 * No vitest imports: scripts/simulate and scripts/measure-tts use it too.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { encodeUlaw } from '../../src/audio/ulaw.js';
import { Arrivals, FaultScript, listenOnLoopback, type FaultPlan } from './fault-plan.js';

/** A canary: tests assert it appears in no error message or log line. */
export const FAKE_ELEVENLABS_KEY = 'canary-xi-key-5e4d3c2b1a09f8e7';

const BYTES_PER_CHAR = 480; // 60 ms of μ-law at 8 kHz
const DEFAULT_SCHEDULE = [120, 160, 250, 290];
/** try_trigger_generation only generates above a minimum buffer (the docs do not give the number). */
const TRIGGER_MIN_CHARS = 50;
const HTTP_PATH = /^\/v1\/text-to-speech\/([^/]+)\/stream$/;
const WS_PATH = /^\/v1\/text-to-speech\/([^/]+)\/stream-input$/;

export interface FakeElevenLabsRequest {
  transport: 'http' | 'ws';
  voice: string;
  model: string | null;
  format: string | null;
  language: string | null;
  /** HTTP: the body's text. WebSocket: every text message concatenated (the init ' ' excluded). */
  text: string;
  /** WebSocket: the text messages as sent, init and close included. */
  messages: unknown[];
  /** WebSocket: `auto_mode=true` was asked for. */
  autoMode: boolean;
  /** A key arrived (header, or the WebSocket init message); its value is never recorded. */
  keyPresent: boolean;
  authorized: boolean;
  /** HTTP status sent (101 for an accepted WebSocket), or null while none was. */
  status: number | null;
  /** Audio chunks sent (HTTP writes or WebSocket audio messages). */
  chunks: number;
  bytes: number;
  /** The client went away before the fake had finished (abort, timeout, cancel). */
  disconnected: boolean;
  /** Everything was sent and the response ended (HTTP) or isFinal was sent (WebSocket). */
  finished: boolean;
  plan: FaultPlan;
}

export interface FakeElevenLabs {
  /** `http://127.0.0.1:PORT`: the SDK's baseUrl; the WebSocket adapter turns it into ws://. */
  readonly url: string;
  readonly apiKey: string;
  readonly faults: FaultScript;
  /** Every request and session so far, in arrival order (a live array). */
  readonly requests: readonly FakeElevenLabsRequest[];
  /** Resolves once `count` requests exist and `until` (default: any) holds for the last of them. */
  waitFor(count: number, until?: (r: FakeElevenLabsRequest) => boolean, timeoutMs?: number): Promise<FakeElevenLabsRequest>;
  close(): Promise<void>;
}

export interface FakeElevenLabsOptions {
  apiKey?: string;
  faults?: FaultScript;
  /**
   * Bytes of audio per chunk: 800 (100 ms) by default; a function of the chunk's index (per request
   * or session) for uneven chunks, e.g. odd sizes that are no multiple of a 20 ms frame.
   */
  chunkBytes?: number | ((index: number) => number);
}

/** The fake's audio for `text`: 480 bytes of μ-law tone per character. */
export function fakeAudio(text: string): Uint8Array {
  const pcm = new Int16Array(text.length * BYTES_PER_CHAR);
  for (let c = 0; c < text.length; c++) {
    const hz = 200 + (text.charCodeAt(c) % 40) * 20;
    const amp = /\s/.test(text[c]!) ? 0 : 8000;
    for (let i = 0; i < BYTES_PER_CHAR; i++) pcm[c * BYTES_PER_CHAR + i] = Math.round(amp * Math.sin((2 * Math.PI * hz * i) / 8000));
  }
  return encodeUlaw(pcm);
}

const STATUS_CODES: Record<number, { status: string; message: string }> = {
  400: { status: 'invalid_request', message: 'The request is invalid.' },
  401: { status: 'invalid_api_key', message: 'Invalid API key' },
  403: { status: 'missing_permissions', message: 'The API key is missing the text_to_speech permission.' },
  404: { status: 'voice_not_found', message: 'A voice with the voice_id was not found.' },
  429: { status: 'too_many_concurrent_requests', message: 'Too many concurrent requests.' },
  500: { status: 'internal_error', message: 'An internal server error occurred.' },
  502: { status: 'bad_gateway', message: 'Bad gateway.' },
  503: { status: 'service_unavailable', message: 'The service is temporarily unavailable.' },
};

const rawText = (data: RawData) =>
  (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');

const errorJson = (status: number) => JSON.stringify({ detail: STATUS_CODES[status] ?? { status: 'error', message: 'Error' } });

export async function startElevenLabsFake(opts: FakeElevenLabsOptions = {}): Promise<FakeElevenLabs> {
  const apiKey = opts.apiKey ?? FAKE_ELEVENLABS_KEY;
  const faults = opts.faults ?? new FaultScript();
  const chunkSize = opts.chunkBytes ?? 800;
  const sizeOf = (index: number) => Math.max(1, Math.floor(typeof chunkSize === 'number' ? chunkSize : chunkSize(index)));
  const requests: FakeElevenLabsRequest[] = [];
  const sockets = new Set<Socket | Duplex>();
  const timers = new Set<NodeJS.Timeout>();
  const arrivals = new Arrivals();
  let closing = false;

  const later = (ms: number) =>
    new Promise<void>((resolve) => {
      if (ms <= 0) return resolve();
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });
  const changed = () => arrivals.changed();
  const record = (r: Omit<FakeElevenLabsRequest, 'status' | 'chunks' | 'bytes' | 'disconnected' | 'finished'>) => {
    const rec: FakeElevenLabsRequest = { ...r, status: null, chunks: 0, bytes: 0, disconnected: false, finished: false };
    requests.push(rec);
    changed();
    return rec;
  };

  // ---- HTTP stream -------------------------------------------------------------------------------

  const readBody = (req: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const parts: Buffer[] = [];
      req.on('data', (b: Buffer) => parts.push(b));
      req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      req.on('error', reject);
    });

  const streamHttp = async (res: ServerResponse, rec: FakeElevenLabsRequest, audio: Uint8Array) => {
    const { plan } = rec;
    const gone = () => res.destroyed || closing;
    await later(plan.firstByteMs ?? 0);
    if (gone()) return;
    res.writeHead(200, { 'Content-Type': 'audio/basic', 'Transfer-Encoding': 'chunked' });
    rec.status = 200;
    changed();
    for (let at = 0; at < audio.length; ) {
      if (rec.chunks > 0) await later(plan.chunkDelayMs ?? 0);
      if (gone()) return;
      if (rec.chunks === plan.stallAfterChunks) return; // open and silent until the client gives up
      if (rec.chunks === plan.dropAfterChunks) return void res.socket?.destroy();
      if (rec.chunks === plan.malformedAfterChunks) {
        res.socket?.write('zz\r\nnot a chunk\r\n'); // a chunk size that is not hex
        return void res.socket?.destroySoon();
      }
      const chunk = audio.subarray(at, at + sizeOf(rec.chunks));
      at += chunk.length;
      res.write(chunk);
      rec.chunks += 1;
      rec.bytes += chunk.length;
      changed();
    }
    res.end();
    rec.finished = true;
    changed();
  };

  const onHttp = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const match = HTTP_PATH.exec(url.pathname);
    if (req.method !== 'POST' || !match) return void res.writeHead(404, { 'Content-Type': 'application/json' }).end(errorJson(404));
    const raw = await readBody(req);
    let body: { text?: unknown; model_id?: unknown; language_code?: unknown } = {};
    try {
      body = JSON.parse(raw) as typeof body;
    } catch {
      // An unreadable body is recorded with empty text and answered 400 below.
    }
    const key = req.headers['xi-api-key'];
    const rec = record({
      transport: 'http',
      voice: decodeURIComponent(match[1]!),
      model: typeof body.model_id === 'string' ? body.model_id : null,
      format: url.searchParams.get('output_format'),
      language: typeof body.language_code === 'string' ? body.language_code : null,
      text: typeof body.text === 'string' ? body.text : '',
      messages: [],
      autoMode: false,
      keyPresent: typeof key === 'string' && key.length > 0,
      authorized: key === apiKey,
      plan: faults.next(),
    });
    res.on('close', () => {
      if (!rec.finished && !closing) rec.disconnected = true;
      changed();
    });
    const fail = async (status: number) => {
      await later(rec.plan.firstByteMs ?? 0);
      if (res.destroyed) return;
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (status === 429 && rec.plan.retryAfterS !== undefined) headers['Retry-After'] = String(rec.plan.retryAfterS);
      res.writeHead(status, headers).end(errorJson(status));
      rec.status = status;
      rec.finished = true;
      changed();
    };
    if (!rec.authorized) return fail(401);
    if (rec.plan.status) return fail(rec.plan.status);
    if (!rec.text) return fail(400);
    await streamHttp(res, rec, fakeAudio(rec.text));
  };

  // ---- stream-input WebSocket --------------------------------------------------------------------

  const wss = new WebSocketServer({ noServer: true });

  const rejectUpgrade = (socket: Duplex, status: number, retryAfterS?: number) => {
    const body = errorJson(status);
    const retry = status === 429 && retryAfterS !== undefined ? `Retry-After: ${retryAfterS}\r\n` : '';
    socket.end(
      `HTTP/1.1 ${status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retry}Connection: close\r\n\r\n${body}`,
    );
  };

  const session = (ws: WebSocket, rec: FakeElevenLabsRequest, schedule: number[]) => {
    const { plan } = rec;
    let buffer = '';
    let generations = 0;
    let pending: Uint8Array[] = [];
    let pumping: Promise<void> | null = null;
    let closeAsked = false;
    let firstAudioDone = false;
    let halted = false; // stalled, dropped or malformed: send nothing more
    const open = () => ws.readyState === ws.OPEN && !closing;

    const pump = async () => {
      while (pending.length > 0 && !halted) {
        const audio = pending.shift()!;
        if (!firstAudioDone) await later(plan.firstByteMs ?? 0);
        firstAudioDone = true;
        for (let at = 0; at < audio.length && !halted; ) {
          if (rec.chunks > 0) await later(plan.chunkDelayMs ?? 0);
          if (!open()) return;
          if (rec.chunks === plan.stallAfterChunks) halted = true;
          else if (rec.chunks === plan.dropAfterChunks) {
            halted = true;
            ws.terminate();
          } else if (rec.chunks === plan.malformedAfterChunks) {
            halted = true;
            ws.send('{"audio": "AAAA", "isFinal": nul');
          } else {
            const chunk = audio.subarray(at, at + sizeOf(rec.chunks));
            at += chunk.length;
            ws.send(JSON.stringify({ audio: Buffer.from(chunk).toString('base64'), isFinal: null, normalizedAlignment: null }));
            rec.chunks += 1;
            rec.bytes += chunk.length;
            changed();
          }
        }
      }
      if (closeAsked && !halted && open()) {
        ws.send(JSON.stringify({ isFinal: true }));
        rec.finished = true;
        changed();
        ws.close(1000);
      }
    };
    const kick = () => {
      pumping ??= pump().finally(() => {
        pumping = null;
        if ((pending.length > 0 || closeAsked) && !halted && !rec.finished && open()) kick();
      });
    };
    const generate = () => {
      if (buffer.length > 0) pending.push(fakeAudio(buffer));
      buffer = '';
      generations += 1;
      kick();
    };

    ws.on('message', (data: RawData) => {
      let msg: { text?: unknown; flush?: unknown; try_trigger_generation?: unknown; xi_api_key?: unknown; 'xi-api-key'?: unknown };
      try {
        msg = JSON.parse(rawText(data)) as typeof msg;
      } catch {
        return void ws.close(1008, 'Invalid message: not JSON.');
      }
      rec.messages.push(msg);
      changed();
      if (rec.messages.length === 1) {
        const key = msg.xi_api_key ?? msg['xi-api-key'];
        if (typeof key === 'string') rec.keyPresent = true;
        if (!rec.authorized) rec.authorized = key === apiKey;
        if (!rec.authorized) return void ws.close(1008, 'Invalid API key.');
        if (msg.text !== ' ') return void ws.close(1008, 'The first message must be a single space.');
        return;
      }
      if (typeof msg.text !== 'string') return void ws.close(1008, 'Invalid message: text missing.');
      if (msg.text === '') {
        closeAsked = true;
        return generate();
      }
      buffer += msg.text;
      rec.text += msg.text;
      const threshold = schedule[Math.min(generations, schedule.length - 1)] ?? 120;
      const trigger = msg.try_trigger_generation === true && buffer.length >= TRIGGER_MIN_CHARS;
      if (rec.autoMode || msg.flush === true || trigger || buffer.length >= threshold) generate();
    });
    ws.on('close', () => {
      if (!rec.finished && !closing) rec.disconnected = true;
      pending = [];
      changed();
    });
    ws.on('error', () => undefined); // a reset client shows as 'close'
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const match = WS_PATH.exec(url.pathname);
    if (!match) return rejectUpgrade(socket, 404);
    const key = req.headers['xi-api-key'];
    const rec = record({
      transport: 'ws',
      voice: decodeURIComponent(match[1]!),
      model: url.searchParams.get('model_id'),
      format: url.searchParams.get('output_format'),
      language: url.searchParams.get('language_code'),
      text: '',
      messages: [],
      autoMode: url.searchParams.get('auto_mode') === 'true',
      keyPresent: typeof key === 'string' && key.length > 0,
      authorized: key === apiKey,
      plan: faults.next(),
    });
    const status = rec.plan.status ?? (rec.keyPresent && !rec.authorized ? 401 : null);
    if (status) {
      rec.status = status;
      rec.finished = true;
      changed();
      return rejectUpgrade(socket, status, rec.plan.retryAfterS);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      rec.status = 101;
      changed();
      // generation_config arrives in the init message; until then the documented default applies.
      const schedule = [...DEFAULT_SCHEDULE];
      ws.once('message', (data: RawData) => {
        try {
          const init = JSON.parse(rawText(data)) as { generation_config?: { chunk_length_schedule?: unknown } };
          const s = init.generation_config?.chunk_length_schedule;
          if (Array.isArray(s) && s.every((n) => typeof n === 'number')) schedule.splice(0, schedule.length, ...s);
        } catch {
          // session() answers the unreadable message.
        }
      });
      session(ws, rec, schedule);
    });
  };

  const server = createServer((req, res) => {
    onHttp(req, res).catch(() => res.destroy());
  });
  server.on('upgrade', onUpgrade);
  const port = await listenOnLoopback(server, sockets);

  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    faults,
    requests,
    waitFor(count, until = () => true, timeoutMs = 5_000) {
      return arrivals.until(
        () => {
          const last = requests[count - 1];
          return last && until(last) ? last : undefined;
        },
        timeoutMs,
        () => `fake ElevenLabs: request ${count} not in the expected state after ${timeoutMs} ms`,
      );
    },
    async close() {
      closing = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const ws of wss.clients) ws.terminate();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
