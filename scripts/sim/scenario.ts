/** The scripted caller's format: scenarios/*.json (documented at the top of scripts/simulate.ts). */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SCENARIO_DIR = resolve(fileURLToPath(new URL('../..', import.meta.url)), 'scenarios');

export interface Expectation {
  state?: string;
  audio?: boolean;
  withinMs?: number;
  heard?: string;
  heardMs?: number;
  maxSilenceMs?: number;
  outcome?: string;
  bargeIn?: boolean;
  timeoutMs?: number;
}

export type Step =
  | { wait: 'quiet' | 'audio' | number | { state: string }; quietMs?: number; timeoutMs?: number }
  | { say: string; async?: boolean }
  | { dtmf: string }
  | { hangup: true }
  | { expect: Expectation };

export interface Scenario {
  name?: string;
  description?: string;
  to: string;
  from?: string;
  steps: Step[];
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validates a parsed scenario, naming the first bad step. */
export function parseScenario(raw: unknown, source: string): Scenario {
  const bad = (what: string): never => {
    throw new Error(`${source}: ${what}`);
  };
  if (!isObj(raw)) bad('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (typeof o.to !== 'string' || !/^\+[1-9]\d{6,14}$/.test(o.to)) bad('"to" must be an E.164 number');
  if (o.from !== undefined && (typeof o.from !== 'string' || !/^\+[1-9]\d{6,14}$/.test(o.from))) bad('"from" must be an E.164 number');
  if (!Array.isArray(o.steps) || o.steps.length === 0) bad('"steps" must be a non-empty array');
  const num = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isFinite(v) && v >= 0);
  (o.steps as unknown[]).forEach((s, i) => {
    const at = `step ${i + 1}`;
    if (!isObj(s)) return bad(`${at}: not an object`);
    if ('wait' in s) {
      const w = s.wait;
      const ok = w === 'quiet' || w === 'audio' || (typeof w === 'number' && w >= 0) || (isObj(w) && typeof w.state === 'string');
      if (!ok || !num(s.quietMs) || !num(s.timeoutMs)) bad(`${at}: "wait" is "quiet", "audio", a number of ms or {"state": …}`);
    } else if ('say' in s) {
      if (typeof s.say !== 'string' || s.say.trim() === '') bad(`${at}: "say" needs text`);
    } else if ('dtmf' in s) {
      if (typeof s.dtmf !== 'string' || !/^[0-9*#]{1,8}$/.test(s.dtmf)) bad(`${at}: "dtmf" is 1-8 of 0-9 * #`);
    } else if ('hangup' in s) {
      if (s.hangup !== true) bad(`${at}: "hangup" must be true`);
    } else if ('expect' in s) {
      const e = s.expect;
      if (!isObj(e)) return bad(`${at}: "expect" must be an object`);
      const known = ['state', 'audio', 'withinMs', 'heard', 'heardMs', 'maxSilenceMs', 'outcome', 'bargeIn', 'timeoutMs'];
      const unknown = Object.keys(e).filter((k) => !known.includes(k));
      if (unknown.length) bad(`${at}: unknown expectation ${unknown.join(', ')} (known: ${known.join(', ')})`);
      if (Object.keys(e).every((k) => k === 'withinMs' || k === 'timeoutMs')) bad(`${at}: "expect" names nothing to check`);
      for (const k of ['state', 'heard', 'outcome'] as const) if (e[k] !== undefined && typeof e[k] !== 'string') bad(`${at}: "${k}" must be a string`);
      for (const k of ['withinMs', 'heardMs', 'maxSilenceMs', 'timeoutMs'] as const) if (!num(e[k])) bad(`${at}: "${k}" must be a number ≥ 0`);
      if (e.audio !== undefined && e.audio !== true) bad(`${at}: "audio" can only be true`);
      if (e.bargeIn !== undefined && e.bargeIn !== true) bad(`${at}: "bargeIn" can only be true`);
    } else bad(`${at}: expected one of wait, say, dtmf, hangup, expect`);
  });
  return o as unknown as Scenario;
}

/** A name in scenarios/ ("hours") or a path to a JSON file. */
export async function loadScenario(nameOrFile: string): Promise<Scenario> {
  const path = /[/\\]|\.json$/.test(nameOrFile) ? resolve(nameOrFile) : resolve(SCENARIO_DIR, `${nameOrFile}.json`);
  const text = await readFile(path, 'utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const s = parseScenario(raw, path);
  return { ...s, name: s.name ?? nameOrFile.replace(/^.*[/\\]/, '').replace(/\.json$/, '') };
}
