/**
 * Who may open the inspector (docs/inspector.md "Opening it").
 * - `INSPECTOR_TOKEN` set (any mode): the token must be presented, as `Authorization: Bearer
 *   <token>` or through the session cookie the sign-in form sets (session.ts: signed with the token,
 *   expires after 12 hours, revoked on sign-out; HttpOnly, SameSite=Strict, Path=/inspector).
 *   Compared in constant time.
 * - no token, development or local mode: open to the requests src/http/dev-gate.ts lets through;
 *   the others get 403 VET_E_LOCAL_ONLY.
 * - no token, production or protected mode: disabled; the routes are not even registered.
 * WebSocket upgrades and sign-in/sign-out posts must come from the page's own origin.
 */
import type { FastifyRequest } from 'fastify';
import { originMatches, type AccessVerdict, type DevGate } from '../http/dev-gate.js';
import { bearerOf, cookieOf, safeEqual } from './credentials.js';
import { SignedSessions, type Session } from './session.js';

export { bearerOf, cookieOf, safeEqual } from './credentials.js';

export type InspectorAccess =
  | { mode: 'open'; gate: DevGate }
  | { mode: 'token'; token: string; sessions: SignedSessions }
  | { mode: 'disabled' };

export const COOKIE_NAME = 'vetline_inspector';
export const COOKIE_PATH = '/inspector';
/** An operator's sign-in lasts a working day; the server refuses the cookie after that. */
export const INSPECTOR_SESSION_TTL_MS = 12 * 3_600_000;
/** The one scope the inspector knows: whoever holds INSPECTOR_TOKEN. */
const OPERATOR = 'operator';

export function inspectorAccess(config: { inspector: { token: string | null } }, gate: DevGate): InspectorAccess {
  const token = config.inspector.token;
  if (token !== null) return { mode: 'token', token, sessions: new SignedSessions({ purpose: 'inspector', ttlMs: INSPECTOR_SESSION_TTL_MS }) };
  return gate.enabled ? { mode: 'open', gate } : { mode: 'disabled' };
}

const OK: AccessVerdict = { ok: true };
const UNAUTHORIZED: AccessVerdict = { ok: false, status: 401 };

/** The request's signed-in session (token mode), or null. */
export function sessionOf(access: InspectorAccess, req: FastifyRequest): Session | null {
  if (access.mode !== 'token') return null;
  const cookie = cookieOf(req.headers.cookie, COOKIE_NAME);
  return cookie === null ? null : access.sessions.verify(cookie, (tag) => (tag === OPERATOR ? access.token : null));
}

/** A wrong bearer token is refused outright (no fallback to the cookie). */
export function checkAccess(access: InspectorAccess, req: FastifyRequest): AccessVerdict {
  if (access.mode === 'disabled') return UNAUTHORIZED;
  if (access.mode === 'open') {
    const why = access.gate.check(req);
    return why === null ? OK : { ok: false, status: 403, why };
  }
  const bearer = bearerOf(req.headers.authorization);
  if (bearer !== null) return safeEqual(bearer, access.token) ? OK : UNAUTHORIZED;
  return sessionOf(access, req) ? OK : UNAUTHORIZED;
}

export const isAuthorized = (access: InspectorAccess, req: FastifyRequest): boolean => checkAccess(access, req).ok;

/** A browser's upgrade or form post names its page in `Origin`: it must be this host. Non-browsers send none. */
export const sameOrigin = originMatches;

/** Set-Cookie for a fresh session (token mode). */
export function sessionCookie(access: Extract<InspectorAccess, { mode: 'token' }>, secure: boolean): string {
  const value = access.sessions.issue(OPERATOR, access.token);
  const maxAge = Math.floor(access.sessions.ttlMs / 1000);
  return `${COOKIE_NAME}=${value}; Path=${COOKIE_PATH}; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export const clearedCookie = `${COOKIE_NAME}=; Path=${COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict`;
