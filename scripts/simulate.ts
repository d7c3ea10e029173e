/**
 * `npm run simulate -- --scenario <name|file> [--url http://127.0.0.1:3000 --base-url https://… --token …]`
 * `npm run simulate -- --interactive [--to +1555…]`
 *
 * Plays one scripted caller over the real Twilio protocol (test/support/fake-twilio.ts, real time)
 * and prints the conversation and its timings. Without --url it starts an engine in this process
 * on the embedded providers (energy VAD, offline recognizer, rule-based receptionist, flite), the
 * short fixture clinics and a recording stand-in for Twilio REST, as test/e2e/local-call.test.ts
 * does. With --url it calls a running server, signing with --base-url (its PUBLIC_BASE_URL) and
 * --token (its TWILIO_AUTH_TOKEN); states then come from GET /twilio/sessions (with the server's
 * INSPECTOR_TOKEN, if it has one, taken from this process's environment), and expectations that
 * need the engine's memory (`heard`, `outcome`) are reported as skipped.
 *
 * A scenario (scenarios/*.json) is `{ "to": "+1555…", "steps": [...] }`; steps run in order:
 *   {"wait": "quiet"}            engine audio since the last step, then `quietMs` (800) of silence
 *   {"wait": "audio"}            the first engine audio after the last caller action
 *   {"wait": 500}                milliseconds
 *   {"wait": {"state": "listening.waiting"}}
 *   {"say": "what are your hours"}   synthesized with the local voice, silence trimmed; returns
 *                                    when its last frame is sent (`"async": true`: at once)
 *   {"dtmf": "0"}                one key (or several, 100 ms apart)
 *   {"hangup": true}             `stop` and close, as Twilio does when the caller hangs up
 *   {"expect": {...}}            all given fields must hold:
 *     "state": "emergency"       visited (or current), prefix match on the dotted path
 *     "audio": true              engine audio reached the caller
 *     "withinMs": 1500           …for `state` / `audio`: within this of the last caller action's
 *                                end (the end of the last speech frame, the key, the hang-up)
 *     "heard": "Monday"          an agent line committed since that action contains this (in-process)
 *     "heardMs": 1500            at least this much engine audio played since that action
 *     "maxSilenceMs": 2000       no gap longer than this from that action to the end of the last audio
 *     "outcome": "transferred"   the call's recorded outcome once ended (in-process)
 *     "timeoutMs": 10000         how long to wait for untimed conditions
 * Waits time out too (`timeoutMs`, default 15000) and count as failures. Exit code 1 if anything
 * failed (2: usage or start-up error).
 */
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { loadTenants } from '../src/config/tenants.js';
import { localAgent } from '../src/providers/agent/local.js';
import { createLocalStt } from '../src/providers/stt/local.js';
import { createLocalTts } from '../src/providers/tts/local.js';
import { PromptCache } from '../src/providers/tts/prompt-cache.js';
import { energyVad } from '../src/providers/vad/energy.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../test/support/engine.js';
import { callerSpeech } from '../test/support/caller-speech.js';
import { FakeTwilio } from '../test/support/fake-twilio.js';
import { restRecorder } from '../test/support/rest-recorder.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SCENARIO_DIR = resolve(ROOT, 'scenarios');
const FIXTURE_TENANTS = resolve(ROOT, 'test/fixtures/tenants');

// ---- scenario format ------------------------------------------------------------------------

export interface Expectation {
  state?: string;
  audio?: boolean;
  withinMs?: number;
  heard?: string;
  heardMs?: number;
  maxSilenceMs?: number;
  outcome?: string;
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
      const known = ['state', 'audio', 'withinMs', 'heard', 'heardMs', 'maxSilenceMs', 'outcome', 'timeoutMs'];
      const unknown = Object.keys(e).filter((k) => !known.includes(k));
      if (unknown.length) bad(`${at}: unknown expectation ${unknown.join(', ')} (known: ${known.join(', ')})`);
      if (Object.keys(e).every((k) => k === 'withinMs' || k === 'timeoutMs')) bad(`${at}: "expect" names nothing to check`);
      for (const k of ['state', 'heard', 'outcome'] as const) if (e[k] !== undefined && typeof e[k] !== 'string') bad(`${at}: "${k}" must be a string`);
      for (const k of ['withinMs', 'heardMs', 'maxSilenceMs', 'timeoutMs'] as const) if (!num(e[k])) bad(`${at}: "${k}" must be a number ≥ 0`);
      if (e.audio !== undefined && e.audio !== true) bad(`${at}: "audio" can only be true`);
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

// ---- where the call goes --------------------------------------------------------------------

export interface Target {
  url: string;
  baseUrl: string;
  token: string;
  accountSid: string;
  inProcess: boolean;
  /** Dotted state path, 'ended' once the call is gone; null if unknown. */
  state(callSid: string): Promise<string | null>;
  /** Agent lines committed so far (what the caller heard), in-process only. */
  agentLines?(callSid: string): string[];
  outcome?(callSid: string): string | null;
  engineTimings?(callSid: string): { turns: Record<string, number | null>[]; bargeIns: { clearLatencyMs: number }[] } | null;
  close(): Promise<void>;
}

/** An engine in this process on the embedded providers and the fixture clinics. */
export async function startLocalEngine(): Promise<Target> {
  const tts = createLocalTts();
  const prompts = new PromptCache(tts);
  await prompts.warm((await loadTenants(FIXTURE_TENANTS)).all());
  const stt = await createLocalStt({ onWarning: () => undefined });
  const engine = await startEngine({
    providers: { vad: energyVad, stt, tts, agent: localAgent },
    prompts,
    rest: restRecorder().rest,
    env: { TENANTS_DIR: FIXTURE_TENANTS, LOG_LEVEL: 'info' },
  });
  return engineTarget(engine);
}

/** A target for an engine started in this process (test/support/engine.ts); `close` closes it. */
export function engineTarget(engine: TestEngine): Target {
  const record = (sid: string) => engine.registry.session(sid)?.record ?? engine.registry.recentCalls().find((r) => r.callSid === sid) ?? null;
  return {
    url: engine.url,
    baseUrl: TEST_BASE_URL,
    token: TEST_TOKEN,
    accountSid: TEST_ACCOUNT,
    inProcess: true,
    state: (sid) => Promise.resolve(engine.registry.session(sid)?.statePath ?? 'ended'),
    agentLines: (sid) => (engine.registry.session(sid)?.history ?? []).filter((h) => h.role === 'agent').map((h) => h.text),
    outcome: (sid) => record(sid)?.outcome ?? null,
    engineTimings: (sid) => {
      const r = record(sid);
      return r ? { turns: r.turns.map((t) => ({ ...t })), bargeIns: [...r.bargeIns] } : null;
    },
    close: () => engine.close(),
  };
}

/** A running server: states from GET /twilio/sessions. */
export function remoteTarget(o: { url: string; baseUrl: string; token: string; accountSid: string }): Target {
  const url = o.url.replace(/\/$/, '');
  return {
    ...o,
    url,
    inProcess: false,
    state: async (sid) => {
      try {
        // A server with INSPECTOR_TOKEN lists calls only to its bearer (docs/operations.md).
        const inspector = process.env.INSPECTOR_TOKEN;
        const headers: Record<string, string> = inspector ? { authorization: `Bearer ${inspector}` } : {};
        const res = await fetch(`${url}/twilio/sessions`, { headers, signal: AbortSignal.timeout(1000) });
        if (!res.ok) return null;
        const body = (await res.json()) as { calls?: { callSid: string; state: string }[] };
        return body.calls?.find((c) => c.callSid === sid)?.state ?? 'ended';
      } catch {
        return null;
      }
    },
    close: () => Promise.resolve(),
  };
}

// ---- the caller -----------------------------------------------------------------------------

export interface Check {
  step: number;
  what: string;
  ok: boolean;
  skipped?: boolean;
  detail: string;
}

export interface ScenarioResult {
  name: string;
  callSid: string;
  passed: boolean;
  checks: Check[];
  /** Caller line → first engine audio after it (ms). */
  replies: { said: string; ms: number | null }[];
  /** Engine audio stretches at the caller (s since dial). */
  audio: { fromS: number; toS: number }[];
  states: { atS: number; state: string }[];
  agentLines: string[];
  engine: ReturnType<NonNullable<Target['engineTimings']>>;
  durationMs: number;
}

const fmtS = (ms: number) => (ms / 1000).toFixed(2).padStart(6);
const matches = (path: string, want: string) => path === want || path.startsWith(`${want}.`);

/**
 * One caller. Observes the call continuously (state path, agent lines, audio stretches) and prints
 * what happens as it happens through `print`.
 */
export class Caller {
  readonly states: { atMs: number; state: string }[] = [];
  readonly checks: Check[] = [];
  readonly replies: { said: string; ms: number | null }[] = [];
  private readonly lines: { atMs: number; text: string }[] = [];
  private anchor = { startMs: 0, endMs: 0, agentLines: 0, what: 'the call start' };
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private printedAudio = 0;
  private spanStart: number | null = null;
  private spanEnd = 0;
  private pendingReply: { said: string; endMs: number } | null = null;
  private hungUp = false;

  private constructor(readonly call: FakeTwilio, private readonly target: Target, private readonly print: (line: string) => void) {}

  static async dial(target: Target, o: { to: string; from?: string; print: (line: string) => void }): Promise<Caller> {
    const call = await FakeTwilio.call({
      serverUrl: target.url, publicBaseUrl: target.baseUrl, authToken: target.token, accountSid: target.accountSid,
      to: o.to, from: o.from ?? '+15557654321', playbackSpeed: 1,
    });
    const c = new Caller(call, target, o.print);
    if (!call.twiml.stream) throw new Error(`the webhook did not connect a stream (HTTP ${call.twiml.status}): ${call.twiml.text.slice(0, 300)}`);
    c.print(`${fmtS(0)}  call    ${call.callSid} → ${o.to}`);
    c.pollTimer = setInterval(() => void c.poll(), target.inProcess ? 5 : 50);
    await c.poll();
    return c;
  }

  private now(): number {
    return this.call.now();
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const state = await this.target.state(this.call.callSid);
      const at = this.now();
      if (state !== null && state !== this.states.at(-1)?.state) {
        this.states.push({ atMs: at, state });
        this.print(`${fmtS(at)}  state   ${state}`);
      }
      const agent = this.target.agentLines?.(this.call.callSid) ?? [];
      for (const text of agent.slice(this.lines.length)) {
        this.lines.push({ atMs: at, text });
        this.print(`${fmtS(at)}  bot     “${text}”`);
      }
      this.trackAudio();
    } finally {
      this.polling = false;
    }
  }

  /** Audio stretches as the caller hears them; the reply latency of the last caller line. */
  private trackAudio(): void {
    const out = this.call.outbound;
    for (; this.printedAudio < out.length; this.printedAudio++) {
      const r = out[this.printedAudio]!;
      if (r.message?.event === 'clear') {
        this.spanEnd = Math.min(this.spanEnd, r.atMs);
        this.print(`${fmtS(r.atMs)}  bot     (clear: playback cut)`);
        continue;
      }
      if (r.message?.event !== 'media') continue;
      const ms = Buffer.from(r.message.media.payload, 'base64').length / 8;
      if (this.pendingReply && r.atMs > this.pendingReply.endMs) {
        const latency = r.atMs - this.pendingReply.endMs;
        this.replies.push({ said: this.pendingReply.said, ms: latency });
        this.print(`${fmtS(r.atMs)}  timing  first reply audio ${Math.round(latency)} ms after the caller stopped`);
        this.pendingReply = null;
      }
      if (this.spanStart === null || r.atMs > this.spanEnd + 100) {
        this.flushSpan();
        this.spanStart = r.atMs;
        this.print(`${fmtS(r.atMs)}  bot     ▶ audio`);
      }
      this.spanEnd = Math.max(this.spanEnd, r.atMs) + ms;
    }
    if (this.spanStart !== null && this.now() > this.spanEnd + 100) this.flushSpan();
  }

  private flushSpan(): void {
    if (this.spanStart === null) return;
    this.print(`${fmtS(this.spanEnd)}  bot     ■ ${((this.spanEnd - this.spanStart) / 1000).toFixed(2)} s of audio`);
    this.spanStart = null;
  }

  private lastAudioEnd(): number {
    return this.spanStart !== null ? this.spanEnd : Math.max(0, this.spanEnd);
  }

  private firstAudioAfter(t: number): number | null {
    return this.call.outbound.find((r) => r.message?.event === 'media' && r.atMs > t)?.atMs ?? null;
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  private async until(pred: () => boolean, deadlineMs: number): Promise<boolean> {
    for (;;) {
      await this.poll();
      if (pred()) return true;
      if (this.now() >= deadlineMs) return false;
      await this.sleep(5);
    }
  }

  async say(text: string, wait = true): Promise<void> {
    const ulaw = await callerSpeech(text);
    const start = this.now();
    this.print(`${fmtS(start)}  caller  “${text}” (${(ulaw.length / 8000).toFixed(2)} s)`);
    const agentLines = this.lines.length;
    const done = this.call.say(ulaw).then((sent) => {
      const end = this.now();
      if (sent) {
        this.print(`${fmtS(end)}  caller  (stopped speaking)`);
        this.anchor = { startMs: start, endMs: end, agentLines, what: `the end of “${text}”` };
        this.trackAudio();
        if (this.spanStart !== null && this.spanStart <= end) {
          this.replies.push({ said: text, ms: null });
          this.print(`${fmtS(end)}  timing  the engine was already talking when the caller stopped`);
        } else this.pendingReply = { said: text, endMs: end };
      }
    });
    if (wait) await done;
    else this.anchor = { startMs: start, endMs: start + ulaw.length / 8, agentLines, what: `the end of “${text}”` };
  }

  dtmf(digits: string): Promise<void> {
    return (async () => {
      for (const [i, d] of [...digits].entries()) {
        if (i > 0) await this.sleep(100);
        const at = this.now();
        this.call.dtmf(d);
        this.print(`${fmtS(at)}  caller  presses ${d}`);
        this.anchor = { startMs: at, endMs: at, agentLines: this.lines.length, what: `key ${d}` };
      }
    })();
  }

  async hangUp(): Promise<void> {
    if (this.hungUp) return;
    this.hungUp = true;
    const at = this.now();
    this.print(`${fmtS(at)}  caller  hangs up`);
    this.anchor = { startMs: at, endMs: at, agentLines: this.lines.length, what: 'the hang-up' };
    await this.call.hangUp();
  }

  async wait(step: Extract<Step, { wait: unknown }>, index: number): Promise<void> {
    const w = step.wait;
    const timeout = step.timeoutMs ?? 15_000;
    const deadline = this.now() + timeout;
    const since = this.anchor.endMs;
    let ok: boolean;
    let what: string;
    if (typeof w === 'number') {
      await this.sleep(w);
      return;
    } else if (w === 'audio') {
      what = 'wait for audio';
      ok = await this.until(() => this.firstAudioAfter(since) !== null, deadline);
    } else if (w === 'quiet') {
      const quietMs = step.quietMs ?? 800;
      what = `wait for ${quietMs} ms of quiet after audio`;
      ok = await this.until(
        () => this.firstAudioAfter(since) !== null && this.now() - Math.max(this.lastAudioEnd(), this.lastArrival()) >= quietMs,
        deadline,
      );
    } else {
      what = `wait for state ${w.state}`;
      ok = await this.until(() => this.visited(w.state, this.anchor.startMs) !== null, deadline);
    }
    if (!ok) this.record({ step: index, what, ok: false, detail: `timed out after ${timeout} ms${this.call.closed ? ' (stream closed)' : ''}` });
  }

  private lastArrival(): number {
    for (let i = this.call.outbound.length - 1; i >= 0; i--) {
      const r = this.call.outbound[i]!;
      if (r.message?.event === 'media') return r.atMs;
    }
    return 0;
  }

  /** First time a state matching `want` was seen at or after `from` (or the current one). */
  private visited(want: string, from: number): number | null {
    for (let i = this.states.length - 1; i >= 0; i--) {
      const s = this.states[i]!;
      if (matches(s.state, want) && (s.atMs >= from || i === this.states.length - 1)) {
        let first = s.atMs;
        for (let j = i - 1; j >= 0 && matches(this.states[j]!.state, want) && this.states[j]!.atMs >= from; j--) first = this.states[j]!.atMs;
        return first;
      }
    }
    return null;
  }

  private record(c: Check): void {
    this.checks.push(c);
    const mark = c.skipped ? '–' : c.ok ? '✓' : '✗';
    this.print(`${fmtS(this.now())}  ${mark} expect  ${c.what}: ${c.detail}`);
  }

  async expect(e: Expectation, index: number): Promise<void> {
    const a = this.anchor;
    const timeout = e.timeoutMs ?? 10_000;
    const timedDeadline = e.withinMs !== undefined ? a.endMs + e.withinMs : this.now() + timeout;
    const rel = (t: number) => `${Math.round(t - a.endMs)} ms after ${a.what}`;

    if (e.state !== undefined) {
      const want = e.state;
      const reached = await this.until(() => this.visited(want, a.startMs) !== null, timedDeadline + 20);
      const at = this.visited(want, a.startMs);
      const what = `state ${want}${e.withinMs !== undefined ? ` within ${e.withinMs} ms` : ''}`;
      if (reached && at !== null && (e.withinMs === undefined || at <= timedDeadline + 20)) this.record({ step: index, what, ok: true, detail: `reached ${rel(at)}` });
      else this.record({ step: index, what, ok: false, detail: `not reached (state ${this.states.at(-1)?.state ?? '?'}; ${rel(this.now())})` });
    }
    if (e.audio) {
      const what = `audio${e.withinMs !== undefined ? ` within ${e.withinMs} ms` : ''}`;
      await this.until(() => this.firstAudioAfter(a.endMs) !== null, timedDeadline);
      const at = this.firstAudioAfter(a.endMs);
      if (at !== null && at <= timedDeadline) this.record({ step: index, what, ok: true, detail: `first audio ${rel(at)}` });
      else this.record({ step: index, what, ok: false, detail: at === null ? `none yet (${rel(this.now())})` : `first audio only ${rel(at)}` });
    }
    if (e.heardMs !== undefined) {
      const min = e.heardMs;
      const what = `at least ${min} ms of audio heard`;
      const heard = () => this.call.audioSince(a.endMs).length / 8;
      await this.until(() => heard() >= min, timedDeadline);
      this.record({ step: index, what, ok: heard() >= min, detail: `${Math.round(heard())} ms since ${a.what}` });
    }
    if (e.maxSilenceMs !== undefined) {
      const max = e.maxSilenceMs;
      const what = `no silence over ${max} ms`;
      const end = this.lastAudioEnd();
      const gaps = end > a.endMs ? this.call.silenceGaps(0, { fromMs: a.endMs, toMs: Math.min(end, this.now()) }) : [];
      const longest = gaps.reduce((m, g) => Math.max(m, g.ms), 0);
      if (end <= a.endMs) this.record({ step: index, what, ok: false, detail: `no audio at all since ${a.what}` });
      else this.record({ step: index, what, ok: longest <= max, detail: `longest gap ${Math.round(longest)} ms (from ${a.what} to the end of the last audio)` });
    }
    if (e.heard !== undefined) {
      const want = e.heard.toLowerCase();
      const what = `heard “${e.heard}”`;
      if (!this.target.agentLines) this.record({ step: index, what, ok: true, skipped: true, detail: 'skipped: agent text is only visible with an in-process engine' });
      else {
        const found = () => this.lines.slice(a.agentLines).some((l) => l.text.toLowerCase().includes(want));
        await this.until(found, this.now() + timeout);
        this.record({ step: index, what, ok: found(), detail: found() ? 'in an agent line' : `not in ${JSON.stringify(this.lines.slice(a.agentLines).map((l) => l.text))}` });
      }
    }
    if (e.outcome !== undefined) {
      const what = `outcome ${e.outcome}`;
      const get = this.target.outcome ? (sid: string) => this.target.outcome?.(sid) ?? null : null;
      if (!get) this.record({ step: index, what, ok: true, skipped: true, detail: 'skipped: outcomes are only visible with an in-process engine' });
      else {
        const sid = this.call.callSid;
        await this.until(() => get(sid) !== null && this.states.at(-1)?.state === 'ended', this.now() + timeout);
        const got = get(sid);
        this.record({ step: index, what, ok: got === e.outcome, detail: `outcome ${got ?? '(call not ended)'}` });
      }
    }
  }

  audioSpans(): { fromS: number; toS: number }[] {
    const spans: { fromS: number; toS: number }[] = [];
    let start: number | null = null;
    let end = 0;
    for (const r of this.call.outbound) {
      if (r.message?.event === 'clear') end = Math.min(end, r.atMs);
      if (r.message?.event !== 'media') continue;
      const ms = Buffer.from(r.message.media.payload, 'base64').length / 8;
      if (start === null || r.atMs > end + 100) {
        if (start !== null) spans.push({ fromS: start / 1000, toS: end / 1000 });
        start = r.atMs;
      }
      end = Math.max(end, r.atMs) + ms;
    }
    if (start !== null) spans.push({ fromS: start / 1000, toS: Math.min(end, this.now()) / 1000 });
    return spans.map((s) => ({ fromS: Math.round(s.fromS * 100) / 100, toS: Math.round(s.toS * 100) / 100 }));
  }

  async dispose(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.flushSpan();
    await this.call.dispose();
  }

  get agentText(): string[] {
    return this.lines.map((l) => l.text);
  }
}

/** Runs one scenario to the end (or to its first failed wait), then hangs up if still connected. */
export async function runScenario(scenario: Scenario, target: Target, print: (line: string) => void = () => undefined): Promise<ScenarioResult> {
  const started = performance.now();
  const name = scenario.name ?? 'scenario';
  print(`scenario ${name}${scenario.description ? `: ${scenario.description}` : ''}`);
  const caller = await Caller.dial(target, { to: scenario.to, ...(scenario.from ? { from: scenario.from } : {}), print });
  try {
    for (const [i, step] of scenario.steps.entries()) {
      const n = i + 1;
      if ('wait' in step) await caller.wait(step, n);
      else if ('say' in step) await caller.say(step.say, step.async !== true);
      else if ('dtmf' in step) await caller.dtmf(step.dtmf);
      else if ('hangup' in step) await caller.hangUp();
      else await caller.expect(step.expect, n);
    }
    if (!caller.call.closed) await caller.hangUp();
    await new Promise((r) => setTimeout(r, 200)); // let the engine record the end
  } finally {
    await caller.dispose();
  }
  const engine = target.engineTimings?.(caller.call.callSid) ?? null;
  if (engine) {
    for (const t of engine.turns) {
      print(`        engine  turn ${String(t.generation)}: end of speech → audio ${String(t.endOfSpeechToAudioMs)} ms (endpoint ${String(t.endpointMs)}, stt ${String(t.sttMs)}, agent ${String(t.agentFirstTextMs)}, tts ${String(t.ttsFirstAudioMs)}, commit → audio ${String(t.firstAudioMs)})`);
    }
    for (const b of engine.bargeIns) print(`        engine  barge-in: speech onset → clear ${b.clearLatencyMs} ms`);
  }
  const failed = caller.checks.filter((c) => !c.ok);
  print(`${failed.length === 0 ? 'PASS' : 'FAIL'} ${name}: ${caller.checks.filter((c) => c.ok && !c.skipped).length} passed, ${failed.length} failed, ${caller.checks.filter((c) => c.skipped).length} skipped`);
  return {
    name,
    callSid: caller.call.callSid,
    passed: failed.length === 0,
    checks: caller.checks,
    replies: caller.replies,
    audio: caller.audioSpans(),
    states: caller.states.map((s) => ({ atS: Math.round(s.atMs) / 1000, state: s.state })),
    agentLines: caller.agentText,
    engine,
    durationMs: Math.round(performance.now() - started),
  };
}

/** Caller lines from stdin: text is spoken, digits/`*`/`#` are keys, `/hangup` (or EOF) ends. */
async function interactive(target: Target, to: string, print: (line: string) => void): Promise<void> {
  const caller = await Caller.dial(target, { to, print });
  print('type a line to say it; digits, * or # to press keys; /hangup or Ctrl-D to end');
  const rl = createInterface({ input: process.stdin });
  let eof = true;
  try {
    for await (const raw of rl) {
      const line = raw.trim();
      if (caller.call.closed) break;
      if (line === '') continue;
      if (line === '/hangup' || line === '/quit') {
        eof = false;
        break;
      }
      if (/^[0-9*#]+$/.test(line)) await caller.dtmf(line);
      else await caller.say(line.toLowerCase(), false);
    }
    // Piped input ends at once: let the last line be said and answered before hanging up.
    if (eof && !caller.call.closed) await caller.wait({ wait: 'quiet', quietMs: 1500, timeoutMs: 20_000 }, 0);
  } finally {
    rl.close();
    await caller.hangUp().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    await caller.dispose();
  }
}

// ---- CLI -----------------------------------------------------------------------------------

const USAGE = `usage: npm run simulate -- --scenario <name|file.json> [--json]
                                [--url http://127.0.0.1:3000 --base-url https://<PUBLIC_BASE_URL> --token <TWILIO_AUTH_TOKEN> [--account AC…]]
       npm run simulate -- --interactive [--to +15550109000] [--url …]
scenarios: scenarios/*.json (hours, emergency, press-zero)`;

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const opt: Record<string, string | true> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}\n${USAGE}`);
    const key = a.slice(2);
    if (['json', 'interactive', 'help'].includes(key)) opt[key] = true;
    else if (['scenario', 'url', 'base-url', 'token', 'account', 'to'].includes(key)) {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      opt[key] = v;
    } else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  const str = (k: string) => (typeof opt[k] === 'string' ? opt[k] : undefined);
  if (opt.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!opt.interactive && !str('scenario')) throw new Error(USAGE);
  const scenario = str('scenario') ? await loadScenario(str('scenario')!) : null;
  const json = opt.json === true;
  const print = json ? (line: string) => process.stderr.write(`${line}\n`) : (line: string) => process.stdout.write(`${line}\n`);

  let target: Target;
  const url = str('url');
  if (url) {
    target = remoteTarget({
      url,
      baseUrl: str('base-url') ?? url,
      token: str('token') ?? 'unset',
      accountSid: str('account') ?? `AC${'0'.repeat(32)}`,
    });
  } else {
    process.stderr.write('starting an in-process engine (local providers, test/fixtures/tenants)…\n');
    target = await startLocalEngine();
  }
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
    void target.close().finally(() => process.exit(130));
  });
  try {
    if (opt.interactive) {
      await interactive(target, str('to') ?? scenario?.to ?? '+15550109000', print);
      return 0;
    }
    const result = await runScenario(scenario!, target, print);
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return result.passed || stop ? 0 : 1;
  } finally {
    await target.close();
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`simulate: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}
