/**
 * End to end over the real Media Streams protocol, part 3: how calls end and what the stream
 * tolerates. A silent caller (nudges, goodbye, REST hang-up), a caller hanging up mid-reply (nothing
 * left behind), garbage frames mid-call, a binary frame, webhook idempotency and stream-token
 * replay, and two clinics' calls side by side.
 */
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, it } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { clipTexts } from '../../src/providers/tts/prompt-cache.js';
import { loadTenants } from '../../src/config/tenants.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import {
  CONSENT_VET, QUICK_VET, TENANTS, playedOf, rigFor, sleep, speechMs, tone, untilState, visitedInOrder, voiceWebhook,
  warmPrompts, type Rig,
} from './conversation-kit.js';
import { TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { upgradeStatus } from '../support/net.js';
import { wsSignature } from '../support/twilio-sign.js';

let quickVet: Tenant;
let consentVet: Tenant;

beforeAll(async () => {
  await warmPrompts();
  const tenants = await loadTenants(TENANTS);
  quickVet = tenants.byId('quick-vet')!;
  consentVet = tenants.byId('consent-vet')!;
});

const callSidOf = () => `CA${randomBytes(16).toString('hex')}`;
const wsClients = (r: Rig) => r.engine.app.websocketServer.clients.size;

/** Timers and sockets keeping the event loop alive, by type. */
function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

describe('the end of a call', () => {
  it('a caller who hangs up mid-reply ends the call cleanly: no REST hang-up, nothing left running', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: ['We offer vaccinations, dental care and surgery for dogs and cats. Our team also does grooming on weekdays.'] });
    const r = await rigFor(ctx, { agent, stt: ['tell me about your services'] });
    await sleep(100);
    const baseline = resources();

    const call = await r.dial(QUICK_VET);
    const sid = call.callSid;
    await untilState(r, call, 'listening.waiting', 5_000);
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    await call.waitFor((c) => playedOf(c, 2) >= 500, 3_000, 'half a second of the reply');
    const stt = r.stt.last;
    expect(stt?.closed).toBe(false);

    await call.hangUp(); // stop, then close 1000
    await untilState(r, call, 'ended', 2_000);
    const record = r.engine.registry.recentCalls().find((c) => c.callSid === sid);
    expect(record?.outcome).toBe('callerHungUp');
    expect(r.rest.map((e) => e.op)).toEqual(['record']); // no hang-up from the stop handler
    expect(r.engine.registry.list()).toEqual([]);
    expect(r.engine.registry.activeCount).toBe(0);
    expect(r.engine.registry.session(sid)).toBeUndefined();
    // Providers released: the recognizer stream is closed and the agent's turn aborted.
    expect(stt?.closed).toBe(true);
    expect(agent.turns[0]?.signal.aborted).toBe(true);
    expect(visitedInOrder(r.trace(sid), ['greeting', 'listening.waiting', 'reply.speaking'])).toBe(true);

    await call.dispose();
    await call.waitFor(() => wsClients(r) === 0, 2_000, 'the server to drop the socket');
    const droppedBefore = r.logs(undefined, 'outbound frame dropped').length;
    await sleep(300); // a pacer or timer still running would show up here
    expect(r.logs(undefined, 'outbound frame dropped')).toHaveLength(droppedBefore);
    const after = resources();
    expect(after.Timeout ?? 0).toBeLessThanOrEqual(baseline.Timeout ?? 0);
    expect(after.TCPSocketWrap ?? 0).toBeLessThanOrEqual((baseline.TCPSocketWrap ?? 0) + 1); // fetch keep-alive may linger
  }, 15_000);
});

describe.concurrent('silence, garbage and replays', () => {
  it('a silent caller gets two nudges after silencePromptMs, then goodbye and a REST hang-up (outcome silence)', async (ctx) => {
    const { expect } = ctx;
    // Quick Vet waiting the shortest silence a clinic may set (3 s, not its 4): the call is three of them.
    const silencePromptMs = 3_000;
    const tenantsDir = mkdtempSync(join(tmpdir(), 'vetline-silent-'));
    ctx.onTestFinished(() => rmSync(tenantsDir, { recursive: true, force: true }));
    const quick = JSON.parse(readFileSync(join(TENANTS, 'quick-vet.json'), 'utf8')) as { timing: Record<string, unknown> };
    writeFileSync(join(tenantsDir, 'quick-vet.json'), JSON.stringify({ ...quick, $schema: undefined, timing: { ...quick.timing, silencePromptMs } }));
    const r = await rigFor(ctx, { agent: localAgent, tenantsDir });
    const call = await r.dial(QUICK_VET);
    const sid = call.callSid;
    const texts = clipTexts(quickVet);
    let goodbyePlayedAtHangup = -1;
    r.onRest = (e) => {
      if (e.op === 'hangup') goodbyePlayedAtHangup = playedOf(call, 4);
    };

    await untilState(r, call, 'ended', 22_000);
    // Greeting | 3 s | "Are you still there?" | 3 s | hint | 3 s | goodbye: three gaps, each the timer.
    const gaps = call.silenceGaps(1_000).map((g) => Math.round(g.ms));
    expect(gaps).toHaveLength(3);
    for (const ms of gaps) {
      expect(ms).toBeGreaterThanOrEqual(silencePromptMs - 20);
      expect(ms).toBeLessThan(silencePromptMs + 300);
    }
    expect(playedOf(call, 2)).toBe(speechMs(texts.stillThere));
    expect(playedOf(call, 3)).toBe(speechMs(texts.stillThereHint));
    expect(playedOf(call, 4)).toBe(speechMs(texts.goodbye));
    expect(goodbyePlayedAtHangup).toBe(speechMs(texts.goodbye)); // hang up only after the goodbye was heard
    expect(r.rest.map((e) => [e.op, e.callSid])).toEqual([['record', sid], ['hangup', sid]]);
    expect(r.engine.registry.recentCalls().find((c) => c.callSid === sid)?.outcome).toBe('silence');
    expect(r.engine.registry.list()).toEqual([]);
    expect(visitedInOrder(r.trace(sid), [
      'greeting', 'listening.waiting', 'listening.nudging', 'listening.waiting', 'listening.nudging', 'listening.waiting',
      'hangingUp.farewell', 'hangingUp.requesting',
    ])).toBe(true);
    // The engine closed the stream itself once Twilio accepted the hang-up.
    expect((await call.waitForClose(2_000)).code).toBe(1000);
  }, 30_000);

  it('garbage frames mid-reply are dropped and counted; the call still answers; the 10th closes it 1008', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: localAgent, stt: ['what are your hours', 'where are you'] });
    const call = await r.dial(QUICK_VET);
    const sid = call.callSid;
    const streamSid = call.streamSid;
    const media = (over: Record<string, unknown>) =>
      JSON.stringify({ event: 'media', sequenceNumber: '9000', streamSid, media: { track: 'inbound', chunk: '9000', timestamp: '900000', payload: '/////w==', ...over } });
    const invalid = [
      'not json {',
      'null',
      '[]',
      '"media"',
      media({ payload: '!!!@' }), // bad base64 alphabet
      media({ payload: 'AAA' }), // length % 4
      JSON.stringify({ event: 'media', sequenceNumber: 9001, streamSid, media: { chunk: '1', timestamp: '1', payload: '/////w==' } }),
      JSON.stringify({ event: 'dtmf', streamSid, dtmf: { digit: 'X' } }),
      JSON.stringify({ event: 'mark', streamSid, mark: {} }),
      JSON.stringify({ event: 'stop', stop: 'now' }),
    ];
    const ignored = [
      JSON.stringify({ event: 'hello', streamSid }),
      JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
      JSON.stringify({ event: 'mark', sequenceNumber: '9002', streamSid, mark: { name: 'not-ours' } }),
    ];

    await untilState(r, call, 'listening.waiting', 5_000);
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    for (const frame of [...invalid.slice(0, 5), ...ignored]) call.sendRaw(frame);
    await untilState(r, call, 'listening.waiting', 6_000);
    expect(call.closed).toBeNull();
    expect(call.clears).toEqual([]);
    expect(r.engine.registry.session(sid)?.history.at(-1)?.text).toBe('Our hours are Monday to Friday, 8 am to 6 pm. Anything else I can help with?');

    // Still a working call: another question, another answer.
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    await untilState(r, call, 'listening.waiting', 6_000);
    expect(r.engine.registry.session(sid)?.history.at(-1)?.text).toBe("We're at 1 Test Street. Anything else I can help with?");

    for (const frame of invalid.slice(5, 9)) call.sendRaw(frame);
    await sleep(100);
    expect(call.closed).toBeNull(); // nine invalid frames: still open
    call.sendRaw(invalid[9]!);
    const closed = await call.waitForClose(2_000);
    expect(closed).toMatchObject({ code: 1008, reason: 'too many invalid frames' });
    await untilState(r, call, 'ended', 2_000);
    expect(r.engine.registry.list()).toEqual([]);
    expect(r.engine.registry.recentCalls().find((c) => c.callSid === sid)?.turns).toHaveLength(2);
    // Raw frames are never logged.
    const logText = r.engine.logs.join('');
    expect(logText).not.toContain('not json {');
    expect(logText).not.toContain('!!!@');
    expect(call.protocolErrors).toEqual([]);
  }, 25_000);

  it('a binary frame closes the stream 1003 (docs/design/reliability.md F4) and the call ends cleanly', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: localAgent });
    const call = await r.dial(QUICK_VET);
    await untilState(r, call, 'listening.waiting', 5_000);
    call.sendRaw(new Uint8Array([0x7b, 0x7d, 0x00, 0xff]), { binary: true });
    expect(await call.waitForClose(2_000)).toMatchObject({ code: 1003, reason: 'binary frame' });
    await untilState(r, call, 'ended', 2_000);
    expect(r.engine.registry.list()).toEqual([]);
    expect(r.rest.map((e) => e.op)).toEqual(['record']);
  }, 15_000);

  it('a repeated /twilio/voice reuses the token; a replayed upgrade is refused 403, a foreign callSid 1008', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: localAgent });
    const sid = callSidOf();

    const first = await voiceWebhook(r.engine.url, sid);
    const second = await voiceWebhook(r.engine.url, sid);
    expect(first.status).toBe(200);
    expect(first.token).not.toBeNull();
    expect(second.token).toBe(first.token);
    expect(r.engine.registry.list().filter((c) => c.callSid === sid)).toHaveLength(1);
    expect(r.engine.registry.list()[0]?.state).toBe('connecting');

    // Twilio connects the stream (its webhook is the third for this CallSid: same token again).
    const call = await r.dial(QUICK_VET, { callSid: sid });
    expect(call.twiml.stream?.url).toBe(`wss://voice.test/twilio/ws/${first.token}`);
    await untilState(r, call, 'listening.waiting', 5_000);
    const connected = await voiceWebhook(r.engine.url, sid);
    expect(connected.body).toContain('<Hangup/>');
    expect(connected.token).toBeNull();

    // The captured upgrade replayed, signature and all: the token was used, refused before the handshake.
    const path = `/twilio/ws/${first.token!}`;
    expect(await upgradeStatus(`${r.engine.url.replace(/^http/, 'ws')}${path}`, { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, path) })).toBe(403);
    // A captured start sent on another call's socket (its own webhook minted another call and token).
    const replay = await r.dial(QUICK_VET, { start: { callSid: sid, customParameters: { tenantId: 'quick-vet' } } });
    expect(await replay.waitForClose(1_000)).toMatchObject({ code: 1008, reason: 'stream token belongs to another call' });
    expect(replay.outbound).toEqual([]);

    // A start whose callSid is not the one the token was minted for.
    const foreign = await r.dial(QUICK_VET, { start: { callSid: callSidOf() } });
    expect(await foreign.waitForClose(1_000)).toMatchObject({ code: 1008, reason: 'stream token belongs to another call' });
    expect(foreign.outbound).toEqual([]);

    expect(r.engine.registry.list().filter((c) => c.callSid === sid)).toHaveLength(1);
    expect(r.stateOf(sid)).toBe('listening.waiting'); // the real call is untouched
    expect(r.logs(undefined, 'stream upgrade refused: bad stream token').map((l) => [l.code, l.reason])).toEqual([['VET_E_STREAM_TOKEN', 'replayed']]);
    expect(r.logs(undefined, 'media stream refused').map((l) => [l.code, l.reason])).toEqual([
      ['VET_E_STREAM_TOKEN', 'stream token belongs to another call'],
      ['VET_E_STREAM_TOKEN', 'stream token belongs to another call'],
    ]);
    // The two refused webhooks' calls never got a stream; Twilio's final status ends them.
    for (const c of [replay, foreign]) expect(r.stateOf(c.callSid)).toBe('connecting');
    await replay.statusCallback('completed', 0);
    await foreign.statusCallback('completed', 0);
    for (const c of [replay, foreign]) expect(r.engine.registry.recentCalls().find((x) => x.callSid === c.callSid)?.outcome).toBe('notConnected');
    expect(r.engine.registry.list().map((c) => c.callSid)).toEqual([sid]);
    expect(r.logs().some((l) => JSON.stringify(l).includes(first.token!))).toBe(false); // the token never reaches a log
  }, 15_000);

  it('two clinics at once: each call hears its own clinic', async (ctx) => {
    const { expect } = ctx;
    const r = await rigFor(ctx, { agent: localAgent });
    const t0 = performance.now();
    const [quick, consent] = await Promise.all([r.dial(QUICK_VET), r.dial(CONSENT_VET)]);
    await Promise.all([untilState(r, quick, 'listening.waiting', 5_000), untilState(r, consent, 'consent.waiting', 5_000)]);
    expect(performance.now() - t0).toBeLessThan(3_000);
    expect(r.engine.registry.list().map((c) => c.tenantId).sort()).toEqual(['consent-vet', 'quick-vet']);
    expect(playedOf(consent, 2)).toBe(speechMs(clipTexts(consentVet).consent));
    expect(playedOf(quick, 2)).toBe(0); // quick-vet asks no consent
    expect(r.rest.map((e) => [e.op, e.callSid])).toEqual([['record', quick.callSid]]);
    await Promise.all([quick.hangUp(), consent.hangUp()]);
    await Promise.all([untilState(r, quick, 'ended', 2_000), untilState(r, consent, 'ended', 2_000)]);
    expect(r.engine.registry.list()).toEqual([]);
  }, 15_000);
});
