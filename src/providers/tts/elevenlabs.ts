/**
 * ElevenLabs streaming TTS over HTTP (`POST /v1/text-to-speech/{voice_id}/stream`) with the official
 * SDK, straight into μ-law 8 kHz (`output_format=ulaw_8000`): what Twilio plays, no transcoding.
 * docs/design/stack.md §3.1.
 *
 * - The SDK is 108 MB and takes 1.2–1.6 s to import, so it is imported lazily; call
 *   `loadElevenLabs()` at boot to move that off the first call. The client is built once, on first use.
 * - SDK retries are off and `timeoutInSeconds` is a backstop that only covers the wait for the
 *   response headers (the SDK clears it once they arrive): deadlines, the stall watchdog and retries
 *   belong to the resilience layer, which aborts `options.signal`.
 * - Chunks are yielded as the response body delivers them; nothing is buffered.
 * - Cancellation: an abort before the headers makes the SDK throw ElevenLabsError, mid-stream the
 *   read throws AbortError or the abort reason. Any error while the signal is aborted is therefore a
 *   cancellation: the iterable ends quietly and yields nothing more.
 * - Every other failure becomes ProviderError('elevenlabs', …). Messages carry the HTTP status and
 *   ElevenLabs' error code (`detail.status`, e.g. `invalid_api_key`), never the key or the text.
 * - Billing: ElevenLabs bills the characters of every request it accepts, including ones cancelled
 *   mid-stream. `characters` counts `text.length` per request sent, so the lead can report usage.
 */
import type * as ElevenLabsModule from '@elevenlabs/elevenlabs-js';
import { ProviderError, failureForStatus, type ProviderFailure } from '../errors.js';
import type { TtsOptions, TtsProvider } from './types.js';
import { vendorFetch } from '../vendor-fetch.js';

type ElevenLabsSdk = typeof ElevenLabsModule;
type ElevenLabsClient = InstanceType<ElevenLabsSdk['ElevenLabsClient']>;

const PROVIDER = 'elevenlabs';
/** Lowest-latency model (~75 ms model time per ElevenLabs), 32 languages. */
export const DEFAULT_ELEVENLABS_MODEL = 'eleven_flash_v2_5';
/** Backstop for the wait for response headers; the resilience layer's deadline is shorter. */
const HEADERS_TIMEOUT_S = 10;
/** The tenant schema's local (flite) voices: never valid ElevenLabs voice ids. */
const LOCAL_VOICES = new Set(['kal', 'slt', 'rms', 'awb']);

let sdk: Promise<ElevenLabsSdk> | undefined;

/** Imports the SDK once per process; call at boot (and await it before starting call deadlines). */
export function loadElevenLabs(): Promise<ElevenLabsSdk> {
  if (!sdk) {
    sdk = import('@elevenlabs/elevenlabs-js');
    sdk.catch(() => (sdk = undefined)); // a failed import may be retried
  }
  return sdk;
}

export interface ElevenLabsTtsOptions {
  apiKey: string;
  /** `https://api.elevenlabs.io` when null or absent; the fake's `http://127.0.0.1:PORT` in tests. */
  baseUrl?: string | null;
  modelId?: string;
  /** Used when the caller passes no cloud voice (empty, or a local flite voice name). */
  defaultVoice: string;
}

export interface ElevenLabsTts extends TtsProvider {
  /** Characters sent for synthesis so far (what ElevenLabs bills). */
  readonly characters: number;
}

/** The ElevenLabs voice for a call: the tenant's cloud voice when the caller passed one. */
export function cloudVoice(voice: string, defaultVoice: string): string {
  const v = voice.trim();
  return v && !LOCAL_VOICES.has(v) ? v : defaultVoice;
}

/** ISO 639-1 for `language_code`: `en-US` → `en`. */
export const languageCode = (language: string): string => language.slice(0, 2).toLowerCase();

export function createElevenLabsTts(opts: ElevenLabsTtsOptions): ElevenLabsTts {
  const modelId = opts.modelId ?? DEFAULT_ELEVENLABS_MODEL;
  let client: Promise<ElevenLabsClient> | undefined;
  let characters = 0;

  const getClient = () => {
    if (client) return client;
    client = loadElevenLabs().then(
      ({ ElevenLabsClient }) =>
        new ElevenLabsClient({
          apiKey: opts.apiKey,
          maxRetries: 0,
          timeoutInSeconds: HEADERS_TIMEOUT_S,
          // The shared vendor pool keeps the connection open between replies (vendor-fetch.ts).
          fetch: vendorFetch,
          ...(opts.baseUrl ? { baseUrl: opts.baseUrl } : {}),
        }),
    );
    client.catch(() => (client = undefined));
    return client;
  };

  async function* synthesize(text: string, o: TtsOptions): AsyncGenerator<Uint8Array> {
    if (o.signal.aborted || !text.trim()) return;
    try {
      const c = await getClient();
      if (o.signal.aborted) return;
      characters += text.length;
      const audio = await c.textToSpeech.stream(
        cloudVoice(o.voice, opts.defaultVoice),
        { text, modelId, outputFormat: 'ulaw_8000', optimizeStreamingLatency: 3, languageCode: languageCode(o.language) },
        { abortSignal: o.signal },
      );
      // Node's web ReadableStream is async-iterable; the SDK's lib typings (DOM) do not say so.
      for await (const chunk of audio as unknown as AsyncIterable<Uint8Array>) {
        if (o.signal.aborted) return;
        if (chunk.length > 0) yield chunk;
      }
    } catch (err) {
      if (o.signal.aborted) return;
      throw toProviderError(err);
    }
  }

  return {
    name: PROVIDER,
    get characters() {
      return characters;
    },
    synthesize,
  };
}

/** ElevenLabs' error body: `{ detail: { status: 'invalid_api_key', message } }`. Only the code is kept. */
function errorCode(body: unknown): string | null {
  const code = (body as { detail?: { status?: unknown } } | null)?.detail?.status;
  return typeof code === 'string' && /^[a-z0-9_]{1,64}$/.test(code) ? code : null;
}

/** undici's parser errors (HTTPParserError, codes HPE_*) mean the server sent bytes that are not HTTP. */
function isParseError(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (e.name === 'HTTPParserError' || (typeof code === 'string' && code.startsWith('HPE_'))) return true;
  }
  return false;
}

/** Maps SDK, fetch and stream errors to a ProviderError, keeping the original as `cause`. */
export function toProviderError(err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  const e = err as { name?: unknown; statusCode?: unknown; body?: unknown };
  const fail = (failure: ProviderFailure, message: string, status: number | null = null) =>
    new ProviderError(PROVIDER, failure, message, status, { cause: err });
  if (e?.name === 'ElevenLabsTimeoutError') return fail('timeout', 'ElevenLabs TTS: no response headers in time');
  if (typeof e?.statusCode === 'number') {
    const code = errorCode(e.body);
    return fail(failureForStatus(e.statusCode), `ElevenLabs TTS answered ${e.statusCode}${code ? ` (${code})` : ''}`, e.statusCode);
  }
  if (isParseError(err)) return fail('protocol', 'ElevenLabs TTS: unreadable response stream');
  return fail('network', 'ElevenLabs TTS: connection failed or closed mid-stream');
}
