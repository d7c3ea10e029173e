/**
 * The journal regression fixtures (docs/journal.md "Fixtures"): every journal in
 * test/fixtures/journals/ was recorded from a real call (scripts/record-fixtures.ts, or
 * test/replay/replay.test.ts for barge-in and dtmf-transfer). Each must still replay through today's
 * call machine (i) exactly: no divergence from its recorded timers and outcome, the same trace on
 * every replay, the states and commands the live call produced (`<name>.live.json`, when the
 * generator wrote one) and the counts its outcome line recorded; and (ii) with the behaviour its
 * scenario is about (one check per fixture below; a fixture without one fails).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CommandSummary } from '../../src/journal/format.js';
import { firstDivergence, parseJournal, replayJournal, type Journal, type ReplayResult } from '../../src/replay/replay.js';

const DIR = fileURLToPath(new URL('../fixtures/journals/', import.meta.url));
const FIXTURES = readdirSync(DIR).filter((f) => f.endsWith('.jsonl')).map((f) => f.slice(0, -'.jsonl'.length)).sort();

interface Fixture {
  journal: Journal;
  replay: ReplayResult;
}

const load = (name: string): Fixture => {
  const journal = parseJournal(readFileSync(`${DIR}${name}.jsonl`, 'utf8'), `${name}.jsonl`);
  return { journal, replay: replayJournal(journal) };
};

const states = (r: ReplayResult) => r.transitions.map((s) => s.state);
const ofType = <T extends CommandSummary['type']>(r: ReplayResult, type: T) =>
  r.commands.filter((c): c is Extract<ReplayResult['commands'][number], { type: T }> => c.type === type);
const spokenClips = (r: ReplayResult) => r.spoken.flatMap((s) => (s.clip ? [s.clip] : []));
const spokenText = (r: ReplayResult) => r.spoken.flatMap((s) => (s.text ? [s.text] : [])).join(' ');
/** The journal event that caused the first transition into `state`. */
const causeOf = ({ journal, replay }: Fixture, state: string) => {
  const item = replay.trace.find((x) => x.kind === 'state' && x.state === state);
  return item ? journal.events[item.cause]?.event : undefined;
};
/** Trace index of the first item matching, -1 if none. */
const traceIndex = (r: ReplayResult, match: (key: string) => boolean) =>
  r.trace.findIndex((x) => match(x.kind === 'state' ? `state ${x.state}` : x.kind === 'command' ? x.command.type : `speak ${x.clip ?? ''}`));

/** What each scenario is about, asserted on its replay. Keyed by fixture name. */
const BEHAVIOUR: Record<string, (f: Fixture) => void> = {
  'barge-in': ({ replay }) => {
    expect(states(replay)).toContain('reply.interrupted.callerTalking');
    expect(ofType(replay, 'out.clear')).toHaveLength(1);
    expect(ofType(replay, 'out.interrupted')).toMatchObject([{ confirmed: true }]);
    expect(ofType(replay, 'out.turn').map((c) => c.transcript)).toEqual(['what are your hours', 'i need an appointment']);
  },
  'dtmf-transfer': (f) => {
    expect(causeOf(f, 'transferring.announcing')).toEqual({ type: 'twilio.dtmf', digit: '0' });
    expect(states(f.replay).slice(-2)).toEqual(['transferring.handedOff', 'ended']);
    expect(f.replay.outcome).toBe('transferred');
  },
  'consent-yes': (f) => {
    const { journal, replay } = f;
    // Recording starts only after the disclosure was played and the caller said yes.
    const [start, ...more] = ofType(replay, 'out.startRecording');
    expect(start).toBeDefined();
    expect(more).toEqual([]);
    const startAt = traceIndex(replay, (k) => k === 'out.startRecording');
    expect(traceIndex(replay, (k) => k === 'state consent.waiting')).toBeLessThan(startAt);
    const cause = replay.trace[startAt]!.cause;
    const yes = journal.events.findIndex((e) => e.event.type === 'stt.final' && (e.event as { text?: string }).text === 'yes');
    expect(yes).toBeGreaterThanOrEqual(0);
    expect(cause).toBeGreaterThanOrEqual(yes);
    expect(spokenClips(replay).slice(0, 2)).toEqual(['greeting', 'consent']);
  },
  'consent-no': ({ replay }) => {
    expect(ofType(replay, 'out.startRecording')).toEqual([]);
    expect(states(replay)).toEqual(expect.arrayContaining(['consent.waiting', 'reply.speaking']));
    expect(ofType(replay, 'out.turn').map((c) => c.transcript)).toEqual(['where are you located']);
    expect(replay.outcome).toBe('callerHungUp');
  },
  'prepared-discarded': ({ journal, replay }) => {
    // The reply prepared in the caller's pause was thrown away when they went on: never sent, never cleared, never in the history.
    const [discard, ...more] = ofType(replay, 'out.discard');
    expect(more).toEqual([]);
    expect(discard).toMatchObject({ reason: 'callerResumed' });
    expect(replay.commands.filter((c) => 'generation' in c && c.generation === discard!.generation).map((c) => c.type)).toEqual(['out.discard']);
    expect(ofType(replay, 'out.turn')).toMatchObject([{ transcript: 'my cat has been sneezing what are your hours', prepared: true }]);
    expect(journal.outcome?.record.usage).toMatchObject({ discarded: { replies: 1 } });
  },
  hours: ({ replay }) => {
    expect(ofType(replay, 'out.turn').map((c) => c.transcript)).toEqual(['what are your hours']);
    expect(spokenText(replay)).toContain('Our hours are Monday to Friday, 8 am to 6 pm.');
    expect(replay.outcome).toBe('callerHungUp');
  },
  appointment: ({ journal, replay }) => {
    expect(ofType(replay, 'out.turn')).toHaveLength(7);
    expect(ofType(replay, 'out.request').map(({ request: { id: _id, ...r } }) => r)).toEqual([{
      kind: 'appointment', petName: 'Rex', petSpecies: null, ownerName: 'Jane Smith', reason: 'vaccinations', preferredTime: 'tomorrow at 10 am',
      message: null, recipient: null, callback: { kind: 'spoken' }, urgency: 'routine',
    }]);
    expect(journal.outcome?.record.requests).toBe(1);
  },
  'emergency-word': (f) => {
    // Acted on the interim transcript, mid-reply, before the caller finished the sentence: one
    // keyword in a partial is uncertain, so the question first, then the script on "yes".
    const cause = causeOf(f, 'emergency.checking.asking') as { type: string; text?: string } | undefined;
    expect(cause?.type).toBe('stt.partial');
    expect(cause?.text).toContain('bleeding');
    expect(causeOf(f, 'emergency.instructing')).toMatchObject({ type: 'stt.final', text: 'yes' });
    expect(ofType(f.replay, 'out.emergency')).toMatchObject([
      { source: { via: 'speech', keyword: 'bleeding', certainty: 'uncertain', basis: 'partial' }, check: 'saidYes' },
    ]);
    expect(spokenClips(f.replay)).toEqual(expect.arrayContaining(['emergencyCheck', 'emergency']));
    expect(states(f.replay)).toEqual(expect.arrayContaining([
      'reply.speaking', 'emergency.checking.asking', 'emergency.checking.waiting', 'emergency.instructing', 'transferring.dialing', 'transferring.handedOff',
    ]));
    expect(f.replay.outcome).toBe('emergency');
  },
  'emergency-key': (f) => {
    // The key is clear: straight to the script, no question.
    expect(causeOf(f, 'emergency.instructing')).toEqual({ type: 'twilio.dtmf', digit: '9' });
    expect(spokenClips(f.replay)).not.toContain('emergencyCheck');
    expect(ofType(f.replay, 'out.clear')).toHaveLength(1); // the reply it interrupted
    expect(ofType(f.replay, 'out.emergency')).toMatchObject([{ source: { via: 'dtmf', digit: '9', certainty: 'clear' }, check: null }]);
    expect(states(f.replay)).toContain('transferring.handedOff');
    expect(f.replay.outcome).toBe('emergency');
  },
  'transfer-failed': ({ journal, replay }) => {
    expect(journal.events.some((e) => e.event.type.startsWith('xstate.error.actor.'))).toBe(true);
    const s = states(replay);
    expect(s.indexOf('listening.waiting', s.indexOf('transferring.failed'))).toBeGreaterThan(s.indexOf('transferring.failed'));
    expect(spokenClips(replay)).toEqual(['greeting', 'transfer', 'transferFailed']); // the apology
    expect(replay.outcome).toBe('callerHungUp');
  },
  'silence-goodbye': ({ replay }) => {
    expect(states(replay).filter((s) => s === 'listening.nudging')).toHaveLength(2);
    expect(spokenClips(replay)).toEqual(['greeting', 'stillThere', 'stillThereHint', 'goodbye']);
    expect(ofType(replay, 'out.turn')).toEqual([]);
    expect(states(replay)).toContain('hangingUp.requesting');
    expect(replay.outcome).toBe('silence');
  },
  'hangup-mid-reply': (f) => {
    expect(states(f.replay).slice(-2)).toEqual(['reply.speaking', 'ended']);
    expect(causeOf(f, 'ended')?.type).toBe('twilio.stop');
    expect(f.replay.outcome).toBe('callerHungUp');
  },
  'backchannel-resume': ({ replay }) => {
    const [interrupted] = ofType(replay, 'out.interrupted');
    expect(interrupted).toMatchObject({ confirmed: false });
    expect(ofType(replay, 'out.resume')).toMatchObject([{ generation: interrupted!.generation }]);
    const s = states(replay);
    expect(s[s.indexOf('reply.interrupted.judging') + 1]).toBe('reply.speaking');
    expect(ofType(replay, 'out.turn')).toHaveLength(1); // "mm-hmm" was no turn
  },
  'garbage-frames': ({ journal, replay }) => {
    // None of the invalid or foreign frames reached the machine; the call went on answering.
    const twilio = journal.events.filter((e) => e.event.type.startsWith('twilio.'));
    expect(twilio.filter((e) => e.event.type === 'twilio.dtmf')).toEqual([]);
    expect(twilio.filter((e) => e.event.type === 'twilio.stop')).toHaveLength(1);
    expect(twilio.at(-1)?.event.type).toBe('twilio.stop');
    const marks = twilio.filter((e) => e.event.type === 'twilio.mark').map((e) => e.event as { generation?: unknown; endMs?: unknown });
    expect(marks.length).toBeGreaterThan(0);
    expect(marks.filter((m) => typeof m.generation !== 'number' || typeof m.endMs !== 'number')).toEqual([]);
    expect(ofType(replay, 'out.turn').map((c) => c.transcript)).toEqual(['what are your hours', 'where are you located']);
    expect(ofType(replay, 'out.clear')).toEqual([]);
  },
};

describe('the end-of-turn rule in replays', () => {
  it('the fixtures replay windows of every kind, each what the live call chose', () => {
    const kinds = new Set<string>();
    for (const name of FIXTURES) {
      const { journal, replay } = load(name);
      for (const [i, turn] of ofType(replay, 'out.turn').entries()) {
        const live = journal.outcome!.record.turns[i]?.endOfTurn;
        if (!live) continue;
        expect(turn.endOfTurn, name).toEqual(live);
        kinds.add(turn.endOfTurn.kind);
      }
    }
    expect([...kinds].sort()).toEqual(['complete', 'incomplete', 'open']);
  });

  it('is read from the journaled clinic timing: another endOfTurnCompleteMs, another window, the turn committed that much later', () => {
    const { journal } = load('hours');
    // Timers at their nominal due time, so the commit moves with the window.
    const same = replayJournal(journal, { timers: 'simulated' });
    const timing = { ...journal.input.tenant.timing, endOfTurnCompleteMs: 400 };
    const slower = replayJournal({ ...journal, input: { ...journal.input, tenant: { ...journal.input.tenant, timing } } }, { timers: 'simulated' });
    const [turn] = ofType(same, 'out.turn');
    const [slowTurn] = ofType(slower, 'out.turn');
    expect(turn).toMatchObject({ endOfTurn: { kind: 'complete', windowMs: 250 } });
    expect(slowTurn).toMatchObject({ endOfTurn: { kind: 'complete', windowMs: 400 } });
    expect(slowTurn!.t - turn!.t).toBeCloseTo(150, 0);
  });
});

describe.each(FIXTURES)('fixture %s', (name) => {
  it('replays exactly: no divergence, the same trace twice, the live call and its recorded outcome', () => {
    const f = load(name);
    const { journal, replay } = f;
    expect(replay.divergences).toEqual([]);
    expect(replay.error).toBeNull();
    expect(replay.status).toBe('done');
    expect(replay.outcome).not.toBeNull();
    expect(replay.outcome).toBe(replay.recordedOutcome);
    expect(firstDivergence(replay, load(name).replay)).toBeNull();
    // XState's pure functions over the recorded events end the same way (docs/design/architecture.md §5).
    let [snapshot] = initialTransition(callMachine, journal.input);
    for (const { event } of journal.events) [snapshot] = transition(callMachine, snapshot, event);
    expect(snapshot.value).toBe('ended');
    // The outcome line's counts agree with what the replay did.
    const record = journal.outcome!.record;
    expect(ofType(replay, 'out.turn')).toHaveLength(record.turns.length);
    expect(ofType(replay, 'out.request')).toHaveLength(record.requests ?? 0);
    expect(ofType(replay, 'out.emergency').map((c) => c.source.via)).toEqual(record.emergency ? [record.emergency.via] : []);
    // The end-of-turn window each turn got live (the outcome line's turn timings) is the one the
    // replay chooses again from the journaled clinic timing (journals from before adaptive windows
    // recorded none).
    const liveWindows = record.turns.map((t) => t.endOfTurn ?? null);
    if (!liveWindows.includes(null)) expect(ofType(replay, 'out.turn').map((c) => c.endOfTurn)).toEqual(liveWindows);

    const livePath = `${DIR}${name}.live.json`;
    if (existsSync(livePath)) {
      const live = JSON.parse(readFileSync(livePath, 'utf8')) as { states: string[]; commands: CommandSummary[] };
      expect(states(replay)).toEqual(live.states);
      expect(replay.commands.map(({ t: _t, ...c }) => c)).toEqual(live.commands);
    }
  });

  it('shows the behaviour its scenario is about', () => {
    const check = BEHAVIOUR[name];
    if (!check) throw new Error(`no behavioural assertion for fixture ${name}: add one to BEHAVIOUR`);
    check(load(name));
  });
});

it('every scenario of scripts/record-fixtures.ts has its fixture, and every fixture is small', async () => {
  const { SCENARIOS } = await import('../../scripts/record-fixtures.js');
  expect(FIXTURES).toEqual(expect.arrayContaining(SCENARIOS.map((s) => s.name)));
  for (const name of FIXTURES) expect(readFileSync(`${DIR}${name}.jsonl`).length).toBeLessThan(100 * 1024);
});
