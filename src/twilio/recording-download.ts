/**
 * Downloads a finished call recording's audio from Twilio (docs/recordings.md).
 *
 * Convention (Twilio's Recording resource docs): the media of `RecordingUrl` is fetched by
 * appending a format extension, `.wav` (binary WAV, audio/x-wav) or `.mp3`, with HTTP basic auth
 * AccountSid:AuthToken (required for accounts that enforce authenticated media access; always
 * sent). For a recording made with two channels the request adds `?RequestedChannels=2`: Twilio
 * documents that parameter for downloading the dual-channel presentation (its changelog for
 * conference recordings, and error 16113 for asking it of a mono recording). Whether a two-party
 * call recording downloads as dual-channel *without* it is not documented: **unverified**, so we
 * ask explicitly, and only when the status callback said `RecordingChannels=2`.
 *
 * Credentials go to one origin only: `https://api.twilio.com`, or the configured `baseUrl` (tests,
 * a fake server on 127.0.0.1). The URL must be a Recording of *our* account
 * (`/2010-04-01/Accounts/{AccountSid}/Recordings/RE…`, no query, fragment or userinfo), so a
 * forged callback cannot make us send the token, or fetch anything else with it.
 * Redirects are followed by hand (at most 3): to the same origin with credentials, anywhere else
 * only over https and without them (whether Twilio redirects media to a CDN is unverified).
 *
 * Bounded: `maxBytes` (default 50 MB, ~27 min of dual-channel 8 kHz PCM16) checked against
 * Content-Length and again while reading; `timeoutMs` (default 60 s) for the whole download.
 * Errors are VetError VET_E_TWILIO_REST `recording download failed: <detail>`, built from our own
 * words and numbers (no URL, account SID, token or response text).
 */
import { VetError } from '../errors.js';

export interface RecordingFetcherOptions {
  accountSid: string;
  authToken: string;
  /** Replaces `https://api.twilio.com` as the only allowed origin (tests: `http://127.0.0.1:PORT`). */
  baseUrl?: string;
  /** Largest body accepted. Default 50 MB. */
  maxBytes?: number;
  /** Bound on the whole download, redirects included. Default 60 000. */
  timeoutMs?: number;
}

export interface FetchRecordingOptions {
  /** Channels the status callback reported (`RecordingChannels`); 2 asks for the dual-channel file. */
  channels?: number | null;
}

/** Downloads `RecordingUrl` as WAV bytes. */
export type RecordingFetcher = (url: string, signal: AbortSignal, options?: FetchRecordingOptions) => Promise<Uint8Array>;

export const RECORDING_MAX_BYTES = 50 * 1024 * 1024;
export const RECORDING_DOWNLOAD_TIMEOUT_MS = 60_000;
const TWILIO_ORIGIN = 'https://api.twilio.com';
const MAX_REDIRECTS = 3;

const fail = (detail: string, cause?: unknown) =>
  new VetError('VET_E_TWILIO_REST', `recording download failed: ${detail}`, cause === undefined ? undefined : { cause });

export function createRecordingFetcher(opts: RecordingFetcherOptions): RecordingFetcher {
  if (!/^AC[0-9a-f]{32}$/i.test(opts.accountSid)) {
    throw new VetError('VET_E_CONFIG', 'Twilio account SID must be AC followed by 32 hex digits');
  }
  if (opts.authToken === '') throw new VetError('VET_E_CONFIG', 'Twilio auth token is empty');
  const maxBytes = opts.maxBytes ?? RECORDING_MAX_BYTES;
  const timeoutMs = opts.timeoutMs ?? RECORDING_DOWNLOAD_TIMEOUT_MS;
  if (!Number.isInteger(maxBytes) || maxBytes <= 0) throw new VetError('VET_E_CONFIG', 'recording maxBytes must be a positive integer');
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new VetError('VET_E_CONFIG', 'recording timeoutMs must be a positive integer');
  const base = parseBase(opts.baseUrl ?? TWILIO_ORIGIN);
  const recordingPath = new RegExp(`^${escape(base.path)}/2010-04-01/Accounts/${opts.accountSid}/Recordings/RE[0-9a-f]{32}$`, 'i');
  const authorization = `Basic ${Buffer.from(`${opts.accountSid}:${opts.authToken}`).toString('base64')}`;

  return async (rawUrl, signal, options = {}) => {
    let url: URL;
    try {
      url = new URL(rawUrl);
    } catch {
      throw fail('recording URL is not a URL');
    }
    // Refused before any request: credentials are never sent anywhere but our account's recordings.
    if (url.origin !== base.origin || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '' || !recordingPath.test(url.pathname)) {
      throw fail(`recording URL is not a Twilio recording of this account (allowed: ${base.origin === TWILIO_ORIGIN ? 'https://api.twilio.com' : 'the configured base URL'})`);
    }
    if (signal.aborted) throw fail('cancelled', signal.reason);
    const deadline = AbortSignal.timeout(timeoutMs);
    const all = AbortSignal.any([signal, deadline]);
    let target = new URL(`${url.href}.wav${options.channels === 2 ? '?RequestedChannels=2' : ''}`);
    try {
      for (let hop = 0; ; hop++) {
        const sameOrigin = target.origin === base.origin;
        const res = await fetch(target, {
          method: 'GET',
          redirect: 'manual',
          signal: all,
          headers: sameOrigin ? { authorization, accept: 'audio/x-wav, audio/wav' } : { accept: 'audio/x-wav, audio/wav' },
        });
        if (res.status >= 300 && res.status < 400) {
          await res.body?.cancel().catch(() => {});
          const location = res.headers.get('location');
          if (!location || hop >= MAX_REDIRECTS) throw fail(location ? 'too many redirects' : `HTTP ${res.status} without a location`);
          let next: URL;
          try {
            next = new URL(location, target);
          } catch {
            throw fail('redirect to an invalid URL');
          }
          if (next.origin !== base.origin && next.protocol !== 'https:') throw fail('redirect to a non-https URL refused');
          target = next;
          continue;
        }
        if (!res.ok) {
          await res.body?.cancel().catch(() => {});
          throw fail(`HTTP ${res.status}`);
        }
        return await readCapped(res, maxBytes);
      }
    } catch (err) {
      if (err instanceof VetError) throw err;
      if (signal.aborted) throw fail('cancelled', signal.reason);
      if (deadline.aborted) throw fail(`timeout after ${timeoutMs} ms`);
      // A fetch TypeError's cause may carry the URL; only a code-like name survives.
      const code = (err as { cause?: { code?: unknown } } | null)?.cause?.code;
      throw fail(`network ${typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'error'}`);
    }
  };
}

async function readCapped(res: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw fail(`recording larger than ${maxBytes} bytes`);
  }
  if (!res.body) return new Uint8Array(0);
  // Node's fetch types leave the body's chunk type open; undici delivers Uint8Array.
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw fail(`recording larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function parseBase(raw: string): { origin: string; path: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new VetError('VET_E_CONFIG', 'recording baseUrl is not a URL');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new VetError('VET_E_CONFIG', 'recording baseUrl must be an http(s) origin, optionally with a path');
  }
  return { origin: url.origin, path: url.pathname.replace(/\/+$/, '') };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
