/**
 * The call registry with real sessions and machines (fake providers, a fake socket handle):
 * one actor per CallSid, single-use stream tokens bound to the call and account, status callbacks
 * that end and remove the call, idempotent callbacks, draining and capacity.
 */
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Registry, type RegistryOptions } from '../../src/calls/registry.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import type { StartMessage } from '../../src/twilio/media-codec.js';
import type { MediaStreamHandle } from '../../src/twilio/stream-socket.js';
import { ACCOUNT, callSid, claimsOf, clinicA } from '../http/edge-fixtures.js';

const registries: Registry[] = [];

function registry(over: Partial<RegistryOptions> = {}) {
  const r = new Registry({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
    prompts: { get: () => new Uint8Array(1600) },
    rest: null,
    publicBaseUrl: 'https://voice.test',
    logger: pino({ level: 'silent' }),
    accountSid: ACCOUNT,
    maxCalls: 10,
    ...over,
  });
  registries.push(r);
  return r;
}

function handle(): MediaStreamHandle & { sent: string[]; closedWith: number | null } {
  const h = {
    sent: [] as string[],
    closedWith: null as number | null,
    state: 'started' as MediaStreamHandle['state'],
    streamSid: 'MZ1',
    callSid: null,
    send(json: string) {
      h.sent.push(json);
      return true;
    },
    batch(sends: () => void) {
      sends();
    },
    close(code = 1000) {
      h.closedWith = code;
      h.state = 'closed';
    },
  };
  return h;
}

const start = (sid: string, over: Partial<StartMessage> = {}): StartMessage => ({
  kind: 'start',
  streamSid: 'MZ1',
  callSid: sid,
  accountSid: ACCOUNT,
  customParameters: { tenantId: 'clinic-a' },
  tracks: ['inbound'],
  mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
  ...over,
});

afterEach(() => {
  for (const r of registries.splice(0)) r.hangUpAll('test over');
});

describe('call registry', () => {
  it('creates one actor per CallSid; a repeated webhook gets the same token', () => {
    const r = registry();
    const first = r.open({ callSid: callSid(1), accountSid: ACCOUNT, tenant: clinicA });
    const again = r.open({ callSid: callSid(1), accountSid: ACCOUNT, tenant: clinicA });
    expect(first.kind).toBe('created');
    expect(again).toEqual({ kind: 'awaitingStream', streamToken: first.kind === 'created' ? first.streamToken : '' });
    expect(r.activeCount).toBe(1);
    expect(r.list()).toEqual([expect.objectContaining({ callSid: callSid(1), tenantId: 'clinic-a', state: 'connecting' })]);
  });

  it('accepts a stream only for the call and account its verified token names, once', async () => {
    const r = registry();
    const opened = r.open({ callSid: callSid(2), accountSid: ACCOUNT, tenant: clinicA });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    const claims = claimsOf(opened.streamToken);
    expect(claims).toMatchObject({ callSid: callSid(2), accountSid: ACCOUNT, clinicId: 'clinic-a' });
    expect(r.acceptStream(start(callSid(3)), handle(), claims)).toEqual({ reject: 'stream token belongs to another call' });
    expect(r.acceptStream(start(callSid(2), { accountSid: `AC${'b'.repeat(32)}` }), handle(), claims)).toEqual({
      reject: 'stream from another account',
    });
    expect(r.acceptStream(start(callSid(2)), handle(), { ...claims, clinicId: 'clinic-b' })).toEqual({ reject: 'call is not waiting for a stream' });
    expect(r.acceptStream(start(callSid(2)), handle(), claims)).toBe('accept');
    await Promise.resolve(); // the call starts right after the socket counts as started
    expect(r.list().find((c) => c.callSid === callSid(2))?.state).toBe('greeting');
    expect(r.acceptStream(start(callSid(2)), handle(), claims)).toEqual({ reject: 'call is not waiting for a stream' });
    expect(r.open({ callSid: callSid(2), accountSid: ACCOUNT, tenant: clinicA })).toEqual({ kind: 'alreadyConnected' });
  });

  it('mints tokens its own stream tokens verify, once; another registry (other key) refuses them', async () => {
    const r = registry();
    const opened = r.open({ callSid: callSid(4), accountSid: ACCOUNT, tenant: clinicA });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    expect(await registry().streamTokens.verify(opened.streamToken)).toEqual({ ok: false, reason: 'bad-signature' });
    expect(await r.streamTokens.verify(opened.streamToken)).toMatchObject({ ok: true, claims: { callSid: callSid(4) } });
    expect(await r.streamTokens.verify(opened.streamToken)).toEqual({ ok: false, reason: 'replayed' });
  });

  it('a terminal status callback ends the call and removes it; repeats are harmless', async () => {
    const r = registry();
    const opened = r.open({ callSid: callSid(7), accountSid: ACCOUNT, tenant: clinicA });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    const h = handle();
    expect(r.acceptStream(start(callSid(7)), h, claimsOf(opened.streamToken))).toBe('accept');
    await Promise.resolve();
    expect(r.status({ callSid: callSid(7), status: 'completed', sequenceNumber: 1 })).toBe(true);
    expect(r.activeCount).toBe(0);
    expect(r.recentCalls().at(-1)).toMatchObject({ callSid: callSid(7), outcome: 'callerHungUp' });
    expect(h.closedWith).toBe(1000);
    expect(r.status({ callSid: callSid(7), status: 'completed', sequenceNumber: 1 })).toBe(true);
    expect(r.status({ callSid: callSid(99), status: 'completed', sequenceNumber: 0 })).toBe(false);
    // A webhook for a finished call creates nothing.
    expect(r.open({ callSid: callSid(7), accountSid: ACCOUNT, tenant: clinicA })).toEqual({ kind: 'alreadyConnected' });
  });

  it('a call whose stream never started ends as notConnected on busy/no-answer', () => {
    const r = registry();
    r.open({ callSid: callSid(8), accountSid: ACCOUNT, tenant: clinicA });
    r.status({ callSid: callSid(8), status: 'no-answer', sequenceNumber: 0 });
    expect(r.recentCalls().at(-1)).toMatchObject({ callSid: callSid(8), outcome: 'notConnected' });
  });

  it('keeps recordings that arrive after the call ended, once per RecordingSid and status', () => {
    const r = registry();
    r.open({ callSid: callSid(9), accountSid: ACCOUNT, tenant: clinicA });
    r.status({ callSid: callSid(9), status: 'canceled', sequenceNumber: 0 });
    const recording = { recordingSid: `RE${'1'.repeat(32)}`, status: 'completed', url: 'https://api.twilio.com/r', durationSeconds: 12, channels: 2 };
    expect(r.recording({ callSid: callSid(9), recording })).toBe(true);
    expect(r.recording({ callSid: callSid(9), recording })).toBe(true);
    expect(r.recentCalls().at(-1)?.recordings).toHaveLength(1);
  });

  it('refuses new calls while draining or at capacity, without touching live ones', () => {
    const r = registry({ maxCalls: 1 });
    expect(r.open({ callSid: callSid(10), accountSid: ACCOUNT, tenant: clinicA }).kind).toBe('created');
    expect(r.open({ callSid: callSid(11), accountSid: ACCOUNT, tenant: clinicA })).toEqual({ kind: 'refused', reason: 'capacity' });
    r.startDraining();
    expect(r.open({ callSid: callSid(12), accountSid: ACCOUNT, tenant: clinicA })).toEqual({ kind: 'refused', reason: 'draining' });
    expect(r.activeCount).toBe(1);
  });

  it('release gives a waiting call up with its seed, once; adopt carries it on where its stream arrived', async () => {
    const a = registry();
    const b = registry({ tenantById: (id) => (id === clinicA.id ? clinicA : null) });
    const opened = a.open({ callSid: callSid(13), accountSid: ACCOUNT, tenant: clinicA, from: '+15550001234', callerKey: 'k1' });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    const claims = claimsOf(opened.streamToken);
    expect(b.release(callSid(13))).toBeNull(); // b does not hold it
    const seed = a.release(callSid(13));
    expect(seed).toEqual({ from: '+15550001234', callerKey: 'k1' });
    expect(a.release(callSid(13))).toBeNull();
    expect(a.session(callSid(13))).toBeUndefined();
    expect(a.recentCalls()).toEqual([]); // no record: the other worker has it
    expect(a.liveCallsFrom(clinicA.id, 'k1', '')).toBe(0);

    expect(b.adopt(claims, seed!)).toBe(true);
    expect(b.adopt(claims, seed!)).toBe(false); // already here
    expect(b.liveCallsFrom(clinicA.id, 'k1', '')).toBe(1);
    expect(b.acceptStream(start(callSid(13)), handle(), claims)).toBe('accept');
    await Promise.resolve();
    expect(b.list()).toEqual([expect.objectContaining({ callSid: callSid(13), state: 'greeting' })]);
    expect(b.release(callSid(13))).toBeNull(); // a call never moves once its stream started
  });

  it('adopt refuses an unknown clinic, a draining registry and a full one', () => {
    const full = registry({ maxCalls: 1, tenantById: () => clinicA });
    full.open({ callSid: callSid(14), accountSid: ACCOUNT, tenant: clinicA });
    const claims = { callSid: callSid(15), accountSid: ACCOUNT, clinicId: clinicA.id, exp: Date.now() + 60_000, nonce: 'n' };
    const seed = { from: null, callerKey: null };
    expect(full.adopt(claims, seed)).toBe(false);
    expect(registry({ tenantById: () => null }).adopt(claims, seed)).toBe(false);
    const draining = registry({ tenantById: () => clinicA });
    draining.startDraining();
    expect(draining.adopt(claims, seed)).toBe(false);
    expect(registry({ tenantById: () => clinicA }).adopt(claims, seed)).toBe(true);
  });
});
