/**
 * The scripted callers in scenarios/*.json, played in real time against an engine in this process
 * on the embedded providers (energy VAD, offline recognizer, rule-based receptionist, flite) and the
 * short fixture clinics, exactly as `npm run simulate -- --scenario <name>` plays them. A failure
 * shows the whole printed conversation with its timings.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadScenario, runScenario, startLocalEngine, type Target } from '../../scripts/simulate.js';

let target: Target;

beforeAll(async () => {
  target = await startLocalEngine();
}, 60_000);

afterAll(async () => {
  await target?.close();
});

describe('scripted callers (scenarios/*.json) against the embedded providers', () => {
  for (const name of ['hours', 'emergency', 'press-zero']) {
    it(name, async () => {
      const lines: string[] = [];
      const result = await runScenario(await loadScenario(name), target, (line) => lines.push(line));
      const transcript = `\n${lines.join('\n')}`;
      expect(result.checks.filter((c) => !c.ok).map((c) => `${c.what}: ${c.detail}`), transcript).toEqual([]);
      // In-process, every expectation can be evaluated: none may be skipped.
      expect(result.checks.filter((c) => c.skipped).map((c) => c.what)).toEqual([]);
      expect(result.checks.length).toBeGreaterThan(3);
    }, 40_000);
  }
});
