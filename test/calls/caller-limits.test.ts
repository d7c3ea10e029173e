/**
 * The pieces of the per-caller limits on their own: the sliding hour of `MemoryCallerLog` (explicit
 * clock), its memory bound, the keyed hash of the caller, and what counts as an identifiable caller.
 */
import { describe, expect, it } from 'vitest';
import { CallerLimits, HOUR_MS, MemoryCallerLog } from '../../src/calls/caller-limits.js';
import { identifiableCaller } from '../../src/twilio/caller-id.js';
import { clinicA } from '../http/edge-fixtures.js';

describe('MemoryCallerLog', () => {
  it('admits `max` calls in any hour, sliding: a slot comes back an hour after its call', async () => {
    const log = new MemoryCallerLog();
    const t0 = 1_000_000;
    expect(await log.admit('k', 'CA1', t0, HOUR_MS, 2)).toBe(true);
    expect(await log.admit('k', 'CA2', t0 + 30 * 60_000, HOUR_MS, 2)).toBe(true);
    expect(await log.admit('k', 'CA3', t0 + 59 * 60_000, HOUR_MS, 2)).toBe(false);
    expect(await log.admit('other', 'CA4', t0 + 59 * 60_000, HOUR_MS, 2)).toBe(true);
    expect(await log.admit('k', 'CA5', t0 + HOUR_MS + 1, HOUR_MS, 2)).toBe(true); // CA1 left the window
    expect(await log.admit('k', 'CA6', t0 + HOUR_MS + 2, HOUR_MS, 2)).toBe(false);
  });

  it('a repeated CallSid is admitted again without taking a second slot; forget gives a slot back', async () => {
    const log = new MemoryCallerLog();
    expect(await log.admit('k', 'CA1', 0, HOUR_MS, 1)).toBe(true);
    expect(await log.admit('k', 'CA1', 10, HOUR_MS, 1)).toBe(true);
    expect(await log.admit('k', 'CA2', 20, HOUR_MS, 1)).toBe(false);
    await log.forget('k', 'CA1');
    expect(await log.admit('k', 'CA2', 30, HOUR_MS, 1)).toBe(true);
  });

  it('holds at most maxKeys callers: expired ones go first, then the least recently seen', async () => {
    const log = new MemoryCallerLog(3);
    for (const key of ['a', 'b', 'c']) await log.admit(key, `CA-${key}`, 0, HOUR_MS, 1);
    await log.admit('d', 'CA-d', HOUR_MS + 1, HOUR_MS, 1); // a, b, c expired: swept
    expect(log.size).toBe(1);
    for (const key of ['e', 'f', 'g']) await log.admit(key, `CA-${key}`, HOUR_MS + 2, HOUR_MS, 1);
    expect(log.size).toBe(3);
    // `d` was seen least recently and was dropped: it may call again.
    expect(await log.admit('d', 'CA-d2', HOUR_MS + 3, HOUR_MS, 1)).toBe(true);
  });
});

describe('caller keys', () => {
  it('a keyed hash of the number: stable for one secret, different for another, and not the number', () => {
    const live = () => 0;
    const a = new CallerLimits({ secret: 'first-secret-0123456789', liveCalls: live });
    const b = new CallerLimits({ secret: 'other-secret-0123456789', liveCalls: live });
    const random = new CallerLimits({ secret: null, liveCalls: live });
    const key = a.keyOf('+15557650001');
    expect(key).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(a.keyOf('+15557650001')).toBe(key);
    expect(a.keyOf('+15557650002')).not.toBe(key);
    expect(b.keyOf('+15557650001')).not.toBe(key);
    expect(random.keyOf('+15557650001')).not.toBe(key);
    expect(key).not.toContain('5557650001');
  });

  it('counts the live calls of the same clinic and caller, the call itself excluded', async () => {
    const seen: unknown[] = [];
    const limits = new CallerLimits({ secret: 'first-secret-0123456789', liveCalls: (...args) => (seen.push(args), 1) });
    expect(await limits.admit({ callSid: 'CA9', tenant: clinicA, from: '+15557650001' })).toEqual({ kind: 'admitted', key: limits.keyOf('+15557650001') });
    expect(seen).toEqual([['clinic-a', limits.keyOf('+15557650001'), 'CA9']]);
    expect(await limits.admit({ callSid: 'CA10', tenant: clinicA, from: null })).toEqual({ kind: 'admitted', key: null });
    expect(seen).toHaveLength(1);
  });
});

describe('identifiableCaller', () => {
  it("is the caller's E.164 number, or null when there is none or Twilio says it was withheld", () => {
    expect(identifiableCaller('+15557650001')).toBe('+15557650001');
    for (const withheld of ['+266696687', '+7378742833', '+2562533', '+8656696', '+86282452253', 'anonymous', 'Restricted', 'client:alice', 'sip:a@b', '', null, undefined]) {
      expect(identifiableCaller(withheld), String(withheld)).toBeNull();
    }
  });
});
