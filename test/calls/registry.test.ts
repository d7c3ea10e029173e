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
import { ACCOUNT, callSid, clinicA } from '../http/edge-fixtures.js';

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
    close(code = 1000) {
      h.closedWith = code;
      h.state = 'closed';
    },
  };
  return h;
}

const start = (sid: string, token: string, over: Partial<StartMessage> = {}): StartMessage => ({
  kind: 'start',
  streamSid: 'MZ1',
  callSid: sid,
  accountSid: ACCOUNT,
  customParameters: { callToken: token, tenantId: 'clinic-a' },
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
    const first = r.open({ callSid: callSid(1), tenant: clinicA });
    const again = r.open({ callSid: callSid(1), tenant: clinicA });
    expect(first.kind).toBe('created');
    expect(again).toEqual({ kind: 'awaitingStream', streamToken: first.kind === 'created' ? first.streamToken : '' });
    expect(r.activeCount).toBe(1);
    expect(r.list()).toEqual([expect.objectContaining({ callSid: callSid(1), tenantId: 'clinic-a', state: 'connecting' })]);
  });

  it('accepts a stream once, with the token of that call from our account', async () => {
    const r = registry();
    const opened = r.open({ callSid: callSid(2), tenant: clinicA });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    expect(r.acceptStream(start(callSid(2), 'not-a-token'), handle())).toEqual({ reject: 'unknown stream token' });
    expect(r.acceptStream(start(callSid(3), opened.streamToken), handle())).toEqual({ reject: 'stream token belongs to another call' });
    // The mismatched attempt burned the token: even the right call cannot use it now.
    expect(r.acceptStream(start(callSid(2), opened.streamToken), handle())).toEqual({ reject: 'unknown stream token' });

    const other = r.open({ callSid: callSid(4), tenant: clinicA });
    if (other.kind !== 'created') throw new Error('expected a new call');
    expect(r.acceptStream(start(callSid(4), other.streamToken, { accountSid: `AC${'b'.repeat(32)}` }), handle())).toEqual({
      reject: 'stream from another account',
    });

    const good = r.open({ callSid: callSid(5), tenant: clinicA });
    if (good.kind !== 'created') throw new Error('expected a new call');
    expect(r.acceptStream(start(callSid(5), good.streamToken), handle())).toBe('accept');
    await Promise.resolve(); // the call starts right after the socket counts as started
    expect(r.list().find((c) => c.callSid === callSid(5))?.state).toBe('greeting');
    expect(r.acceptStream(start(callSid(5), good.streamToken), handle())).toEqual({ reject: 'unknown stream token' });
    expect(r.open({ callSid: callSid(5), tenant: clinicA })).toEqual({ kind: 'alreadyConnected' });
  });

  it('refuses expired tokens', async () => {
    const r = registry({ tokenTtlMs: 1 });
    const opened = r.open({ callSid: callSid(6), tenant: clinicA });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(r.acceptStream(start(callSid(6), opened.streamToken), handle())).toEqual({ reject: 'expired stream token' });
  });

  it('a terminal status callback ends the call and removes it; repeats are harmless', async () => {
    const r = registry();
    const opened = r.open({ callSid: callSid(7), tenant: clinicA });
    if (opened.kind !== 'created') throw new Error('expected a new call');
    const h = handle();
    expect(r.acceptStream(start(callSid(7), opened.streamToken), h)).toBe('accept');
    await Promise.resolve();
    expect(r.status({ callSid: callSid(7), status: 'completed', sequenceNumber: 1 })).toBe(true);
    expect(r.activeCount).toBe(0);
    expect(r.recentCalls().at(-1)).toMatchObject({ callSid: callSid(7), outcome: 'callerHungUp' });
    expect(h.closedWith).toBe(1000);
    expect(r.status({ callSid: callSid(7), status: 'completed', sequenceNumber: 1 })).toBe(true);
    expect(r.status({ callSid: callSid(99), status: 'completed', sequenceNumber: 0 })).toBe(false);
    // A webhook for a finished call creates nothing.
    expect(r.open({ callSid: callSid(7), tenant: clinicA })).toEqual({ kind: 'alreadyConnected' });
  });

  it('a call whose stream never started ends as notConnected on busy/no-answer', () => {
    const r = registry();
    r.open({ callSid: callSid(8), tenant: clinicA });
    r.status({ callSid: callSid(8), status: 'no-answer', sequenceNumber: 0 });
    expect(r.recentCalls().at(-1)).toMatchObject({ callSid: callSid(8), outcome: 'notConnected' });
  });

  it('keeps recordings that arrive after the call ended, once per RecordingSid and status', () => {
    const r = registry();
    r.open({ callSid: callSid(9), tenant: clinicA });
    r.status({ callSid: callSid(9), status: 'canceled', sequenceNumber: 0 });
    const recording = { recordingSid: `RE${'1'.repeat(32)}`, status: 'completed', url: 'https://api.twilio.com/r', durationSeconds: 12, channels: 2 };
    expect(r.recording({ callSid: callSid(9), recording })).toBe(true);
    expect(r.recording({ callSid: callSid(9), recording })).toBe(true);
    expect(r.recentCalls().at(-1)?.recordings).toHaveLength(1);
  });

  it('refuses new calls while draining or at capacity, without touching live ones', () => {
    const r = registry({ maxCalls: 1 });
    expect(r.open({ callSid: callSid(10), tenant: clinicA }).kind).toBe('created');
    expect(r.open({ callSid: callSid(11), tenant: clinicA })).toEqual({ kind: 'refused', reason: 'capacity' });
    r.startDraining();
    expect(r.open({ callSid: callSid(12), tenant: clinicA })).toEqual({ kind: 'refused', reason: 'draining' });
    expect(r.activeCount).toBe(1);
  });
});
