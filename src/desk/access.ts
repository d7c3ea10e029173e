/**
 * Who may open the front desk, and which clinic's data they see (the scope).
 *
 * - Token mode (any desk token configured, any mode): each clinic has its own token (the clinic
 *   file's `desk.tokenEnv` names the variable); it sees and changes only that clinic. The operator's
 *   token (`INSPECTOR_TOKEN`) sees every clinic. A token is presented as `Authorization: Bearer
 *   <token>` or through the session cookie the sign-in form sets (src/inspector/session.ts: tagged
 *   with the scope, signed with its token, never the token itself; expires after 30 days, revoked on
 *   sign-out; HttpOnly, SameSite=Strict, Path=/desk). Compared in constant time.
 * - No token at all, development or local mode: open, every clinic (development aid; the page says
 *   so), to the requests src/http/dev-gate.ts lets through.
 * - No token at all, production or protected mode: disabled; the routes are not even registered (404).
 *
 * Mutations authenticated by the cookie must come from the page's own origin (see `originAllowed`).
 */
import type { FastifyRequest } from 'fastify';
import type { TenantDirectory } from '../config/tenants.js';
import { VetError } from '../errors.js';
import type { DevGate } from '../http/dev-gate.js';
import { bearerOf, cookieOf, safeEqual } from '../inspector/credentials.js';
import { SignedSessions, type Session } from '../inspector/session.js';

export type DeskAccess =
  | { mode: 'open'; gate: DevGate }
  | {
      mode: 'token';
      operatorToken: string | null;
      clinicTokens: ReadonlyMap<string /* clinicId */, string /* token */>;
      sessions: SignedSessions;
    }
  | { mode: 'disabled' };

/** What one request may see: `clinic` is bounded to one clinic; `operator` and `open` see all. */
export type DeskScope = { kind: 'open' } | { kind: 'operator' } | { kind: 'clinic'; clinicId: string };

/**
 * How the request proved its scope: the cookie is ambient (a browser sends it anywhere), so it needs
 * the origin check. `session`: the signed-in session a cookie carried (to sign it out).
 */
export type DeskAuth = { scope: DeskScope; via: 'open' | 'bearer' | 'cookie'; session?: Session };

export const DESK_COOKIE_NAME = 'vetline_desk';
export const DESK_COOKIE_PATH = '/desk';
/** A front-desk device stays signed in for 30 days; rotating the token signs every device out. */
export const DESK_COOKIE_MAX_AGE_S = 30 * 24 * 3600;

const TOKEN_SHAPE = /^\S{16,512}$/;

/** The clinic a scope is bounded to, or null for every clinic (the store's `clinicId` convention). */
export const scopeClinic = (scope: DeskScope): string | null => (scope.kind === 'clinic' ? scope.clinicId : null);

/** Whether a scope may see `clinicId`'s data. */
export const scopeSees = (scope: DeskScope, clinicId: string): boolean => scope.kind !== 'clinic' || scope.clinicId === clinicId;

/**
 * The desk's access mode from configuration. Throws VET_E_CONFIG (naming the clinic, never the
 * value) when a token is too short, or when two scopes share a token: one token must mean one scope.
 */
export function deskAccess(cfg: { gate: DevGate; operatorToken: string | null; clinicTokens: ReadonlyMap<string, string> }): DeskAccess {
  const problems: string[] = [];
  if (cfg.operatorToken !== null && !TOKEN_SHAPE.test(cfg.operatorToken)) {
    problems.push('the operator token (INSPECTOR_TOKEN) must be 16–512 characters without spaces');
  }
  const owners = new Map<string, string>();
  if (cfg.operatorToken !== null) owners.set(cfg.operatorToken, 'the operator (INSPECTOR_TOKEN)');
  for (const [clinicId, token] of cfg.clinicTokens) {
    if (!TOKEN_SHAPE.test(token)) {
      problems.push(`clinic ${clinicId}: its desk token (desk.tokenEnv) must be 16–512 characters without spaces; generate one with \`openssl rand -base64 24\``);
      continue;
    }
    const owner = owners.get(token);
    if (owner !== undefined) problems.push(`clinic ${clinicId}: its desk token is the same as ${owner}'s; give every clinic its own token`);
    else owners.set(token, `clinic ${clinicId}`);
  }
  if (problems.length > 0) throw new VetError('VET_E_CONFIG', `desk tokens:\n${problems.join('\n')}`);
  if (cfg.operatorToken !== null || cfg.clinicTokens.size > 0) {
    const sessions = new SignedSessions({ purpose: 'desk', ttlMs: DESK_COOKIE_MAX_AGE_S * 1000 });
    return { mode: 'token', operatorToken: cfg.operatorToken, clinicTokens: new Map(cfg.clinicTokens), sessions };
  }
  return cfg.gate.enabled ? { mode: 'open', gate: cfg.gate } : { mode: 'disabled' };
}

/** Each clinic's desk token (its file's `desk.tokenEnv`, read and checked by loadTenants), by clinic id. */
export function clinicDeskTokens(tenants: Pick<TenantDirectory, 'all' | 'secretsOf'>): Map<string, string> {
  const tokens = new Map<string, string>();
  for (const t of tenants.all()) {
    const token = tenants.secretsOf(t.id).deskToken;
    if (token !== null) tokens.set(t.id, token);
  }
  return tokens;
}

/** `operator` or `c-<clinicId>` (clinic ids are lower-case letters, digits and dashes: cookie-safe). */
const tagOf = (scope: DeskScope): string => (scope.kind === 'clinic' ? `c-${scope.clinicId}` : 'operator');
const scopeOfTag = (tag: string): DeskScope | null =>
  tag === 'operator' ? { kind: 'operator' } : tag.startsWith('c-') ? { kind: 'clinic', clinicId: tag.slice(2) } : null;

/** A fresh session cookie value for a scope signed in with its token (survives restarts; dies with the token). */
export function deskSessionValue(access: Extract<DeskAccess, { mode: 'token' }>, scope: DeskScope): string {
  const token = tokenOfScope(access, scope);
  if (token === null) throw new Error('deskSessionValue: no token backs this scope');
  return access.sessions.issue(tagOf(scope), token);
}

/**
 * The scope a presented token opens, or null. Every configured token is compared (no early exit),
 * each in constant time, so the answer's timing says nothing about which token came close.
 */
export function scopeOfToken(access: DeskAccess, presented: string): DeskScope | null {
  if (access.mode !== 'token') return null;
  let found: DeskScope | null = null;
  if (access.operatorToken !== null && safeEqual(presented, access.operatorToken)) found = { kind: 'operator' };
  for (const [clinicId, token] of access.clinicTokens) {
    if (safeEqual(presented, token) && found === null) found = { kind: 'clinic', clinicId };
  }
  return found;
}

/** The token that backs a scope, to sign its cookie. */
export function tokenOfScope(access: DeskAccess, scope: DeskScope): string | null {
  if (access.mode !== 'token') return null;
  if (scope.kind === 'operator') return access.operatorToken;
  if (scope.kind === 'clinic') return access.clinicTokens.get(scope.clinicId) ?? null;
  return null;
}

/** The scope and session a cookie carries, when signed by the scope's current token, unexpired and not signed out. */
function sessionOfCookie(access: DeskAccess & { mode: 'token' }, value: string): { scope: DeskScope; session: Session } | null {
  const session = access.sessions.verify(value, (tag) => {
    const scope = scopeOfTag(tag);
    return scope === null ? null : tokenOfScope(access, scope);
  });
  const scope = session === null ? null : scopeOfTag(session.tag);
  return session !== null && scope !== null ? { scope, session } : null;
}

/**
 * The request's scope, or null (401). A bearer token wins over the cookie; a wrong bearer token is
 * refused outright (no fallback to the cookie).
 */
export function authenticate(access: DeskAccess, req: FastifyRequest): DeskAuth | null {
  if (access.mode === 'open') return access.gate.check(req) === null ? { scope: { kind: 'open' }, via: 'open' } : null;
  if (access.mode === 'disabled') return null;
  const bearer = bearerOf(req.headers.authorization);
  if (bearer !== null) {
    const scope = scopeOfToken(access, bearer);
    return scope ? { scope, via: 'bearer' } : null;
  }
  const cookie = cookieOf(req.headers.cookie, DESK_COOKIE_NAME);
  if (cookie === null) return null;
  const found = sessionOfCookie(access, cookie);
  return found ? { scope: found.scope, via: 'cookie', session: found.session } : null;
}

/**
 * CSRF defence for state-changing requests (with SameSite=Strict on the cookie): a browser names the
 * page that sent the request in `Origin`, which must be this host. `Origin: null` (sandboxed frames,
 * privacy settings) passes only with `Sec-Fetch-Site: same-origin`, which no page can forge. A
 * request riding on the cookie must prove it came from our page (one of the two); bearer-token
 * clients (curl, integrations) send neither and carry no ambient credential.
 */
export function originAllowed(req: FastifyRequest, via: DeskAuth['via'] | 'login'): boolean {
  const origin = req.headers.origin;
  const sameSite = req.headers['sec-fetch-site'] === 'same-origin';
  if (origin !== undefined && origin !== 'null') {
    try {
      // `req.host`: the Host header, or X-Forwarded-Host from a trusted proxy (TRUST_PROXY).
      return new URL(origin).host === req.host;
    } catch {
      return false;
    }
  }
  if (origin === 'null') return sameSite;
  return via !== 'cookie' || sameSite;
}

export function deskSessionCookie(value: string, secure: boolean): string {
  return `${DESK_COOKIE_NAME}=${value}; Path=${DESK_COOKIE_PATH}; Max-Age=${DESK_COOKIE_MAX_AGE_S}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export const deskClearedCookie = `${DESK_COOKIE_NAME}=; Path=${DESK_COOKIE_PATH}; Max-Age=0; HttpOnly; SameSite=Strict`;
