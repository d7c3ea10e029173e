/**
 * `npm run simulate -- --corpus`: every scenario in scenarios/ over an echoing phone line
 * (test/support/fake-line.ts), once per seed (each seed another echo path: −30…−20 dB after
 * 40–120 ms, other jitter), and the echo guard's two figures (docs/testing.md "A line like a phone
 * line"):
 *
 * - **false barge-ins**: barge-ins (a `clear` sent because the VAD heard speech over a reply) whose
 *   speech onset lies outside every caller line (from `ONSET_LEAD_MS` before its first frame to its
 *   last) and outside the second after a key. Target 0.
 * - **barge-in detection**: of the caller lines begun while a reply was playing at the caller
 *   (state `reply.speaking`, engine audio in the last 60 ms) and long enough to count (≥ `MIN_LINE_MS`,
 *   twice the 300 ms barge-in threshold), the share the engine took for a barge-in (one with its
 *   onset in the line). Target ≥ 95 %.
 *
 * Both are judged in stream time: the engine stamps each barge-in with its VAD onset on the stream's
 * clock (`media.timestamp`) and the caller knows where each of its lines lies on that clock, so an
 * engine or a caller running late on a loaded machine does not move them. A remote engine does not
 * report its barge-ins; then each `clear` is attributed by when it reached the caller (a clear more
 * than `TAIL_MS` after every caller line is false), which a lagging engine inflates.
 *
 * Also counted, not judged: speech segments opened while the caller was silent (`listening.hearing`
 * or `reply.interrupted` entered outside every caller line, on the caller's clock), and the
 * scenarios' own expectations.
 */
import { withSeed, type LineProfile } from '../../test/support/fake-line.js';
import { runScenario, type ScenarioResult } from './caller.js';
import type { Scenario } from './scenario.js';
import type { Target } from './target.js';

/** On the caller's clock, a clear this long after a caller line ended is still theirs (VAD close 200 ms, transcript, judging). */
export const TAIL_MS = 800;
/** A key preempts playback (menu, emergency key) with a clear within this. */
const KEY_TAIL_MS = 1_000;
/** Shorter lines over a reply are not barge-in attempts (they may be too short to be one). */
export const MIN_LINE_MS = 600;
export const TARGETS = { falseBargeIns: 0, detectionRate: 0.95 } as const;

export interface RunFigures {
  scenario: string;
  seed: number;
  echo: { attenuationDb: number; delayMs: number } | null;
  passed: boolean;
  /** Why the call could not be played to the end (its figures are then missing). */
  error?: string;
  failedChecks: string[];
  engineSpeechS: number;
  /** How barge-ins were attributed: by the engine's VAD onsets in stream time, or by when clears reached the caller. */
  attribution: 'stream' | 'caller';
  attempts: number;
  detected: number;
  /** ms from the start of each detected attempt to its clear (stream attribution: the onset's offset into the line plus the engine's onset → clear). */
  clearAfterMs: number[];
  /** The engine's own account of each barge-in: speech onset (as its VAD placed it) → clear. */
  engineClearLatencyMs: number[];
  misses: { text: string; atS: number }[];
  falseBargeIns: { atS: number }[];
  falseSpeechStarts: { atS: number; state: string }[];
}

/**
 * A barge-in whose VAD onset lies this long before a caller line began is still the caller's: the
 * echo began the loud run and the caller's words completed it (the energy VAD opens a segment at
 * the start of its run, docs/design/conversation.md §2).
 */
export const ONSET_LEAD_MS = 200;

/**
 * Who caused each of the engine's barge-ins, in stream time (the engine stamps each with its VAD
 * onset on the stream's clock; the caller knows where its lines and keys lie on the same clock):
 * exact however late the engine or the caller's timers ran. Null when the engine's barge-ins are
 * not stamped (a remote engine, an older journal): then the caller's clock is all there is.
 */
function byStreamTime(r: ScenarioResult): Pick<RunFigures, 'attempts' | 'detected' | 'clearAfterMs' | 'misses' | 'falseBargeIns'> | null {
  const bargeIns = r.engine?.bargeIns;
  if (!bargeIns || bargeIns.some((b) => b.onsetStreamMs === undefined)) return null;
  const onsets = bargeIns.map((b) => ({ onset: b.onsetStreamMs!, latency: b.clearLatencyMs }));
  const lines = r.caller.lines.flatMap((l) => (l.stream ? [{ line: l, from: l.stream.fromMs, to: l.stream.toMs }] : []));
  const causedBy = (onset: number, from: number, to: number) => onset >= from - ONSET_LEAD_MS && onset <= to;
  const callers = [
    ...lines.map((l) => [l.from, l.line.toMs === null ? Infinity : l.to] as const),
    ...r.caller.keysStreamMs.map((k) => [k, k + KEY_TAIL_MS] as const),
  ];
  const attempts = lines.filter(
    ({ line: l }) => l.stateAtStart === 'reply.speaking' && l.engineAudible && l.toMs !== null && l.stream!.toMs - l.stream!.fromMs >= MIN_LINE_MS,
  );
  const clearAfterMs: number[] = [];
  const misses: RunFigures['misses'] = [];
  for (const a of attempts) {
    const hit = onsets.find((o) => causedBy(o.onset, a.from, a.to));
    if (hit === undefined) misses.push({ text: a.line.text, atS: round(a.line.fromMs / 1000) });
    else clearAfterMs.push(Math.round(Math.max(0, hit.onset - a.from) + hit.latency));
  }
  return {
    attempts: attempts.length,
    detected: clearAfterMs.length,
    clearAfterMs,
    misses,
    falseBargeIns: onsets.filter((o) => !callers.some(([a, b]) => causedBy(o.onset, a, b))).map((o) => ({ atS: round(o.onset / 1000) })),
  };
}

/** The figures of one call, from what the caller did and what the engine recorded. */
export function judgeRun(r: ScenarioResult, seed: number): RunFigures {
  const endMs = r.durationMs;
  const windows = [
    ...r.caller.lines.map((l) => [l.fromMs, (l.toMs ?? endMs) + TAIL_MS] as const),
    ...r.caller.keysMs.map((k) => [k, k + KEY_TAIL_MS] as const),
  ];
  const callerBusy = (t: number) => windows.some(([a, b]) => t >= a && t <= b);
  const opened = (s: string) => s === 'listening.hearing' || s.startsWith('reply.interrupted');
  const stream = byStreamTime(r);
  const falseSpeechStarts = r.states
    .filter((s, i) => opened(s.state) && !opened(r.states[i - 1]?.state ?? '') && !callerBusy(s.atS * 1000))
    .map((s) => ({ atS: s.atS, state: s.state }));
  return {
    scenario: r.name,
    seed,
    echo: r.line?.echo ? { attenuationDb: round(r.line.echo.attenuationDb), delayMs: Math.round(r.line.echo.delayMs) } : null,
    passed: r.passed,
    failedChecks: r.checks.filter((c) => !c.ok).map((c) => `${c.what}: ${c.detail}`),
    engineSpeechS: round(r.audio.reduce((s, a) => s + (a.toS - a.fromS), 0)),
    attribution: stream ? 'stream' : 'caller',
    ...(stream ?? byCallerClock(r, callerBusy)),
    engineClearLatencyMs: (r.engine?.bargeIns ?? []).map((b) => Math.round(b.clearLatencyMs)),
    falseSpeechStarts,
  };
}

/** The fallback: each `clear` attributed by when it reached the caller (an engine running late looks like false barge-ins). */
function byCallerClock(r: ScenarioResult, callerBusy: (t: number) => boolean): Pick<RunFigures, 'attempts' | 'detected' | 'clearAfterMs' | 'misses' | 'falseBargeIns'> {
  const attempts = r.caller.lines.filter(
    (l) => l.stateAtStart === 'reply.speaking' && l.engineAudible && l.toMs !== null && l.toMs - l.fromMs >= MIN_LINE_MS,
  );
  const clearAfterMs: number[] = [];
  const misses: RunFigures['misses'] = [];
  for (const l of attempts) {
    const clear = r.clearsMs.find((t) => t >= l.fromMs && t <= l.toMs!);
    if (clear === undefined) misses.push({ text: l.text, atS: round(l.fromMs / 1000) });
    else clearAfterMs.push(Math.round(clear - l.fromMs));
  }
  return { attempts: attempts.length, detected: clearAfterMs.length, clearAfterMs, misses, falseBargeIns: r.clearsMs.filter((t) => !callerBusy(t)).map((t) => ({ atS: round(t / 1000) })) };
}

const round = (x: number) => Math.round(x * 100) / 100;

/** A call that could not be played to the end: no figures, and the corpus cannot pass. */
function failedRun(scenario: string, seed: number, err: unknown): RunFigures {
  const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  return {
    scenario, seed, echo: null, passed: false, error: message, failedChecks: [message], engineSpeechS: 0, attribution: 'caller', attempts: 0, detected: 0,
    clearAfterMs: [], engineClearLatencyMs: [], misses: [], falseBargeIns: [], falseSpeechStarts: [],
  };
}

export interface CorpusReport {
  line: LineProfile;
  seeds: number[];
  scenarios: string[];
  calls: number;
  /** How the calls' barge-ins were attributed (`mixed`: some calls each way). */
  attribution: 'stream' | 'caller' | 'mixed';
  engineSpeechS: number;
  falseBargeIns: number;
  /** False barge-ins per minute of engine speech heard over the echo. */
  falseBargeInsPerMin: number;
  bargeIn: {
    attempts: number;
    detected: number;
    rate: number | null;
    clearAfterMs: { p50: number | null; max: number | null };
    engineClearLatencyMs: { p50: number | null; max: number | null };
  };
  falseSpeechStarts: number;
  scenarioFailures: number;
  /** Calls that could not be played to the end: any makes the corpus fail (its figures are incomplete). */
  errors: number;
  targets: typeof TARGETS;
  pass: boolean;
  runs: RunFigures[];
}

export function summarize(line: LineProfile, seeds: number[], scenarios: string[], runs: RunFigures[]): CorpusReport {
  const sum = (f: (r: RunFigures) => number) => runs.reduce((n, r) => n + f(r), 0);
  const attempts = sum((r) => r.attempts);
  const detected = sum((r) => r.detected);
  const speechS = round(sum((r) => r.engineSpeechS));
  const falseBargeIns = sum((r) => r.falseBargeIns.length);
  const rate = attempts > 0 ? round(detected / attempts) : null;
  const spread = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: s[Math.floor((s.length - 1) / 2)] ?? null, max: s.at(-1) ?? null };
  };
  return {
    line,
    seeds,
    scenarios,
    calls: runs.length,
    attribution: runs.every((r) => r.attribution === 'stream') ? 'stream' : runs.every((r) => r.attribution === 'caller') ? 'caller' : 'mixed',
    engineSpeechS: speechS,
    falseBargeIns,
    falseBargeInsPerMin: speechS > 0 ? round(falseBargeIns / (speechS / 60)) : 0,
    bargeIn: {
      attempts, detected, rate,
      clearAfterMs: spread(runs.flatMap((r) => r.clearAfterMs)),
      engineClearLatencyMs: spread(runs.flatMap((r) => r.engineClearLatencyMs)),
    },
    falseSpeechStarts: sum((r) => r.falseSpeechStarts.length),
    scenarioFailures: runs.filter((r) => !r.passed).length,
    errors: runs.filter((r) => r.error !== undefined).length,
    targets: TARGETS,
    pass: runs.every((r) => r.error === undefined) && falseBargeIns <= TARGETS.falseBargeIns && rate !== null && rate >= TARGETS.detectionRate,
    runs,
  };
}

/**
 * Runs every scenario once per seed over `line` (seeded 1…seeds), `parallel` calls at a time on
 * `target`, and returns the figures.
 */
export async function runCorpus(
  target: Target,
  o: { scenarios: Scenario[]; line: LineProfile; seeds: number; parallel: number; print: (line: string) => void },
): Promise<CorpusReport> {
  const seeds = Array.from({ length: o.seeds }, (_, i) => i + 1);
  const jobs = o.scenarios.flatMap((scenario) => seeds.map((seed) => ({ scenario, seed })));
  const runs: RunFigures[] = new Array<RunFigures>(jobs.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < jobs.length; i = next++) {
      const { scenario, seed } = jobs[i]!;
      let figures: RunFigures;
      try {
        figures = judgeRun(await runScenario(scenario, target, () => undefined, { line: withSeed(o.line, seed) }), seed);
      } catch (err) {
        figures = failedRun(scenario.name ?? '?', seed, err);
      }
      runs[i] = figures;
      const echo = figures.echo ? `echo ${figures.echo.attenuationDb} dB / ${figures.echo.delayMs} ms` : 'no echo';
      o.print(
        `${figures.passed ? 'pass' : 'FAIL'} ${scenario.name ?? '?'} seed ${seed} (${echo}): barge-ins ${figures.detected}/${figures.attempts}, ` +
          `false barge-ins ${figures.falseBargeIns.length}, false speech starts ${figures.falseSpeechStarts.length}` +
          (figures.failedChecks.length ? `; failed: ${figures.failedChecks.join('; ')}` : ''),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.parallel) }, worker));
  return summarize(o.line, seeds, o.scenarios.map((s) => s.name ?? '?'), runs);
}
