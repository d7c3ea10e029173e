/**
 * A fake ElevenLabs Scribe Realtime (speech to text) on 127.0.0.1, port 0, speaking the wire
 * protocol of @elevenlabs/elevenlabs-js 2.73.0 (wrapper/realtime) and the API reference:
 *
 *   GET /v1/speech-to-text/realtime?model_id=…&audio_format=ulaw_8000&commit_strategy=manual
 *       [&language_code=…][&keyterms=…]  (WebSocket, key in the `xi-api-key` header)
 *   → session_started { session_id, config }
 *   ← input_audio_chunk { audio_base_64, commit, sample_rate }
 *   → partial_transcript { text } while speech arrives, committed_transcript { text } after a commit
 *
 * Timing, as the real service behaves (the thing the OpenAI Realtime fake does differently):
 * partials come while the caller talks. The segment's words are revealed one per `wordMs` of
 * speech received (20 ms frames at or above -45 dBFS; keep-alive silence and line noise are not
 * speech), each partial `partialMs` after the audio that completed its word; the committed
 * transcript `finalMs` after the commit. Each delay varies by ±`jitterMs` (uniform), never
 * reordering a session's messages.
 * The segment's text is the responder's answer, asked once at the segment's first speech frame
 * with the segment's audio so far (pre-roll included); a segment without speech commits ''.
 *
 * The fake accepts `audio_format=ulaw_8000`, `commit_strategy=manual` and `sample_rate` 8000 only
 * (what the adapter sends); anything else gets `invalid_request` / `input_error` and, for the
 * query, a close. A session that receives no chunk for `idleTimeoutMs` (default 10 s, about what
 * the real service allows) gets `insufficient_audio_activity` and is closed.
 *
 * Faults: every session takes one FaultPlan from `faults`. `status` refuses the upgrade with that
 * status and ElevenLabs' error JSON; a wrong key is refused with 401. `firstByteMs` delays the
 * upgrade. The server's messages are the chunks (session_started is chunk 0): `chunkDelayMs`,
 * `stallAfterChunks`, `dropAfterChunks`, `malformedAfterChunks`. `inband` scripts one vendor error
 * message per session (`{ type: 'quota_exceeded', at: 'commit' }`: sent instead of the first
 * committed transcript, then the socket is closed); `inject` sends any message on the open sessions.
 *
 * Observable: `sessions` record what the server received. No vitest imports (the bench uses it).
 */
import { createServer } from 'node:http';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { ulawEnergyDb } from '../../src/audio/ulaw.js';
import { ChunkGate, FaultScript, listenOnLoopback, sleep } from './fault-plan.js';
import type { FaultPlan } from './fault-plan.js';

/** A canary key: tests assert it appears in no error or log line. */
export const FAKE_SCRIBE_KEY = 'canary-xi-scribe-key-77aa66bb55cc';

const PATH = '/v1/speech-to-text/realtime';
const FRAME = 160;
const SPEECH_DB = -45;

export interface ScribeAudio {
  /** The segment's audio so far, 8 kHz μ-law. */
  ulaw: Uint8Array;
  ms: number;
}
export type ScribeResponder = (audio: ScribeAudio) => string;

export interface ScribeInband {
  /** A vendor error message type: auth_error, quota_exceeded, rate_limited, commit_throttled, … */
  type: string;
  /** Right after session_started, or instead of the first committed transcript. */
  at: 'start' | 'commit';
}

export interface FakeScribeCommit {
  ulaw: Uint8Array;
  ms: number;
  /** Speech in the segment (frames at or above the speech level), ms. */
  speechMs: number;
  text: string;
}

export interface FakeScribeSession {
  id: string;
  query: Record<string, string>;
  keyterms: string[];
  authorized: boolean;
  /** 101, or the status the upgrade was refused with. */
  status: number;
  /** Message types received, in order (`input_audio_chunk` with commit shows as `commit`). */
  events: string[];
  audioBytes: number;
  /** Chunks received and their sample rates. */
  chunks: number;
  sampleRates: number[];
  commits: FakeScribeCommit[];
  /** Partial texts sent, in order. */
  partials: string[];
  /** Performance.now() of the first speech frame received (any segment), null before. */
  firstSpeechAt: number | null;
  closedBy: 'client' | 'server' | null;
  closeCode: number | null;
}

export interface FakeScribeOptions {
  apiKey?: string;
  responder?: ScribeResponder;
  /** Commit → committed transcript, ms. Default 300. */
  finalMs?: number;
  /** Audio completing a word → its partial, ms. Default 150. */
  partialMs?: number;
  /** Uniform ± variation of every delay, ms. Default 40. */
  jitterMs?: number;
  /** Speech per revealed word, ms. Default 300 (about 200 words a minute). */
  wordMs?: number;
  /** No chunk for this long → insufficient_audio_activity and close. Default 10 000. */
  idleTimeoutMs?: number;
}

export interface FakeScribe {
  /** `http://127.0.0.1:PORT`: ELEVENLABS_BASE_URL (the adapter derives ws:// from it). */
  readonly url: string;
  readonly apiKey: string;
  readonly faults: FaultScript;
  /** In-band vendor errors, one per session in arrival order. */
  readonly inband: ScribeInband[];
  readonly sessions: readonly FakeScribeSession[];
  responder: ScribeResponder;
  finalMs: number;
  partialMs: number;
  jitterMs: number;
  wordMs: number;
  idleTimeoutMs: number;
  /** Sends `message` now on every open session (a message the script does not produce by itself). */
  inject(message: Record<string, unknown>): void;
  close(): Promise<void>;
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable' };
const DETAIL: Record<number, { status: string; message: string }> = {
  401: { status: 'invalid_api_key', message: 'Invalid API key' },
  403: { status: 'missing_permissions', message: 'The API key is missing the speech_to_text permission.' },
  404: { status: 'not_found', message: 'Not found.' },
  429: { status: 'too_many_concurrent_requests', message: 'Too many concurrent requests.' },
};

const words = (text: string) => text.split(/\s+/).filter(Boolean);

export async function startFakeScribe(options: FakeScribeOptions = {}): Promise<FakeScribe> {
  const apiKey = options.apiKey ?? FAKE_SCRIBE_KEY;
  const faults = new FaultScript();
  const sessions: FakeScribeSession[] = [];
  const sockets = new Set<Socket | Duplex>();
  const timers = new Set<NodeJS.Timeout>();
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  const senders = new Set<(msg: Record<string, unknown>) => void>();
  let nextId = 1;

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); fn(); }, Math.max(0, ms));
    timers.add(t);
    return t;
  };
  const jittered = (ms: number) => ms + (Math.random() * 2 - 1) * fake.jitterMs;

  const fake: FakeScribe = {
    url: '',
    apiKey,
    faults,
    inband: [],
    sessions,
    responder: options.responder ?? (() => 'I would like to book an appointment for Bella.'),
    finalMs: options.finalMs ?? 300,
    partialMs: options.partialMs ?? 150,
    jitterMs: options.jitterMs ?? 40,
    wordMs: options.wordMs ?? 300,
    idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
    inject: (message) => {
      for (const send of senders) send(message);
    },
    close: async () => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  async function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const plan = faults.next();
    const url = new URL(req.url ?? '/', 'http://fake');
    const session: FakeScribeSession = {
      id: `scribe_fake${nextId++}`, query: Object.fromEntries(url.searchParams), keyterms: url.searchParams.getAll('keyterms'),
      authorized: req.headers['xi-api-key'] === apiKey, status: 101, events: [], audioBytes: 0, chunks: 0, sampleRates: [], commits: [],
      partials: [], firstSpeechAt: null, closedBy: null, closeCode: null,
    };
    sessions.push(session);
    socket.on('error', () => undefined); // a client reset mid-handshake must not crash the fake
    if (plan.firstByteMs) await sleep(plan.firstByteMs);
    const status = plan.status ?? (!session.authorized ? 401 : url.pathname !== PATH ? 404 : 0);
    if (status) {
      session.status = status;
      session.closedBy = 'server';
      const body = JSON.stringify({ detail: DETAIL[status] ?? { status: 'error', message: 'An error occurred.' } });
      const headers = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), connection: 'close' };
      socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => runSession(ws, session, plan, fake.inband.shift() ?? null));
  }

  function runSession(ws: WebSocket, s: FakeScribeSession, plan: FaultPlan, inband: ScribeInband | null): void {
    let serverEnded = false;
    const gate = new ChunkGate(plan, { write: (m) => ws.send(m), destroy: () => { serverEnded = true; ws.terminate(); } }, '{"message_type":"partial_tr');
    const send = (msg: Record<string, unknown>) => gate.push(JSON.stringify(msg));
    senders.add(send);
    const endWith = (type: string, error: string) => {
      send({ message_type: type, error });
      void gate.done().then(() => {
        serverEnded = true;
        ws.close(1008, type);
      });
    };
    // Messages keep their order whatever the jitter, like one vendor session answering in turn:
    // each is due no earlier than the one before, and one timer sends them from a queue. (A timer
    // each would not do: Node measures a timer from the loop's cached whole-millisecond clock, so a
    // message scheduled later in the same tick with a shorter delay to the same due time fired first.)
    const outQueue: { due: number; fn: () => void }[] = [];
    let armed = false;
    const arm = () => {
      if (armed || outQueue.length === 0) return;
      armed = true;
      later(outQueue[0]!.due - performance.now(), sendDue);
    };
    const sendDue = () => {
      armed = false;
      while (outQueue.length > 0 && outQueue[0]!.due <= performance.now() + 1) outQueue.shift()!.fn();
      arm();
    };
    const inOrder = (delayMs: number, fn: () => void) => {
      outQueue.push({ due: Math.max(performance.now() + delayMs, outQueue.at(-1)?.due ?? 0), fn });
      arm();
    };
    // The open segment: its audio, speech so far, text (chosen at its first speech) and words revealed.
    let audio: Buffer[] = [];
    let speechMs = 0;
    let text: string | null = null;
    let revealed = 0;
    const idle = setTimeout(onIdle, fake.idleTimeoutMs);

    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      senders.delete(send);
      clearTimeout(idle);
      s.closeCode = code;
      s.closedBy ??= serverEnded ? 'server' : 'client';
    });

    const q = s.query;
    const refused = !q.model_id ? 'model_id is required' : q.audio_format !== 'ulaw_8000' ? 'This fake accepts audio_format=ulaw_8000 only.'
      : (q.commit_strategy ?? 'manual') !== 'manual' ? 'This fake implements commit_strategy=manual only.' : null;
    if (refused) return endWith('invalid_request', refused);
    send({ message_type: 'session_started', session_id: s.id, config: {
      sample_rate: 8000, audio_format: q.audio_format, language_code: q.language_code ?? null, commit_strategy: 'manual',
      model_id: q.model_id, include_timestamps: false, keyterms: s.keyterms, enable_logging: true,
    } });
    if (inband?.at === 'start') return endWith(inband.type, `Scripted ${inband.type}.`);

    ws.on('message', (data: RawData) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(Buffer.isBuffer(data) ? data.toString('utf8') : '') as Record<string, unknown>;
      } catch {
        return send({ message_type: 'input_error', error: 'Invalid message: not JSON.' });
      }
      if (msg.message_type !== 'input_audio_chunk') {
        s.events.push(String(msg.message_type));
        return send({ message_type: 'input_error', error: `Unknown message_type: ${String(msg.message_type)}` });
      }
      s.events.push(msg.commit === true ? 'commit' : 'input_audio_chunk');
      idle.refresh();
      const rate = Number(msg.sample_rate);
      s.sampleRates.push(rate);
      if (rate !== 8000) return send({ message_type: 'input_error', error: `sample_rate ${rate} does not match audio_format ulaw_8000.` });
      const chunk = Buffer.from(typeof msg.audio_base_64 === 'string' ? msg.audio_base_64 : '', 'base64');
      s.chunks++;
      s.audioBytes += chunk.length;
      hear(chunk);
      if (msg.commit === true) commit();
    });

    function hear(chunk: Buffer): void {
      audio.push(chunk);
      for (let i = 0; i + FRAME <= chunk.length; i += FRAME) {
        if (ulawEnergyDb(chunk.subarray(i, i + FRAME)) < SPEECH_DB) continue;
        speechMs += FRAME / 8;
        s.firstSpeechAt ??= performance.now();
        if (text === null) {
          const ulaw = new Uint8Array(Buffer.concat(audio));
          text = fake.responder({ ulaw, ms: ulaw.length / 8 });
        }
      }
      if (text === null) return;
      const all = words(text);
      const due = Math.min(all.length, Math.floor(speechMs / fake.wordMs));
      if (due <= revealed) return;
      revealed = due;
      const partial = all.slice(0, due).join(' ');
      inOrder(jittered(fake.partialMs), () => {
        s.partials.push(partial);
        send({ message_type: 'partial_transcript', text: partial });
      });
    }

    function commit(): void {
      const ulaw = new Uint8Array(Buffer.concat(audio));
      const committed = text ?? '';
      s.commits.push({ ulaw, ms: ulaw.length / 8, speechMs, text: committed });
      audio = [];
      speechMs = 0;
      text = null;
      revealed = 0;
      if (inband?.at === 'commit' && s.commits.length === 1) return inOrder(jittered(fake.finalMs), () => endWith(inband.type, `Scripted ${inband.type}.`));
      inOrder(jittered(fake.finalMs), () => send({ message_type: 'committed_transcript', text: committed }));
    }

    function onIdle(): void {
      endWith('insufficient_audio_activity', `No audio received for ${fake.idleTimeoutMs / 1000} seconds.`);
    }
  }

  const server = createServer((_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end('{"detail":{"status":"not_found","message":"Not found."}}'));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    onUpgrade(req, socket, head).catch(() => socket.destroy());
  });
  const port = await listenOnLoopback(server, sockets);
  return Object.assign(fake, { url: `http://127.0.0.1:${port}` });
}
