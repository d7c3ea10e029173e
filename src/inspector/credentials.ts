/**
 * Reading and comparing credentials, shared by the inspector, the front desk, /twilio/sessions and
 * /metrics: constant-time comparison, a cookie from a Cookie header, a bearer token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** Constant-time string equality: both sides hashed first, so lengths leak nothing either. */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/** One cookie's value from a Cookie header, or null. */
export function cookieOf(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerOf(header: string | undefined): string | null {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m?.[1] ?? null;
}

/** Whether `presented` equals any of `tokens`; every one is compared (no early exit), each in constant time. */
export function matchesAny(presented: string, tokens: readonly string[]): boolean {
  let found = false;
  for (const token of tokens) if (safeEqual(presented, token)) found = true;
  return found;
}
