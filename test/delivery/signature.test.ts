import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signVetlineBody, verifyVetlineSignature } from '../../src/delivery/signature.js';
import { SECRET, receiverVerifies } from './kit.js';

const BODY = '{"id":"6f1c0d5e-1b2a-4c3d-8e9f-0a1b2c3d4e5f","type":"appointment_request"}';
const NOW = Date.UTC(2026, 2, 14, 15, 9, 26, 535);

describe('X-Vetline-Signature', () => {
  it('is t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>', () => {
    const t = Math.floor(NOW / 1000);
    const hmac = createHmac('sha256', SECRET).update(`${t}.${BODY}`).digest('hex');
    expect(signVetlineBody(SECRET, BODY, NOW)).toBe(`t=${t},v1=${hmac}`);
  });

  it('verifies with the library function and with the documented receiver recipe', () => {
    const header = signVetlineBody(SECRET, BODY, NOW);
    expect(verifyVetlineSignature(SECRET, header, BODY, { now: NOW })).toBe(true);
    expect(verifyVetlineSignature(SECRET, header, Buffer.from(BODY), { now: NOW + 299_000 })).toBe(true);
    expect(receiverVerifies(SECRET, header, Buffer.from(BODY), NOW)).toBe(true);
  });

  it('refuses a changed body, another secret, or a missing or malformed header', () => {
    const header = signVetlineBody(SECRET, BODY, NOW);
    expect(verifyVetlineSignature(SECRET, header, BODY.replace('appointment', 'refill'), { now: NOW })).toBe(false);
    expect(verifyVetlineSignature('another-secret', header, BODY, { now: NOW })).toBe(false);
    expect(verifyVetlineSignature('', header, BODY, { now: NOW })).toBe(false);
    for (const bad of [undefined, null, '', 't=abc,v1=00', `v1=${'0'.repeat(64)}`, `t=${Math.floor(NOW / 1000)}`, `t=${Math.floor(NOW / 1000)},v1=zz`]) {
      expect(verifyVetlineSignature(SECRET, bad, BODY, { now: NOW })).toBe(false);
    }
  });

  it('refuses a timestamp outside the tolerance either way (replays), with a configurable window', () => {
    const header = signVetlineBody(SECRET, BODY, NOW);
    expect(verifyVetlineSignature(SECRET, header, BODY, { now: NOW + 301_000 })).toBe(false);
    expect(verifyVetlineSignature(SECRET, header, BODY, { now: NOW - 301_000 })).toBe(false);
    expect(verifyVetlineSignature(SECRET, header, BODY, { now: NOW + 301_000, toleranceSeconds: 600 })).toBe(true);
  });

  it('accepts any matching v1 among several (secret rotation on the receiving side)', () => {
    const good = signVetlineBody(SECRET, BODY, NOW);
    const t = good.split(',')[0]!;
    const other = signVetlineBody('old-secret', BODY, NOW).split(',')[1]!;
    expect(verifyVetlineSignature(SECRET, `${t},${other},${good.split(',')[1]!}`, BODY, { now: NOW })).toBe(true);
    expect(verifyVetlineSignature(SECRET, `${t},${other}`, BODY, { now: NOW })).toBe(false);
  });
});
