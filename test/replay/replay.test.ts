/**
 * The journal guarantee (docs/journal.md): a call run live through the real stack (HTTP + Media
 * Streams via FakeTwilio, embedded VAD/STT/agent/TTS, the call registry) is journaled; replaying
 * the journal on a simulated clock reproduces the live call's state transitions and outbound
 * commands exactly: same order, same payloads, same audio byte counts.
 *
 * VETLINE_WRITE_FIXTURES=1 also copies the barge-in and DTMF-transfer journals to
 * test/fixtures/journals/ (the fixtures test/replay/journal.test.ts replays).
 *
 * The refused transfer runs on the fake voice (same stack, short deterministic audio): what it
 * checks is the REST failure's journaling, not speech, and on the local voice its transferFailed
 * clip alone (the emergency number read out) played for ~14 s.
 */
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { decodeUlaw, encodeUlaw } from '../../src/audio/ulaw.js';
import type { SessionTap } from '../../src/calls/session.js';
import { summarizeCommand, type CommandSummary } from '../../src/journal/format.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import { readJournal, replayJournal, type ReplayResult } from '../../src/replay/replay.js';
import { CPS, warmPrompts } from '../e2e/conversation-kit.js';
import { FakeTwilio, nextCallerNumber, testNumbersIn } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { FIXTURE_TENANTS_DIR, startEngine, startLocalEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/journals', import.meta.url));
const QUICK_VET = '+15550109000';

type Live = { transitions: { t: number; state: string }[]; commands: ({ t: number } & CommandSummary)[] };
const live = new Map<string, Live>();
const liveOf = (callSid: string): Live => {
  let l = live.get(callSid);
  if (!l) live.set(callSid, (l = { transitions: [], commands: [] }));
  return l;
};
const tap: SessionTap = {
  transition: (callSid, state, t) => liveOf(callSid).transitions.push({ t, state }),
  command: (callSid, command, t) => liveOf(callSid).commands.push({ t, ...summarizeCommand(command) }),
};

/** The embedded providers (local voice and recognizer). */
let engine: TestEngine;
/** The same engine on the fake voice and a fake recognizer. */
let fakeVoice: TestEngine;
let journalDir: string;
/** Twilio REST for the embedded engine; the fake-voice engine's refuses every transfer. */
const twilioRest = restRecorder();
const refusingRest = restRecorder({ fail: (op) => op === 'update' });
const calls: FakeTwilio[] = [];

/** A call from its own number: the tests run at once on the same engines, within the per-caller limit. */
const dial = async (on = engine) => {
  const call = await FakeTwilio.call({ serverUrl: on.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber() });
  calls.push(call);
  return call;
};

const stateOf = (callSid: string, on = engine) => on.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';

const untilQuiet = (call: FakeTwilio, ms?: number, timeoutMs?: number) => call.untilQuiet(ms, timeoutMs);

/**
 * Once the greeting is over and the receptionist listens: the greeting's audio stops before the
 * machine hears its last mark, and on a loaded machine a caller who speaks in between talks over
 * the greeting (another path than these calls follow).
 */
async function afterGreeting(call: FakeTwilio) {
  await untilQuiet(call);
  await call.waitFor(() => stateOf(call.callSid) === 'listening.waiting', 5_000, 'the receptionist to listen');
}

/** The caller's line, louder: over the energy VAD's stricter threshold while we speak (barge-in). */
const loud = (ulaw: Uint8Array, gain: number) => {
  const pcm = decodeUlaw(ulaw, new Int16Array(ulaw.length));
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round((pcm[i] ?? 0) * gain)));
  return encodeUlaw(pcm);
};

async function ended(call: FakeTwilio, on = engine) {
  await call.waitFor(() => stateOf(call.callSid, on) === 'ended', 5_000, 'the call to end');
  await on.journal?.flushAll();
}

async function journalPath(callSid: string): Promise<string> {
  const name = (await readdir(journalDir)).find((f) => f.endsWith(`_${callSid}.jsonl`));
  if (!name) throw new Error(`no journal for ${callSid} in ${journalDir}`);
  return join(journalDir, name);
}

/** Replays the call's journal and checks it against what the live call did; returns the replay. */
async function expectReplayMatchesLive(expect: ExpectStatic, callSid: string, on = engine): Promise<ReplayResult> {
  const path = await journalPath(callSid);
  const journal = await readJournal(path);
  const replay = replayJournal(journal);
  const l = liveOf(callSid);
  expect(replay.divergences).toEqual([]);
  expect(replay.transitions.map((s) => s.state)).toEqual(l.transitions.map((s) => s.state));
  expect(replay.commands.map(({ t: _t, ...c }) => c)).toEqual(l.commands.map(({ t: _t, ...c }) => c));
  expect(replay.outcome).toBe(on.registry.recentCalls().find((r) => r.callSid === callSid)?.outcome);
  expect(replay.recordedOutcome).toBe(replay.outcome);
  // Times: replay stamps a transition with its cause's enqueue time; live sees it once the
  // macrostep and its side effects (child actors starting, a clip being queued) are done. So live
  // is never earlier, and only a little later.
  replay.transitions.forEach((s, i) => {
    const liveT = l.transitions[i]?.t ?? Infinity;
    expect(liveT).toBeGreaterThanOrEqual(s.t - 0.1);
    expect(liveT - s.t).toBeLessThan(1_000);
  });
  // No phone number anywhere in the file (the caller's, the clinic's, the transfer targets).
  const text = await readFile(path, 'utf8');
  expect(testNumbersIn(text)).toEqual([]);
  expect(text).not.toContain(TEST_TOKEN);
  return replay;
}

const states = (r: ReplayResult) => r.transitions.map((s) => s.state);
const types = (r: ReplayResult) => r.commands.map((c) => c.type);

beforeAll(async () => {
  journalDir = await mkdtemp(join(tmpdir(), 'vetline-journal-'));
  engine = await startLocalEngine({
    rest: twilioRest.rest,
    journalDir,
    tap,
  });
  fakeVoice = await startEngine({
    providers: { vad: energyVad, stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: CPS }), agent: localAgent },
    prompts: await warmPrompts(),
    rest: refusingRest.rest,
    journalDir,
    tap,
    env: { TENANTS_DIR: FIXTURE_TENANTS_DIR },
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(calls.map((c) => c.dispose()));
  await engine?.close();
  await fakeVoice?.close();
  if (journalDir) await rm(journalDir, { recursive: true, force: true });
});

describe.concurrent('replaying a journal reproduces the live call', () => {
  // Alone, before the others: with the barge-in call decoding on the same speech workers, the
  // recognizer's final came late enough for a second end-of-turn window, which this call's timing
  // figures would then include.
  it.sequential('greeting → question → answer → caller hangs up', async ({ expect }) => {
    const call = await dial();
    await afterGreeting(call);
    await call.say(await synthesizeUlaw('what are your hours'));
    await call.waitFor(() => stateOf(call.callSid).startsWith('reply'), 5_000, 'a reply to start');
    await untilQuiet(call);
    await call.hangUp();
    await ended(call);

    const replay = await expectReplayMatchesLive(expect, call.callSid);
    expect(states(replay), states(replay).join(' → ')).toEqual(expect.arrayContaining(['connecting', 'greeting', 'listening.waiting', 'listening.hearing', 'reply.speaking', 'ended']));
    // The answer starts during the window when the recognizer's interim words were in at the end of
    // speech (reply.preparing), after its final otherwise (reply.thinking); a final that comes late
    // enough (a loaded machine's speech workers) may start it over once more. Which, and how often,
    // depends on how fast the speech worker decoded; the replay follows the live call either way
    // (checked above), and the caller's one question is one committed turn.
    expect(states(replay).filter((s) => s === 'reply.preparing.pausing' || s === 'reply.thinking').length).toBeGreaterThanOrEqual(1);
    expect(replay.commands.filter((c) => c.type === 'out.turn')).toHaveLength(1);
    // A finished question: the 250 ms window, over by the time the embedded recognizer's final came (no window timer).
    expect(replay.commands.find((c) => c.type === 'out.turn')).toMatchObject({ transcript: 'what are your hours', endOfTurn: { kind: 'complete', windowMs: 250 } });
    expect(replay.outcome).toBe('callerHungUp');
    // The machine got at most one mark echo per 250 ms of playback, plus those that ended an item,
    // not all of them (src/calls/mark-echoes.ts); the replay above matched the live call with them.
    const journaled = (await readJournal(await journalPath(call.callSid))).events.filter((e) => e.event.type === 'twilio.mark').length;
    expect(journaled).toBeGreaterThan(0);
    expect(journaled).toBeLessThan(call.marksEchoed.length * 0.6);
  }, 40_000);

  it('a barge-in: the caller talks over the reply', async ({ expect }) => {
    const call = await dial();
    await afterGreeting(call);
    await call.say(await synthesizeUlaw('what are your hours'));
    await call.waitFor(() => stateOf(call.callSid) === 'reply.speaking', 8_000, 'the reply to play');
    await call.say(loud(await synthesizeUlaw('i need an appointment'), 2));
    await call.waitFor(() => liveOf(call.callSid).commands.some((c) => c.type === 'out.clear'), 8_000, 'the barge-in clear');
    const turns = () => liveOf(call.callSid).commands.filter((c) => c.type === 'out.turn').length;
    await call.waitFor(() => turns() === 2, 10_000, 'a reply to the interruption');
    await untilQuiet(call);
    await call.hangUp();
    await ended(call);

    const replay = await expectReplayMatchesLive(expect, call.callSid);
    expect(states(replay)).toContain('reply.interrupted.callerTalking');
    expect(types(replay)).toContain('out.clear');
    expect(replay.commands.find((c) => c.type === 'out.interrupted')).toMatchObject({ confirmed: true });
    expect(replay.commands.filter((c) => c.type === 'out.turn').map((c) => c.type === 'out.turn' && c.transcript)).toEqual(['what are your hours', 'i need an appointment']);
    if (process.env.VETLINE_WRITE_FIXTURES === '1') await copyFile(await journalPath(call.callSid), join(FIXTURES, 'barge-in.jsonl'));
  }, 40_000);

  it('DTMF 0: transfer to the front desk (the REST result is journaled)', async ({ expect }) => {
    const call = await dial();
    await untilQuiet(call);
    call.dtmf('0');
    await call.waitFor(() => stateOf(call.callSid) === 'transferring.handedOff', 8_000, 'the transfer');
    await call.stop();
    await ended(call);

    const replay = await expectReplayMatchesLive(expect, call.callSid);
    expect(states(replay).slice(-4)).toEqual(['transferring.announcing', 'transferring.dialing', 'transferring.handedOff', 'ended']);
    expect(replay.outcome).toBe('transferred');
    const journal = await readJournal(await journalPath(call.callSid));
    expect(journal.events.some((e) => (e.event.type as string) === 'xstate.done.actor.0.call.transferring.dialing')).toBe(true);
    if (process.env.VETLINE_WRITE_FIXTURES === '1') await copyFile(await journalPath(call.callSid), join(FIXTURES, 'dtmf-transfer.jsonl'));
  }, 30_000);

  it('DTMF 0 when Twilio refuses the transfer: the failure is journaled and replayed (fake voice)', async ({ expect }) => {
    const call = await dial(fakeVoice);
    await untilQuiet(call);
    call.dtmf('0');
    await call.waitFor(() => liveOf(call.callSid).transitions.some((s) => s.state === 'transferring.failed'), 8_000, 'the transfer to fail');
    await untilQuiet(call);
    await call.hangUp();
    await ended(call, fakeVoice);

    const replay = await expectReplayMatchesLive(expect, call.callSid, fakeVoice);
    expect(states(replay)).toContain('transferring.failed');
    const journal = await readJournal(await journalPath(call.callSid));
    const failure = journal.events.find((e) => e.event.type.startsWith('xstate.error.actor.'));
    expect(failure?.event).toMatchObject({ error: { message: 'update refused by the test' } });
  }, 30_000);
});
