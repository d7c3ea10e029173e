/**
 * Fault 2 (docs/design/reliability.md F9, §2 rung 5): Twilio REST failing while the engine transfers or hangs
 * up, through the real client (src/twilio/rest.ts, the twilio package) against the fake REST server.
 * A failed transfer must reach the caller as the transferFailed clip within 2 s of the failure and
 * the call goes on; a failed hang-up still ends the call cleanly. A REST request that never
 * settles (even one deaf to its AbortSignal) must not hold the call: the machine's restTimeout ends
 * the wait. A healthy call on the same engine converses throughout. And the race a healthy transfer
 * can lose: Twilio runs the new TwiML and stops the stream before its REST response is back.
 */
import { beforeAll, describe, it } from 'vitest';
import { BUDGETS } from '../../machines/call/budgets.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import { loadTenants } from '../../src/config/tenants.js';
import { clipTexts } from '../../src/providers/tts/prompt-cache.js';
import { createTwilioRest } from '../../src/twilio/rest.js';
import type { TwilioRest } from '../../src/twilio/rest-types.js';
import { TENANTS, speechMs } from '../e2e/conversation-kit.js';
import { start as startFakeRest, type FakeReply } from '../fakes/twilio-rest-server.js';
import type { FakeTwilio } from '../support/fake-twilio.js';
import { freePort } from '../support/net.js';
import { converse, faultRig, later, firstAudioAfter, onCallClock, untilEntered, untilState, type FaultRig } from './fault-kit.js';

/** The client's per-operation bound in these tests (production: the session bounds each request at 2.5 s), so a hang is detected fast. */
const REST_TIMEOUT_MS = 1_000;
/** The machine's own bound on a REST request (machines/call/call.setup.ts `restTimeout`). */
const MACHINE_REST_TIMEOUT_MS = BUDGETS.restTimeoutMs;
const FALLBACK_WITHIN_MS = 2_000;
const MAX_SILENCE_MS = 3_000;

let texts: ReturnType<typeof clipTexts>;
beforeAll(async () => {
  texts = clipTexts((await loadTenants(TENANTS)).byId('quick-vet') as Tenant);
});

type RestFault = { what: string; reply?: FakeReply; refused?: true; deaf?: true };

/** The real REST client against a fake Twilio scripted with `fault` for call updates. */
async function restWith(ctx: { onTestFinished(fn: () => Promise<void>): void }, fault: RestFault) {
  const fake = await startFakeRest();
  ctx.onTestFinished(() => fake.close());
  if (fault.reply) fake.script(fault.reply);
  const baseUrl = fault.refused ? `http://127.0.0.1:${await freePort()}` : fake.url;
  const real = createTwilioRest({ accountSid: fake.accountSid, authToken: fake.authToken, baseUrl, timeoutMs: REST_TIMEOUT_MS });
  // A REST layer that never settles and ignores its signal: only the machine's timer can save the call.
  const deaf: TwilioRest = { ...real, updateCallTwiml: () => new Promise<void>(() => {}), hangup: () => new Promise<void>(() => {}) };
  return { fake, rest: fault.deaf ? deaf : real };
}

/** The other call on the engine: a full turn, started before the fault and checked after it. */
async function withNeighbour(r: FaultRig): Promise<{ done: Promise<string> }> {
  const neighbour = await r.dial();
  return { done: later(converse(r, neighbour)) };
}

const transferFaults: (RestFault & { detectMs: [number, number] })[] = [
  { what: 'HTTP 500', reply: { route: 'call.update', status: 500 }, detectMs: [0, 1_500] },
  { what: 'HTTP 503 with a malformed body', reply: { route: 'call.update', status: 503, body: '<html>' }, detectMs: [0, 1_500] },
  { what: 'a request that hangs (client timeout)', reply: { route: 'call.update', hang: true }, detectMs: [REST_TIMEOUT_MS - 50, REST_TIMEOUT_MS + 800] },
  { what: 'connection refused', refused: true, detectMs: [0, 1_500] },
  { what: 'a REST layer that never settles and ignores abort (machine restTimeout)', deaf: true, detectMs: [MACHINE_REST_TIMEOUT_MS - 50, MACHINE_REST_TIMEOUT_MS + 1_000] },
];

describe.concurrent('Twilio REST fails during a transfer', () => {
  for (const fault of transferFaults) {
    it(`${fault.what}: the transferFailed clip within 2 s, the call goes on, the neighbour is unharmed`, async (ctx) => {
      const { expect } = ctx;
      const { fake, rest } = await restWith(ctx, fault);
      const r = await faultRig(ctx, { rest });
      const call = await r.dial();
      const neighbour = await withNeighbour(r);
      await untilState(r, call, 'listening.waiting', 10_000);

      const pressedMs = call.now();
      call.dtmf('0');
      const dialingPerf = await untilEntered(r, call, 'transferring.dialing', 8_000);
      const failedPerf = await untilEntered(r, call, 'transferring.failed', MACHINE_REST_TIMEOUT_MS + 3_000);
      const detectMs = failedPerf - dialingPerf;
      expect(detectMs).toBeGreaterThanOrEqual(fault.detectMs[0]);
      expect(detectMs).toBeLessThan(fault.detectMs[1]);

      // The caller hears the apology, whole, soon after the failure; never more than 3 s of dead air.
      const failedAt = onCallClock(call, failedPerf);
      await untilState(r, call, 'listening.waiting', 8_000);
      const fallbackMs = firstAudioAfter(call, failedAt);
      expect(fallbackMs).not.toBeNull();
      expect(fallbackMs).toBeLessThan(FALLBACK_WITHIN_MS);
      expect(call.audioSince(failedAt).length).toBe(speechMs(texts.transferFailed) * 8);
      const gaps = call.silenceGaps(100, { fromMs: pressedMs, toMs: call.now() - 50 });
      const maxGapMs = Math.max(0, ...gaps.map((g) => g.ms));
      expect(maxGapMs).toBeLessThan(fault.deaf ? MACHINE_REST_TIMEOUT_MS + 1_000 : MAX_SILENCE_MS);

      if (fault.reply) {
        const update = fake.requests.find((q) => q.route === 'call.update');
        expect(update?.form.Twiml).toContain('<Dial');
        if (fault.reply.hang) await call.waitFor(() => update?.abandoned === true, 2_000, 'the client to give up the hung request');
      }

      // The call carries on: another turn, then the caller hangs up.
      expect(await converse(r, call)).toContain('Monday to Friday');
      expect(r.outcomeOf(call.callSid)).toBe('callerHungUp');
      expect(await neighbour.done).toContain('Monday to Friday');
      expect(r.engine.registry.list()).toEqual([]);
      expect(r.logs().filter((l) => (l.level as number) >= 50)).toEqual([]);
      await ctx.annotate(`transfer, ${fault.what}: detected ${Math.round(detectMs)} ms after dialing, apology audio ${Math.round(fallbackMs ?? -1)} ms after detection, longest silence ${Math.round(maxGapMs)} ms`);
    }, 40_000);
  }
});

const hangupFaults: (RestFault & { endMs: [number, number] })[] = [
  { what: 'HTTP 500', reply: { route: 'call.update', status: 500 }, endMs: [0, 1_500] },
  { what: 'a request that hangs (client timeout)', reply: { route: 'call.update', hang: true }, endMs: [REST_TIMEOUT_MS - 50, REST_TIMEOUT_MS + 800] },
  { what: 'connection refused', refused: true, endMs: [0, 1_500] },
  { what: 'a REST layer that never settles and ignores abort (machine restTimeout)', deaf: true, endMs: [MACHINE_REST_TIMEOUT_MS - 50, MACHINE_REST_TIMEOUT_MS + 1_000] },
];

/** Waits for the goodbye, then for the end; returns ms from the hang-up request to the end. */
async function hangUpThroughFailure(r: FaultRig, call: FakeTwilio): Promise<number> {
  r.engine.registry.hangUpAll('test'); // the drain deadline's polite hang-up (the neighbour has not dialled yet)
  const requestingPerf = await untilEntered(r, call, 'hangingUp.requesting', 5_000);
  return (await untilEntered(r, call, 'ended', MACHINE_REST_TIMEOUT_MS + 3_000)) - requestingPerf;
}

describe.concurrent('Twilio REST fails during a hang-up', () => {
  for (const fault of hangupFaults) {
    it(`${fault.what}: goodbye heard, the call ends with an outcome, the stream is closed, the neighbour unharmed`, async (ctx) => {
      const { expect } = ctx;
      const { fake, rest } = await restWith(ctx, fault);
      const r = await faultRig(ctx, { rest });
      const call = await r.dial();
      await untilState(r, call, 'listening.waiting', 10_000);
      const askedAt = call.now();
      const ended = hangUpThroughFailure(r, call);
      const neighbour = await withNeighbour(r);
      const endMs = await ended;

      expect(endMs).toBeGreaterThanOrEqual(fault.endMs[0]);
      expect(endMs).toBeLessThan(fault.endMs[1]);
      expect(call.audioSince(askedAt).length).toBe(speechMs(texts.goodbye) * 8);
      expect(r.outcomeOf(call.callSid)).toBe('completed');
      expect((await call.waitForClose(2_000)).code).toBe(1000); // the engine closed the stream itself
      if (fault.reply) expect(fake.requests.find((q) => q.route === 'call.update')?.form.Status).toBe('completed');

      expect(await neighbour.done).toContain('Monday to Friday');
      expect(r.engine.registry.list()).toEqual([]);
      expect(r.logs().filter((l) => (l.level as number) >= 50)).toEqual([]);
      await ctx.annotate(`hang-up, ${fault.what}: call ended ${Math.round(endMs)} ms after the request started`);
    }, 40_000);
  }
});

describe('Twilio runs the transfer before REST answers', () => {
  it('the stream closes first: the call ends as transferred, nothing errors, no hang-up is asked for', async (ctx) => {
    const { expect } = ctx;
    const fake = await startFakeRest();
    ctx.onTestFinished(() => fake.close());
    const rest = createTwilioRest({ accountSid: fake.accountSid, authToken: fake.authToken, baseUrl: fake.url, timeoutMs: REST_TIMEOUT_MS });
    const r = await faultRig(ctx, { rest });
    const call = await r.dial();
    await untilState(r, call, 'listening.waiting', 10_000);
    // Twilio takes the <Dial>, stops the Media Stream (stop, close 1000), and only then answers 200.
    let stateAtStop = '';
    fake.script({ route: 'call.update', answerAfter: async () => {
      stateAtStop = r.stateOf(call.callSid);
      await call.stop();
    } });

    call.dtmf('0');
    await untilState(r, call, 'ended', 8_000);
    expect(stateAtStop).toBe('transferring.dialing');
    expect(r.outcomeOf(call.callSid)).toBe('transferred');
    const update = fake.requests.find((q) => q.route === 'call.update');
    expect(update?.form.Twiml).toContain('<Dial');
    await call.waitFor(() => update?.status === 200 || update?.abandoned === true, 2_000, 'the update to be answered or given up');
    expect(fake.requests.filter((q) => q.form.Status === 'completed')).toEqual([]); // no REST hang-up of a transferred call
    expect(r.engine.registry.list()).toEqual([]);
    expect(r.logs(call.callSid).filter((l) => (l.level as number) >= 40)).toEqual([]);
    expect(call.protocolErrors).toEqual([]);
  }, 30_000);
});
