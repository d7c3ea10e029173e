/**
 * ElevenLabs streaming TTS over the stream-input WebSocket
 * (`/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=ulaw_8000`), the variant
 * that accepts text while it is still being written. Same TtsProvider contract as ./elevenlabs.ts,
 * so the two can be swapped and compared (scripts/measure-tts.ts).
 *
 * Protocol (ElevenLabs API reference, "WebSocket"; message shapes as in the SDK's InitializeConnection,
 * SendText, CloseConnection, AudioOutput, FinalOutput types): the key goes in the `xi-api-key`
 * handshake header (never in a message or the URL); the client sends `{ text: ' ' }` first, then
 * text that ends with a space, then `{ text: '' }` to close; the server sends
 * `{ audio: base64, normalizedAlignment }` messages, then `{ isFinal: true }`, and closes.
 *
 * - One socket per synthesize call: a call's sentences are short and cancelled often (barge-in),
 *   and a per-call socket makes cancellation a plain terminate. `synthesizeStream` takes a whole
 *   reply's token stream on one socket: words are sent as they complete and each sentence end is
 *   flushed, so the socket and handshake are paid while the LLM is still writing.
 * - `synthesize(text)` (whole sentences) asks for `auto_mode=true`, which the docs recommend for
 *   full sentences: no chunk schedule, no buffering. Token streams use the default schedule.
 * - Cancellation ends the iterable quietly, as in ./elevenlabs.ts; every other failure becomes a
 *   ProviderError('elevenlabs', …): a refused upgrade by its status, a close 1008 by its reason
 *   (key, quota), an abnormal close as `network`, a frame that is not the documented JSON as
 *   `protocol`.
 */
import WebSocket from 'ws';
import type { RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import { ProviderError, failureForStatus, type ProviderFailure } from '../errors.js';
import { DEFAULT_ELEVENLABS_MODEL, cloudVoice, languageCode, type ElevenLabsTts, type ElevenLabsTtsOptions } from './elevenlabs.js';
import type { TtsOptions } from './types.js';
import { AsyncQueue } from '../async-queue.js';

const PROVIDER = 'elevenlabs';
const DEFAULT_BASE_URL = 'https://api.elevenlabs.io';
/** Backstop for the TCP/TLS/upgrade handshake; the resilience layer's first-chunk budget is shorter. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ElevenLabsWsTtsOptions extends ElevenLabsTtsOptions {
  /** `generation_config.chunk_length_schedule` for token streams (each 50–500); the server default when absent. */
  chunkLengthSchedule?: number[];
}

export interface ElevenLabsWsTts extends ElevenLabsTts {
  /** Speaks text that arrives in pieces (LLM tokens) over one socket, starting before it is complete. */
  synthesizeStream(text: AsyncIterable<string>, options: TtsOptions): AsyncIterable<Uint8Array>;
}

export function createElevenLabsWsTts(opts: ElevenLabsWsTtsOptions): ElevenLabsWsTts {
  const modelId = opts.modelId ?? DEFAULT_ELEVENLABS_MODEL;
  let characters = 0;

  const url = (voice: string, language: string, autoMode: boolean) => {
    const u = new URL(`v1/text-to-speech/${encodeURIComponent(voice)}/stream-input`, withSlash(opts.baseUrl || DEFAULT_BASE_URL));
    u.protocol = u.protocol === 'http:' ? 'ws:' : 'wss:';
    u.searchParams.set('model_id', modelId);
    u.searchParams.set('output_format', 'ulaw_8000');
    u.searchParams.set('language_code', languageCode(language));
    if (autoMode) u.searchParams.set('auto_mode', 'true');
    return u.toString();
  };

  async function* session(pieces: AsyncIterable<string> | Iterable<string>, o: TtsOptions, autoMode: boolean): AsyncGenerator<Uint8Array> {
    if (o.signal.aborted) return;
    const inbox = new AsyncQueue<Uint8Array>();
    const ws = new WebSocket(url(cloudVoice(o.voice, opts.defaultVoice), o.language, autoMode), {
      headers: { 'xi-api-key': opts.apiKey },
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    });
    let finalSeen = false;
    let stopped = false;
    ws.on('error', (err) => inbox.fail(socketError(err)));
    ws.on('unexpected-response', (_req, res) => {
      void refusal(res).then((e) => {
        inbox.fail(e);
        ws.terminate();
      });
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      const msg = isBinary ? null : parseServerMessage(data);
      if (!msg) {
        inbox.fail(fail('protocol', 'ElevenLabs TTS: unreadable WebSocket message'));
        return void ws.terminate();
      }
      if (msg.audio) inbox.push(msg.audio);
      if (msg.isFinal) finalSeen = true;
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (finalSeen || code === 1000) inbox.end();
      else inbox.fail(closeError(code, reason.toString('utf8')));
    });
    const onAbort = () => {
      ws.terminate();
      inbox.end();
    };
    o.signal.addEventListener('abort', onAbort, { once: true });

    // Messages written before the socket opens wait here; the init message always goes first.
    const early: string[] = [JSON.stringify(initMessage(opts.chunkLengthSchedule, autoMode))];
    const send = (msg: object) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
      else if (ws.readyState === WebSocket.CONNECTING) early.push(JSON.stringify(msg));
    };
    ws.on('open', () => {
      for (const m of early.splice(0)) ws.send(m);
    });
    const pump = async () => {
      let pending = '';
      for await (const piece of pieces) {
        if (stopped) return;
        characters += piece.length;
        // A whole sentence goes as it is; a token stream is cut at word ends (the docs ask for
        // text that ends with a space, so a word is never split across generations).
        const words = autoMode ? { ready: piece.trim(), rest: '' } : splitAtWordEnd(pending + piece);
        pending = words.rest;
        if (words.ready) send({ text: `${words.ready} `, ...(/[.!?]$/.test(words.ready) && !autoMode ? { flush: true } : {}) });
      }
      if (stopped) return;
      if (pending.trim()) send({ text: `${pending.trim()} ` });
      send({ text: '' });
    };
    pump().catch((err: unknown) => {
      inbox.fail(err);
      ws.terminate();
    });

    try {
      for await (const chunk of inbox) {
        if (o.signal.aborted) return;
        yield chunk;
      }
    } catch (err) {
      if (o.signal.aborted) return;
      throw err;
    } finally {
      stopped = true;
      o.signal.removeEventListener('abort', onAbort);
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    }
  }

  return {
    name: PROVIDER,
    get characters() {
      return characters;
    },
    synthesize: (text, o) => session(text.trim() ? [text] : [], o, true),
    synthesizeStream: (text, o) => session(text, o, false),
  };
}

const withSlash = (base: string) => (base.endsWith('/') ? base : `${base}/`);

/** ws hands text frames over as a Buffer, or fragments / an ArrayBuffer with other binaryType settings. */
function rawText(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return (Buffer.isBuffer(data) ? data : Buffer.from(data)).toString('utf8');
}

/** Splits off the complete words (up to the last whitespace); the rest may still grow. */
function splitAtWordEnd(text: string): { ready: string; rest: string } {
  const at = text.search(/\s\S*$/);
  if (at < 0) return { ready: '', rest: text };
  return { ready: text.slice(0, at).replace(/\s+/g, ' ').trim(), rest: text.slice(at).trimStart() };
}

function initMessage(schedule: number[] | undefined, autoMode: boolean): object {
  return { text: ' ', ...(schedule && !autoMode ? { generation_config: { chunk_length_schedule: schedule } } : {}) };
}

/** `{ audio, isFinal, normalizedAlignment }`; null for anything that is not that shape. */
function parseServerMessage(data: RawData): { audio: Uint8Array | null; isFinal: boolean } | null {
  let msg: unknown;
  try {
    msg = JSON.parse(rawText(data));
  } catch {
    return null;
  }
  if (typeof msg !== 'object' || msg === null) return null;
  const { audio, isFinal } = msg as { audio?: unknown; isFinal?: unknown };
  if (audio !== undefined && audio !== null && (typeof audio !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(audio))) return null;
  if (!audio && isFinal !== true) return null;
  return { audio: audio ? new Uint8Array(Buffer.from(audio, 'base64')) : null, isFinal: isFinal === true };
}

const fail = (failure: ProviderFailure, message: string, status: number | null = null, cause?: unknown) =>
  new ProviderError(PROVIDER, failure, message, status, cause === undefined ? undefined : { cause });

/** A refused upgrade: the status, and ElevenLabs' error code from the body when it has one. */
async function refusal(res: IncomingMessage): Promise<ProviderError> {
  const status = res.statusCode ?? 0;
  let code: string | null = null;
  try {
    let raw = '';
    for await (const part of res) if ((raw += String(part)).length > 4096) break;
    const c = (JSON.parse(raw) as { detail?: { status?: unknown } }).detail?.status;
    if (typeof c === 'string' && /^[a-z0-9_]{1,64}$/.test(c)) code = c;
  } catch {
    // No readable body: the status says enough.
  }
  return fail(failureForStatus(status), `ElevenLabs TTS WebSocket refused: ${status}${code ? ` (${code})` : ''}`, status);
}

/** Close codes after the upgrade: 1008 carries the reason (bad key, quota, policy). */
function closeError(code: number, reason: string): ProviderError {
  if (code === 1008) {
    const failure: ProviderFailure = /api.?key|unauthori[sz]ed|permission/i.test(reason) ? 'auth' : /quota|exceed|limit|concurren/i.test(reason) ? 'quota' : 'http';
    return fail(failure, `ElevenLabs TTS WebSocket closed by the server (1008, ${failure})`);
  }
  if (code === 1011) return fail('http', 'ElevenLabs TTS WebSocket closed by the server (1011, internal error)');
  return fail('network', `ElevenLabs TTS WebSocket closed before the final message (${code})`);
}

function socketError(err: Error): ProviderError {
  if (/handshake has timed out/i.test(err.message)) return fail('timeout', 'ElevenLabs TTS WebSocket: handshake timed out', null, err);
  if (/invalid (status|utf-8)|invalid opcode|invalid payload|RSV|MASK/i.test(err.message)) {
    return fail('protocol', 'ElevenLabs TTS WebSocket: invalid frame', null, err);
  }
  return fail('network', 'ElevenLabs TTS WebSocket: connection failed', null, err);
}
