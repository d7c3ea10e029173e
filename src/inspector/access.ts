/**
 * Who may open the inspector.
 * - `INSPECTOR_TOKEN` set (any NODE_ENV): the token must be presented, as `Authorization: Bearer
 *   <token>` or through the session cookie the login form sets (an HMAC of the token, never the
 *   token itself; HttpOnly, SameSite=Strict, Path=/inspector). Compared in constant time.
 * - no token, outside production: open (development aid).
 * - no token in production: disabled; the routes are not even registered.
 * WebSocket upgrades must also come from the page's own origin (no cross-site socket hijacking).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { NodeEnv } from '../config/env.js';

export type InspectorAccess = { mode: 'open' } | { mode: 'token'; token: string } | { mode: 'disabled' };

export const COOKIE_NAME = 'vetline_inspector';
export const COOKIE_PATH = '/inspector';

export function inspectorAccess(config: { nodeEnv: NodeEnv; inspector: { token: string | null } }): InspectorAccess {
  if (config.inspector.token !== null) return { mode: 'token', token: config.inspector.token };
  return config.nodeEnv === 'production' ? { mode: 'disabled' } : { mode: 'open' };
}

/** Constant-time string equality: both sides hashed first, so lengths leak nothing either. */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/** The cookie value for a token: stable across restarts, useless without the token to forge. */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('vetline-inspector-session-v1').digest('base64url');
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

export function isAuthorized(access: InspectorAccess, req: FastifyRequest): boolean {
  if (access.mode === 'open') return true;
  if (access.mode === 'disabled') return false;
  const bearer = bearerOf(req.headers.authorization);
  if (bearer !== null) return safeEqual(bearer, access.token);
  const cookie = cookieOf(req.headers.cookie, COOKIE_NAME);
  return cookie !== null && safeEqual(cookie, sessionValue(access.token));
}

/** A browser's WebSocket upgrade names its page in `Origin`: it must be this host. Non-browsers send none. */
export function sameOrigin(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

export function sessionCookie(token: string, secure: boolean): string {
  return `${COOKIE_NAME}=${sessionValue(token)}; Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export const clearedCookie = `${COOKIE_NAME}=; Path=${COOKIE_PATH}; HttpOnly; SameSite=Strict; Max-Age=0`;
