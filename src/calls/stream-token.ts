/**
 * Stateless Media Stream tokens (issue #14 part 3): base64url(JSON payload) "." base64url(HMAC-SHA256),
 * payload { callSid, accountSid, clinicId, exp, nonce }. Any process holding the same key verifies a
 * token another minted, so a call's webhook and its stream may land on different workers. The token
 * travels in the Stream URL path (`/twilio/ws/<token>`), so each call's upgrade URL, and with it its
 * X-Twilio-Signature, is different. Single use is enforced by claiming the nonce in a TokenUseStore
 * (in-process today; a shared store such as Redis `SET NX PX` can take its place).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { sameSid } from '../twilio/sid.js';

export interface StreamTokenClaims {
  callSid: string;
  accountSid: string;
  clinicId: string;
  /** Expiry, ms since the epoch (wall clock: workers compare it, not one process's monotonic clock). */
  exp: number;
  nonce: string;
}

export type StreamTokenRejection = 'malformed' | 'bad-signature' | 'expired' | 'other-account' | 'unknown-clinic' | 'replayed';

/** Remembers which nonces were used; `claim` is true only for the first caller within `ttlMs`. */
export interface TokenUseStore {
  claim(nonce: string, ttlMs: number): Promise<boolean>;
}

/** One process's store: a nonce is remembered until its token could no longer verify anyway. */
export class MemoryTokenUseStore implements TokenUseStore {
  private readonly used = new Map<string, number>();
  constructor(private readonly now: () => number = Date.now) {}

  claim(nonce: string, ttlMs: number): Promise<boolean> {
    const now = this.now();
    for (const [n, until] of this.used) if (until <= now) this.used.delete(n);
    if (this.used.has(nonce)) return Promise.resolve(false);
    this.used.set(nonce, now + ttlMs);
    return Promise.resolve(true);
  }

  get size(): number {
    return this.used.size;
  }
}

/** A stream token is valid this long; Twilio connects within a second or two of our TwiML. */
export const STREAM_TOKEN_TTL_MS = 60_000;

const PART = /^[A-Za-z0-9_-]{1,1024}$/;
const MAC_BYTES = 32;

export interface StreamTokenOptions {
  /** STREAM_TOKEN_SECRET; null → a random key for this process only (one process is then the limit). */
  secret: string | null;
  /** Twilio account streams must belong to (besides the one in the token); null skips (development). */
  accountSid: string | null;
  /** Whether a clinic id is (still) configured. */
  clinicExists: (clinicId: string) => boolean;
  uses?: TokenUseStore;
  ttlMs?: number;
  now?: () => number;
}

export class StreamTokens {
  private readonly key: Buffer;
  private readonly uses: TokenUseStore;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: StreamTokenOptions) {
    this.key = opts.secret === null ? randomBytes(32) : Buffer.from(opts.secret, 'utf8');
    this.now = opts.now ?? Date.now;
    this.uses = opts.uses ?? new MemoryTokenUseStore(this.now);
    this.ttlMs = opts.ttlMs ?? STREAM_TOKEN_TTL_MS;
  }

  mint(call: { callSid: string; accountSid: string; clinicId: string }): string {
    const claims: StreamTokenClaims = { ...call, exp: this.now() + this.ttlMs, nonce: randomBytes(16).toString('base64url') };
    const payload = Buffer.from(JSON.stringify(claims), 'utf8').toString('base64url');
    return `${payload}.${this.mac(payload).toString('base64url')}`;
  }

  /** Checks signature, expiry, account and clinic, then claims the nonce: a token verifies once. */
  async verify(token: string): Promise<{ ok: true; claims: StreamTokenClaims } | { ok: false; reason: StreamTokenRejection }> {
    const claims = this.read(token);
    if (typeof claims === 'string') return { ok: false, reason: claims };
    const left = claims.exp - this.now();
    if (left <= 0) return { ok: false, reason: 'expired' };
    if (this.opts.accountSid !== null && !sameSid(claims.accountSid, this.opts.accountSid)) return { ok: false, reason: 'other-account' };
    if (!this.opts.clinicExists(claims.clinicId)) return { ok: false, reason: 'unknown-clinic' };
    if (!(await this.uses.claim(claims.nonce, left))) return { ok: false, reason: 'replayed' };
    return { ok: true, claims };
  }

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(`vetline-stream-token.v1.${payload}`).digest();
  }

  private read(token: string): StreamTokenClaims | 'malformed' | 'bad-signature' {
    const [payload, sig, extra] = token.split('.');
    if (payload === undefined || sig === undefined || extra !== undefined || !PART.test(payload) || !PART.test(sig)) return 'malformed';
    const given = Buffer.from(sig, 'base64url');
    if (given.length !== MAC_BYTES || !timingSafeEqual(given, this.mac(payload))) return 'bad-signature';
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return 'malformed';
    }
    return isClaims(parsed) ? parsed : 'malformed';
  }
}

function isClaims(v: unknown): v is StreamTokenClaims {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  return typeof c.callSid === 'string' && typeof c.accountSid === 'string' && typeof c.clinicId === 'string' &&
    typeof c.exp === 'number' && Number.isFinite(c.exp) && typeof c.nonce === 'string';
}
