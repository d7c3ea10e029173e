/**
 * Signed, expiring, revocable session cookies for the inspector and the front desk.
 *
 * A value is `<tag>.<session id>.<issued at, ms base 36>.<HMAC-SHA256>`: the tag names who signed in
 * (`operator`, `c-<clinic id>`), the MAC is keyed by that scope's token and covers purpose, tag, id
 * and issue time. So a cookie proves the token was presented, is useless to forge without it, and
 * dies at issue time + TTL whatever the browser does with Max-Age; rotating a token ends every
 * session it signed.
 *
 * Revocation is server-side and in memory (per process): signing out adds the session id to a
 * revoked set until the session would have expired anyway; "sign out everywhere" refuses every
 * session issued before that moment. A restart forgets both (sessions signed before then become
 * valid again until they expire): to revoke for good, rotate the token. If the revoked set fills up,
 * every session is revoked instead (fail closed).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { safeEqual } from './credentials.js';

export interface Session {
  tag: string;
  sid: string;
  issuedAt: number;
}

/** Allowed clock difference for a cookie issued "in the future" (several instances, NTP steps). */
const SKEW_MS = 60_000;
const DEFAULT_MAX_REVOKED = 10_000;

const TAG = /^[a-z0-9-]{1,80}$/;
const SID = /^[\w-]{16}$/;
const IAT = /^[0-9a-z]{1,12}$/;

export class SignedSessions {
  private notBefore = 0;
  /** Revoked session id → when it would have expired (then it can be forgotten). */
  private readonly revoked = new Map<string, number>();

  constructor(private readonly opts: { purpose: string; ttlMs: number; maxRevoked?: number }) {}

  get ttlMs(): number {
    return this.opts.ttlMs;
  }

  /** A fresh session for `tag`, signed with `key` (the token that was presented). */
  issue(tag: string, key: string): string {
    if (!TAG.test(tag)) throw new Error(`session tag ${JSON.stringify(tag)} is not [a-z0-9-]`);
    const sid = randomBytes(12).toString('base64url');
    const iat = Math.max(Date.now(), this.notBefore + 1).toString(36);
    return `${tag}.${sid}.${iat}.${this.mac(key, tag, sid, iat)}`;
  }

  /**
   * The session a cookie value carries, when its MAC is right for the key `keyOf(tag)` gives, it has
   * not expired and it was not revoked; otherwise null. The MAC is computed (against a throwaway key
   * for an unknown tag) and compared in constant time before anything else is decided.
   */
  verify(value: string, keyOf: (tag: string) => string | null): Session | null {
    const parts = value.split('.');
    if (parts.length !== 4) return null;
    const [tag = '', sid = '', iat = '', mac = ''] = parts;
    if (!TAG.test(tag) || !SID.test(sid) || !IAT.test(iat)) return null;
    const key = keyOf(tag);
    const good = safeEqual(mac, this.mac(key ?? 'vetline-no-such-session-key', tag, sid, iat));
    if (!good || key === null) return null;
    const issuedAt = parseInt(iat, 36);
    const now = Date.now();
    if (issuedAt > now + SKEW_MS || now >= issuedAt + this.opts.ttlMs) return null;
    if (issuedAt <= this.notBefore || this.revoked.has(sid)) return null;
    return { tag, sid, issuedAt };
  }

  /** Signs one session out for good (on this process). */
  revoke(session: Session): void {
    const now = Date.now();
    for (const [sid, expiresAt] of this.revoked) if (expiresAt <= now) this.revoked.delete(sid);
    if (this.revoked.size >= (this.opts.maxRevoked ?? DEFAULT_MAX_REVOKED)) {
      this.revokeAll();
      return;
    }
    this.revoked.set(session.sid, session.issuedAt + this.opts.ttlMs);
  }

  /** Signs every session issued until now out (on this process); new sign-ins work at once. */
  revokeAll(): void {
    this.notBefore = Math.max(Date.now(), this.notBefore + 1);
    this.revoked.clear();
  }

  private mac(key: string, tag: string, sid: string, iat: string): string {
    return createHmac('sha256', key).update(`vetline-${this.opts.purpose}-session-v2\n${tag}\n${sid}\n${iat}`).digest('base64url');
  }
}
