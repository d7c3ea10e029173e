/**
 * Stateless stream tokens (src/calls/stream-token.ts): a token verifies in any StreamTokens holding
 * the same key, once; tampered, foreign-key, expired, other-account and unknown-clinic tokens fail
 * with their reason, and failures do not use up the nonce.
 */
import { describe, expect, it } from 'vitest';
import { MemoryTokenUseStore, StreamTokens, type StreamTokenOptions } from '../../src/calls/stream-token.js';
import { ACCOUNT, callSid } from '../http/edge-fixtures.js';

const SECRET = 'k3y-for-stream-tokens-0123456789abcdefXYZ';
const tokens = (over: Partial<StreamTokenOptions> = {}) =>
  new StreamTokens({ secret: SECRET, accountSid: ACCOUNT, clinicExists: (id) => id === 'clinic-a', ...over });
const call = { callSid: callSid(1), accountSid: ACCOUNT, clinicId: 'clinic-a' };

describe('stream tokens', () => {
  it('verify in another instance sharing the key, exactly once across the shared use store', async () => {
    const uses = new MemoryTokenUseStore();
    const token = tokens({ uses }).mint(call);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    const other = tokens({ uses });
    expect(await other.verify(token)).toMatchObject({ ok: true, claims: call });
    expect(await other.verify(token)).toEqual({ ok: false, reason: 'replayed' });
    expect(await tokens({ uses }).verify(token)).toEqual({ ok: false, reason: 'replayed' });
  });

  it('differ per mint (nonce) even for the same call', () => {
    const t = tokens();
    expect(t.mint(call)).not.toBe(t.mint(call));
  });

  it('refuse another key, tampering and garbage without using the nonce', async () => {
    const token = tokens().mint(call);
    const [payload = '', mac = ''] = token.split('.');
    expect(await tokens({ secret: `${SECRET}-other` }).verify(token)).toEqual({ ok: false, reason: 'bad-signature' });
    expect(await tokens({ secret: null }).verify(token)).toEqual({ ok: false, reason: 'bad-signature' });
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), callSid: callSid(2) })).toString('base64url');
    const t = tokens();
    expect(await t.verify(`${forged}.${mac}`)).toEqual({ ok: false, reason: 'bad-signature' });
    expect(await t.verify(`${payload}.${mac.slice(0, -2)}AA`)).toEqual({ ok: false, reason: 'bad-signature' });
    for (const junk of ['', '.', 'abc', `${payload}.${mac}.x`, `${payload}.${mac}=`, `${payload}!.${mac}`, 'a'.repeat(5000)]) {
      expect((await t.verify(junk)).ok, junk.slice(0, 20)).toBe(false);
    }
    expect(await t.verify(token)).toMatchObject({ ok: true });
  });

  it('expire after the TTL (wall clock shared by workers)', async () => {
    let now = 1_000_000;
    const t = tokens({ now: () => now, ttlMs: 60_000 });
    const token = t.mint(call);
    now += 60_000;
    expect(await t.verify(token)).toEqual({ ok: false, reason: 'expired' });
    now -= 1;
    expect(await t.verify(token)).toMatchObject({ ok: true });
  });

  it('refuse a token of another Twilio account (SID compared without regard to case) or an unknown clinic', async () => {
    const foreign = tokens().mint({ ...call, accountSid: `AC${'b'.repeat(32)}` });
    expect(await tokens().verify(foreign)).toEqual({ ok: false, reason: 'other-account' });
    expect(await tokens().verify(tokens().mint({ ...call, accountSid: `AC${ACCOUNT.slice(2).toUpperCase()}` }))).toMatchObject({ ok: true });
    expect(await tokens().verify(tokens().mint({ ...call, clinicId: 'gone' }))).toEqual({ ok: false, reason: 'unknown-clinic' });
  });

  it('a nonce is forgotten by the memory store once its token would have expired anyway', async () => {
    let now = 0;
    const uses = new MemoryTokenUseStore(() => now);
    expect(await uses.claim('n1', 100)).toBe(true);
    expect(await uses.claim('n1', 100)).toBe(false);
    now = 100;
    await uses.claim('n2', 100);
    expect(uses.size).toBe(1);
  });
});
