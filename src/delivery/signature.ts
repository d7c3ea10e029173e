/**
 * Webhook signing (docs/delivery.md "Verifying a delivery"), Stripe-style:
 *
 *   X-Vetline-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *   Idempotency-Key: <payload id>
 *
 * The timestamp is signed with the body, so a captured request cannot be replayed outside the
 * receiver's tolerance window; the id lets the receiver drop the duplicates at-least-once delivery
 * may send. `verifyVetlineSignature` is what a receiver runs (the docs show the same recipe).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'X-Vetline-Signature';
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** Hex HMAC-SHA256 of `<t>.<raw body>`. */
export function vetlineSignatureHex(secret: string, timestampSeconds: number, rawBody: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.`).update(rawBody).digest('hex');
}

/** The header value for `rawBody` sent at `nowMs` (epoch milliseconds). */
export function signVetlineBody(secret: string, rawBody: string | Buffer, nowMs: number): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${vetlineSignatureHex(secret, t, rawBody)}`;
}

export interface VerifyOptions {
  /** How far `t` may be from now, either way. Default 300. */
  toleranceSeconds?: number;
  /** Now, epoch milliseconds. Default Date.now(). */
  now?: number;
}

/**
 * True when `header` carries a `t` within the tolerance and a `v1` equal to the HMAC of
 * `<t>.<rawBody>` (compared in constant time). Several `v1` entries are allowed (a receiver may
 * accept either of two secrets while rotating: call once per secret). `rawBody` must be the bytes
 * as received, before any JSON parsing.
 */
export function verifyVetlineSignature(
  secret: string,
  header: string | null | undefined,
  rawBody: string | Buffer,
  { toleranceSeconds = DEFAULT_TOLERANCE_SECONDS, now = Date.now() }: VerifyOptions = {},
): boolean {
  if (typeof header !== 'string' || secret === '') return false;
  let t: number | null = null;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d{1,12}$/.test(value)) t = Number(value);
    else if (key === 'v1' && /^[0-9a-f]{64}$/.test(value)) candidates.push(value);
  }
  if (t === null || candidates.length === 0) return false;
  if (Math.abs(now / 1000 - t) > toleranceSeconds) return false;
  const expected = Buffer.from(vetlineSignatureHex(secret, t, rawBody), 'hex');
  let ok = false;
  for (const candidate of candidates) {
    // Every candidate compared, so timing does not tell which one (or whether any) matched.
    if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) ok = true;
  }
  return ok;
}
