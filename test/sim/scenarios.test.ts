/**
 * `npm run simulate`'s own parts: every scripted caller in scenarios/*.json is a valid scenario, and
 * the runner (scripts/simulate.ts) plays the steps over the real Twilio protocol and judges each
 * expectation, passing what holds and failing what does not.
 *
 * What the shipped scenarios check of the engine on its embedded providers (the hours answer, the
 * emergency line, the front-desk transfer, with their latency and dead-air bounds) is asserted once,
 * on the same calls, in test/e2e/local-call.test.ts. Here the runner calls an engine on the fake
 * voice (short deterministic audio) with a scripted recognizer, which is all it needs.
 */
import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localAgent } from '../../src/providers/agent/local.js';
import { engineTarget, loadScenario, parseScenario, runScenario, SCENARIO_DIR, type Scenario, type Target } from '../../scripts/simulate.js';
import { QUICK_VET, startRig, type Rig } from '../e2e/conversation-kit.js';

let rig: Rig;
let target: Target;

beforeAll(async () => {
  rig = await startRig({ agent: localAgent, stt: ['what are your hours'] });
  target = engineTarget(rig.engine);
}, 60_000);

afterAll(async () => {
  await rig?.close();
});

/** Every kind of step and expectation, and one expectation that must fail. */
const TOUR: Scenario = {
  name: 'tour',
  to: QUICK_VET,
  steps: [
    { wait: 'quiet' },
    { expect: { state: 'listening.waiting' } },
    { say: 'what are your hours' },
    { expect: { state: 'reply', withinMs: 1_500 } },
    { expect: { audio: true, withinMs: 1_500 } },
    { wait: 'quiet', quietMs: 500 },
    { expect: { heard: 'Monday to Friday, 8 am to 6 pm', heardMs: 300, maxSilenceMs: 2_000 } },
    { expect: { heard: 'Saturday', timeoutMs: 100 } },
    { dtmf: '0' },
    { expect: { state: 'transferring', withinMs: 500 } },
    { wait: 'audio' },
    { wait: { state: 'transferring.handedOff' }, timeoutMs: 8_000 },
    { wait: 100 },
    { hangup: true },
    { expect: { state: 'ended', withinMs: 1_000, outcome: 'transferred' } },
  ],
};

describe('npm run simulate', () => {
  it('every file in scenarios/ is a valid scenario', async () => {
    const files = (await readdir(SCENARIO_DIR)).filter((f) => f.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) {
      const s = await loadScenario(f.replace(/\.json$/, ''));
      expect(s.steps.some((step) => 'expect' in step), f).toBe(true);
    }
    expect(() => parseScenario({ to: '+15550109000', steps: [{ expect: { withinMs: 5 } }] }, 'x.json')).toThrow('x.json: step 1: "expect" names nothing to check');
    expect(() => parseScenario({ to: 'nope', steps: [] }, 'y.json')).toThrow('y.json: "to" must be an E.164 number');
  });

  it('plays every step over the real protocol and judges every expectation', async () => {
    const lines: string[] = [];
    const result = await runScenario(TOUR, target, (line) => lines.push(line));
    const transcript = `\n${lines.join('\n')}`;
    const failed = result.checks.filter((c) => !c.ok).map((c) => c.what);
    expect(failed, transcript).toEqual(['heard “Saturday”']);
    expect(result.passed).toBe(false);
    expect(result.checks.filter((c) => c.skipped)).toEqual([]);
    expect(result.checks.map((c) => c.what), transcript).toEqual([
      'state listening.waiting',
      'state reply within 1500 ms',
      'audio within 1500 ms',
      'at least 300 ms of audio heard',
      'no silence over 2000 ms',
      'heard “Monday to Friday, 8 am to 6 pm”',
      'heard “Saturday”',
      'state transferring within 500 ms',
      'state ended within 1000 ms',
      'outcome transferred',
    ]);
    expect(result.replies).toHaveLength(1);
    expect(result.replies[0]?.ms).toBeLessThan(1_500);
    expect(result.agentLines.some((l) => l.includes('Monday to Friday'))).toBe(true);
    expect(result.engine?.turns).toHaveLength(1);
    expect(lines.at(-1)).toMatch(/^FAIL tour: 9 passed, 1 failed, 0 skipped$/);
  }, 40_000);
});
