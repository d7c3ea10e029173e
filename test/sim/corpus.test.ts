/**
 * `npm run simulate -- --corpus`'s figures (scripts/sim/corpus.ts): how a call's record becomes
 * false barge-ins, barge-in attempts and detections; then a corpus run over a loudly echoing line
 * against an engine on the fake voice (a -15 dBFS tone, so its echo at -20 dB is louder than the
 * listening threshold) and a scripted recognizer. The corpus itself, on the embedded providers, is
 * measured by the command (docs/testing.md "A line like a phone line").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localAgent } from '../../src/providers/agent/local.js';
import type { ScenarioResult } from '../../scripts/sim/caller.js';
import { judgeRun, ONSET_LEAD_MS, runCorpus, summarize, TAIL_MS } from '../../scripts/sim/corpus.js';
import type { Scenario } from '../../scripts/sim/scenario.js';
import { engineTarget, type Target } from '../../scripts/sim/target.js';
import { QUICK_VET, startRig, type Rig } from '../e2e/conversation-kit.js';
import { PHONE_LINE, type LineProfile } from '../support/fake-line.js';

const result = (o: Partial<ScenarioResult>): ScenarioResult => ({
  name: 'x', callSid: 'CA1', passed: true, checks: [], replies: [], audio: [], states: [], agentLines: [], engine: null,
  caller: { lines: [], keysMs: [], keysStreamMs: [] }, clearsMs: [], line: null, durationMs: 20_000, ...o,
});
/** A caller line; its stream time is its caller time less `streamLagMs` (the stream began that long after the dial). */
const line = (fromMs: number, toMs: number, stateAtStart = 'reply.speaking', engineAudible = true, streamLagMs = 500) =>
  ({ text: `line at ${fromMs}`, fromMs, toMs, stream: { fromMs: fromMs - streamLagMs, toMs: toMs - streamLagMs }, stateAtStart, engineAudible });

describe('corpus figures', () => {
  it('counts attempts over a playing reply, their clears, and clears or speech starts while the caller was silent', () => {
    const r = result({
      caller: {
        lines: [
          line(1_000, 1_500, 'listening.waiting', false), // a question, not a barge-in attempt
          line(3_000, 4_000), // detected: clear 350 ms in
          line(6_000, 7_200), // missed
          line(9_000, 9_400), // over a reply but too short to count
        ],
        keysMs: [12_000],
        keysStreamMs: [11_500],
      },
      clearsMs: [3_350, 4_000 + TAIL_MS - 10, 12_300, 15_000],
      states: [
        { atS: 1.1, state: 'listening.hearing' },
        { atS: 2, state: 'reply.speaking' },
        { atS: 3.3, state: 'reply.interrupted.callerTalking' },
        { atS: 14.9, state: 'reply.speaking' },
        { atS: 15, state: 'reply.interrupted.callerTalking' },
        { atS: 15.5, state: 'reply.interrupted.judging' },
        { atS: 16, state: 'listening.waiting' },
        { atS: 17, state: 'listening.hearing' },
      ],
      audio: [{ fromS: 2, toS: 10 }, { fromS: 14, toS: 15 }],
    });
    const f = judgeRun(r, 7);
    expect(f).toMatchObject({ seed: 7, attribution: 'caller', attempts: 2, detected: 1, clearAfterMs: [350], misses: [{ text: 'line at 6000', atS: 6 }], engineSpeechS: 9 });
    expect(f.falseBargeIns).toEqual([{ atS: 15 }]); // the clear just inside the tail and the key's are the caller's
    expect(f.falseSpeechStarts).toEqual([{ atS: 15, state: 'reply.interrupted.callerTalking' }, { atS: 17, state: 'listening.hearing' }]);

    const report = summarize(PHONE_LINE, [7], ['x'], [f]);
    expect(report).toMatchObject({ calls: 1, falseBargeIns: 1, falseSpeechStarts: 2, bargeIn: { attempts: 2, detected: 1, rate: 0.5 }, pass: false });
    expect(report.falseBargeInsPerMin).toBeCloseTo(1 / (9 / 60), 1);
    const clean = summarize(PHONE_LINE, [7], ['x'], [{ ...f, misses: [], detected: 2, falseBargeIns: [] }]);
    expect(clean).toMatchObject({ falseBargeIns: 0, bargeIn: { rate: 1 }, pass: true });
    expect(summarize(PHONE_LINE, [], [], []).pass).toBe(false); // no attempts: nothing shown
    const broken = summarize(PHONE_LINE, [7, 8], ['x'], [{ ...f, misses: [], detected: 2, falseBargeIns: [] }, { ...f, attempts: 0, detected: 0, falseBargeIns: [], error: 'socket close timed out' }]);
    expect(broken).toMatchObject({ errors: 1, falseBargeIns: 0, bargeIn: { rate: 1 }, pass: false }); // incomplete figures never pass
  });

  it("attributes each barge-in by the engine's speech onset in stream time, however late its clear reached the caller", () => {
    // An engine running 2 s behind (a loaded machine): every clear reaches the caller after the line
    // ended, and one lands in the caller's silence. On the caller's clock that is one detection
    // missed and a false barge-in; the onsets on the stream's clock say what happened.
    const lagging = result({
      caller: {
        lines: [line(3_000, 4_000), line(6_000, 7_200), line(9_000, 10_000)],
        keysMs: [12_000],
        keysStreamMs: [11_500],
      },
      clearsMs: [5_350, 8_400, 12_900, 17_000],
      engine: {
        turns: [],
        bargeIns: [
          { clearLatencyMs: 2_300, onsetStreamMs: 2_550 }, // the first line (stream 2,500–3,500), 50 ms in
          { clearLatencyMs: 2_300, onsetStreamMs: 5_350 }, // 150 ms before the second line: a run its words completed
          { clearLatencyMs: 900, onsetStreamMs: 11_700 }, // after the key
          { clearLatencyMs: 2_400, onsetStreamMs: 14_000 }, // nobody was talking: the echo
        ],
      },
    });
    const byCaller = judgeRun({ ...lagging, engine: null }, 1);
    expect(byCaller).toMatchObject({ attribution: 'caller', attempts: 3, detected: 0 });
    expect(byCaller.falseBargeIns).toEqual([{ atS: 5.35 }, { atS: 8.4 }, { atS: 17 }]); // the lag alone makes two of them

    const f = judgeRun(lagging, 1);
    expect(f).toMatchObject({ attribution: 'stream', attempts: 3, detected: 2, misses: [{ text: 'line at 9000', atS: 9 }] });
    expect(f.clearAfterMs).toEqual([50 + 2_300, 0 + 2_300]); // the onset's offset into the line, then the engine's onset → clear
    expect(f.falseBargeIns).toEqual([{ atS: 14 }]); // stream seconds
    // One onset more than ONSET_LEAD_MS before the line is not the caller's.
    const early = judgeRun({ ...lagging, engine: { turns: [], bargeIns: [{ clearLatencyMs: 300, onsetStreamMs: 5_500 - ONSET_LEAD_MS - 20 }] } }, 1);
    expect(early).toMatchObject({ detected: 0, falseBargeIns: [{ atS: 5.28 }] });
    // A journal without stamped onsets falls back to the caller's clock.
    expect(judgeRun({ ...lagging, engine: { turns: [], bargeIns: [{ clearLatencyMs: 300 }] } }, 1).attribution).toBe('caller');
  });
});

describe('a corpus run over a loudly echoing line (fake voice)', () => {
  let rig: Rig;
  let target: Target;
  beforeAll(async () => {
    rig = await startRig({ agent: localAgent, stt: Array<string>(8).fill('what are your hours') });
    target = engineTarget(rig.engine);
  }, 60_000);
  afterAll(async () => {
    await rig?.close();
  });

  const LOUD: LineProfile = { ...PHONE_LINE, echo: { attenuationDb: -20, delayMs: [40, 120] } };
  const OVER_THE_ANSWER: Scenario = {
    name: 'over-the-answer',
    to: QUICK_VET,
    steps: [
      { wait: 'quiet' },
      { say: 'what are your hours' },
      { wait: { state: 'reply.speaking' } },
      { wait: 300 },
      { say: 'sorry what time do you open' },
      { expect: { bargeIn: true } },
      { wait: 'quiet' },
      { hangup: true },
    ],
  };

  it('hears no echo as the caller, and catches every barge-in', async () => {
    const printed: string[] = [];
    const report = await runCorpus(target, { scenarios: [OVER_THE_ANSWER], line: LOUD, seeds: 2, parallel: 2, print: (l) => printed.push(l) });
    const why = `\n${printed.join('\n')}\n${JSON.stringify(report.runs, null, 1)}`;
    expect(report.runs.map((r) => r.echo?.attenuationDb), why).toEqual([-20, -20]);
    expect(report.runs.map((r) => r.attribution), why).toEqual(['stream', 'stream']); // the engine stamps its onsets
    expect(report.falseSpeechStarts, why).toBe(0); // the greeting's and the answers' echo opened no segment
    expect(report.falseBargeIns, why).toBe(0);
    expect(report.bargeIn, why).toMatchObject({ attempts: 2, detected: 2, rate: 1 });
    expect(report.bargeIn.engineClearLatencyMs.max, why).toBeLessThan(400);
    expect(report.pass).toBe(true);
    expect(printed).toHaveLength(2);
  }, 60_000);
});
