/**
 * X-Twilio-Signature validation (docs/design/twilio.md §2).
 *
 * The signed URL is always PUBLIC_BASE_URL + the raw request path (and query) as received, never
 * built from Host / X-Forwarded-Host / req.protocol: behind a TLS-terminating proxy those are wrong
 * for genuine requests, and they are chosen by the sender, so trusting them would let a request
 * Twilio signed for another URL of the account be replayed here (docs/design/reliability.md F14).
 *
 * Results carry a reason code instead of a boolean so callers can log why a request failed without
 * logging the signature itself.
 */
import twilio from 'twilio';
import type { FastifyReply, FastifyRequest } from 'fastify';

export const SIGNATURE_HEADER = 'x-twilio-signature';

/** `off-development` is the seed's bypass: only in development or local mode (docs/configuration.md "Modes": there only for the requests the mode allows), announced loudly. */
export type ValidationMode = 'on' | 'off-development';

export interface SignatureConfig {
  /** The https origin Twilio calls, e.g. `https://voice.example.com` (no trailing slash). */
  publicBaseUrl: string;
  /** Primary auth token; null only with validation `off-development`. */
  authToken: string | null;
  validation: ValidationMode;
}

export type SignatureFailureReason =
  /** No X-Twilio-Signature header (or an empty one). */
  | 'missing'
  /** Header present but cannot be a base64 HMAC-SHA1 (wrong length or alphabet). */
  | 'malformed'
  /** Well-formed signature that does not match URL + parameters. */
  | 'mismatch'
  /** The raw URL is not origin-form (`/path?query`), e.g. an absolute-form request line. */
  | 'bad-url'
  /** WebSocket upgrade with a query string: Twilio never sends one (docs/design/twilio.md §1.2). */
  | 'query-on-upgrade'
  /** Validation is on but no token is configured: a wiring bug, refused rather than bypassed. */
  | 'no-token';

/** Which URL form matched: Twilio's docs do not say which one it signs for upgrades. */
export type SignatureVariant = 'exact' | 'trailing-slash';

export type SignatureResult =
  | { ok: true; mode: 'validated'; variant: SignatureVariant }
  | { ok: true; mode: 'bypassed' }
  | { ok: false; reason: SignatureFailureReason };

/** base64 of a 20-byte HMAC-SHA1 is always 28 characters ending in one `=`. */
const SIGNATURE_SHAPE = /^[A-Za-z0-9+/]{27}=$/;

const fail = (reason: SignatureFailureReason): SignatureResult => ({ ok: false, reason });

/** Normalises the config origin: one trailing slash dropped, nothing else touched. */
export function originOf(publicBaseUrl: string): string {
  return publicBaseUrl.endsWith('/') ? publicBaseUrl.slice(0, -1) : publicBaseUrl;
}

/** `https://host` → `wss://host` (and `http:` → `ws:` for local development). */
export function webSocketOrigin(publicBaseUrl: string): string {
  return originOf(publicBaseUrl).replace(/^https:/i, 'wss:').replace(/^http:/i, 'ws:');
}

function readHeader(value: string | string[] | undefined): { sig: string } | { reason: SignatureFailureReason } {
  if (value === undefined || value === '') return { reason: 'missing' };
  if (typeof value !== 'string' || !SIGNATURE_SHAPE.test(value)) return { reason: 'malformed' };
  return { sig: value };
}

/** `validateRequest` parses the URL with `new URL()` on its fallback path; never let that throw. */
function safeValidate(token: string, sig: string, url: string, params: Record<string, unknown>): boolean {
  try {
    return twilio.validateRequest(token, sig, url, params);
  } catch {
    return false;
  }
}

function preamble(
  cfg: SignatureConfig,
  rawUrl: string,
  header: string | string[] | undefined,
): { token: string; sig: string } | SignatureResult {
  if (cfg.validation === 'off-development') return { ok: true, mode: 'bypassed' };
  if (cfg.authToken === null || cfg.authToken === '') return fail('no-token');
  if (!rawUrl.startsWith('/')) return fail('bad-url');
  const h = readHeader(header);
  if ('reason' in h) return fail(h.reason);
  return { token: cfg.authToken, sig: h.sig };
}

/**
 * A form webhook. `params` must be the parsed body exactly as received: every field, untrimmed,
 * repeated fields as arrays (the library signs arrays too). Validate before any zod parsing.
 */
export function verifyWebhook(
  cfg: SignatureConfig,
  req: { rawUrl: string; header: string | string[] | undefined; params: Record<string, unknown> },
): SignatureResult {
  const pre = preamble(cfg, req.rawUrl, req.header);
  if ('ok' in pre) return pre;
  const url = originOf(cfg.publicBaseUrl) + req.rawUrl;
  return safeValidate(pre.token, pre.sig, url, req.params)
    ? { ok: true, mode: 'validated', variant: 'exact' }
    : fail('mismatch');
}

/**
 * The Media Stream WebSocket upgrade: Twilio signs the `wss://` URL of `<Stream url>` with empty
 * params (an `https://` signature must fail). Twilio advises also trying a trailing `/`.
 */
export function verifyUpgrade(
  cfg: SignatureConfig,
  req: { rawUrl: string; header: string | string[] | undefined },
): SignatureResult {
  if (req.rawUrl.includes('?')) return fail('query-on-upgrade');
  const pre = preamble(cfg, req.rawUrl, req.header);
  if ('ok' in pre) return pre;
  const url = webSocketOrigin(cfg.publicBaseUrl) + req.rawUrl;
  if (safeValidate(pre.token, pre.sig, url, {})) return { ok: true, mode: 'validated', variant: 'exact' };
  if (safeValidate(pre.token, pre.sig, `${url}/`, {})) return { ok: true, mode: 'validated', variant: 'trailing-slash' };
  return fail('mismatch');
}

/**
 * A ready-made `preValidation` hook for the lead's `/twilio/ws` route. Hooks run before the upgrade,
 * so replying here refuses it: 400 for a query string, 403 (empty body) for any other failure.
 * It logs which URL variant matched, since which one Twilio signs is unverified.
 */
export function upgradeSignatureHook(cfg: SignatureConfig) {
  return async function verifyTwilioUpgrade(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const result = verifyUpgrade(cfg, { rawUrl: req.raw.url ?? '', header: req.headers[SIGNATURE_HEADER] });
    if (result.ok) {
      if (result.mode === 'validated') req.log.debug({ variant: result.variant }, 'stream upgrade signature valid');
      return undefined;
    }
    req.log.warn({ code: 'VET_E_SIGNATURE', reason: result.reason }, 'stream upgrade refused');
    return reply.code(result.reason === 'query-on-upgrade' ? 400 : 403).send();
  };
}
