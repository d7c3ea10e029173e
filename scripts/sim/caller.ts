/** The scripted caller: plays a scenario over the real Twilio protocol and judges its expectations. */
import { performance } from 'node:perf_hooks';
import { callerSpeech } from '../../test/support/caller-speech.js';
import type { LineProfile } from '../../test/support/fake-line.js';
import { FakeTwilio, nextCallerNumber } from '../../test/support/fake-twilio.js';
import type { Expectation, Scenario, Step } from './scenario.js';
import type { Target } from './target.js';

export interface Check {
  step: number;
  what: string;
  ok: boolean;
  skipped?: boolean;
  detail: string;
}

/** One caller line: when it was said (ms since dial) and what the engine was doing as it began. */
export interface CallerLine {
  text: string;
  fromMs: number;
  /** When its last frame was sent (null: the call ended first). */
  toMs: number | null;
  /**
   * Where its audio lies in stream time (Twilio's `media.timestamp`), exact however late either
   * side runs: the engine's VAD onsets are stamped on the same clock (null: the stream's audio had
   * not started).
   */
  stream: { fromMs: number; toMs: number } | null;
  /** The call's state as the caller began (the last one polled). */
  stateAtStart: string;
  /** Engine audio was playing at the caller as they began (within the last 60 ms). */
  engineAudible: boolean;
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
  /** What the caller did, and every `clear` the engine sent (ms since dial): for the corpus figures. */
  caller: { lines: CallerLine[]; keysMs: number[]; keysStreamMs: number[] };
  clearsMs: number[];
  /** The line's echo path and impairments, when the call was on one. */
  line: { echo: { attenuationDb: number; delayMs: number } | null; lateFrames: number; bursts: number } | null;
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
  readonly spoken: CallerLine[] = [];
  readonly keysMs: number[] = [];
  readonly keysStreamMs: number[] = [];
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

  static async dial(target: Target, o: { to: string; from?: string; print: (line: string) => void; line?: LineProfile }): Promise<Caller> {
    const call = await FakeTwilio.call({
      serverUrl: target.url, publicBaseUrl: target.baseUrl, authToken: target.token, accountSid: target.accountSid,
      to: o.to, from: o.from ?? nextCallerNumber(), playbackSpeed: 1, ...(o.line ? { line: o.line } : {}),
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
    const fromStream = this.call.streamMsAt(start);
    const spoken: CallerLine = {
      text, fromMs: start, toMs: null, stream: fromStream === null ? null : { fromMs: fromStream, toMs: fromStream + ulaw.length / 8 }, stateAtStart: this.states.at(-1)?.state ?? '', engineAudible: this.call.audioSince(start - 60).length > 0,
    };
    this.spoken.push(spoken);
    const done = this.call.say(ulaw).then((sent) => {
      const end = this.now();
      spoken.toMs = sent ? end : null;
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
        this.keysMs.push(at);
        const stream = this.call.streamMsAt(at);
        if (stream !== null) this.keysStreamMs.push(stream);
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
    // A close handshake slower than FakeTwilio's 2 s is not the caller's failure: the `state` and
    // `outcome` expectations after a hang-up judge whether the engine ended the call.
    await this.call.hangUp().catch((err: unknown) => this.print(`${fmtS(this.now())}  caller  (${err instanceof Error ? err.message.split('\n')[0] : String(err)})`));
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
    if (e.bargeIn) {
      const what = 'barge-in (clear)';
      const clearAt = () => this.call.clears.find((t) => t >= a.startMs) ?? null;
      await this.until(() => clearAt() !== null, this.now() + timeout);
      const at = clearAt();
      this.record({ step: index, what, ok: at !== null, detail: at !== null ? `clear ${Math.round(at - a.startMs)} ms after the caller began` : `no clear since the caller began (state ${this.states.at(-1)?.state ?? '?'})` });
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
export async function runScenario(
  scenario: Scenario,
  target: Target,
  print: (line: string) => void = () => undefined,
  opts: { line?: LineProfile } = {},
): Promise<ScenarioResult> {
  const started = performance.now();
  const name = scenario.name ?? 'scenario';
  print(`scenario ${name}${scenario.description ? `: ${scenario.description}` : ''}`);
  // Every line synthesized before dialling: the caller speaks when the script says, not a synthesis later.
  await Promise.all(scenario.steps.flatMap((step) => ('say' in step ? [callerSpeech(step.say)] : [])));
  const caller = await Caller.dial(target, { to: scenario.to, ...(scenario.from ? { from: scenario.from } : {}), print, ...(opts.line ? { line: opts.line } : {}) });
  const echo = caller.call.line?.echo;
  if (echo) print(`        line    echo ${echo.attenuationDb.toFixed(1)} dB after ${Math.round(echo.delayMs)} ms`);
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
      const window = t.endOfTurn ? `, ${t.endOfTurn.kind} words: window ${t.endOfTurn.windowMs} ms${t.prepared ? ', reply prepared in it' : ''}` : '';
      print(`        engine  turn ${String(t.generation)}: end of speech → audio ${String(t.endOfSpeechToAudioMs)} ms (endpoint ${String(t.endpointMs)}, stt ${String(t.sttMs)}, agent ${String(t.agentFirstTextMs)}, tts ${String(t.ttsFirstAudioMs)}, commit → audio ${String(t.firstAudioMs)}${window})`);
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
    caller: { lines: caller.spoken, keysMs: caller.keysMs, keysStreamMs: caller.keysStreamMs },
    clearsMs: [...caller.call.clears],
    line: caller.call.line
      ? { echo: echo ? { attenuationDb: echo.attenuationDb, delayMs: echo.delayMs } : null, lateFrames: caller.call.line.stats.lateFrames, bursts: caller.call.line.stats.bursts }
      : null,
    durationMs: Math.round(performance.now() - started),
  };
}

