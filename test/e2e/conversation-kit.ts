/**
 * Shared rig for the end-to-end conversation tests (conversation, interruptions, stream-safety):
 * a fresh engine per test on the short fixture clinics, with the real energy VAD, a scripted fake
 * recognizer, the local or a scripted agent, and the fake synthesizer (deterministic tone audio
 * whose length is text length ÷ charsPerSecond). Caller "speech" is a loud tone burst: the energy
 * VAD hears it, the fake recognizer decides what it said.
 *
 * Observation points:
 * - `trace(callSid)`: every stable state the call passed through, from the engine's own
 *   'state changed' debug lines (transient `always` states such as consent.granted never settle).
 * - `timeline`: one ordered list of state changes and REST requests, so order can be
 *   asserted across the engine and Twilio's REST API.
 * - FakeTwilio: outbound media/mark/clear with arrival times and what the caller heard.
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import twilio from 'twilio';
import type { TestContext } from 'vitest';
import { encodeUlaw } from '../../src/audio/ulaw.js';
import { loadTenants } from '../../src/config/tenants.js';
import type { AgentProvider } from '../../src/providers/agent/types.js';
import { createFakeStt, type FakeSttOptions, type FakeSttProvider, type FakeSttUtterance } from '../../src/providers/stt/fake.js';
import { createFakeTts, fakeTtsBytes } from '../../src/providers/tts/fake.js';
import { PromptCache } from '../../src/providers/tts/prompt-cache.js';
import type { TtsProvider } from '../../src/providers/tts/types.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import type { TwilioRest } from '../../src/twilio/rest-types.js';
import { Player } from '../../src/twilio/player.js';
import { takeSpeech } from '../../machines/call/language.js';
import type { LineProfile } from '../support/fake-line.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { restRecorder, type RestCall } from '../support/rest-recorder.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { formBody } from '../support/twilio-sign.js';

export const TENANTS = fileURLToPath(new URL('../fixtures/tenants', import.meta.url));
export const QUICK_VET = '+15550109000';
export const CONSENT_VET = '+15550109100';
/** Fake synthesizer speed: brisk, so prompts and replies stay short and the suite fast. */
export const CPS = 50;

/** Audio length (ms) the fake synthesizer produces for `text` at `cps` (a clip: one synthesis). */
export const speechMs = (text: string, cps = CPS) => fakeTtsBytes(text, cps) / 8;

/**
 * What the engine synthesizes for a reply streamed word by word, item by item: sentences, the first
 * one from its first clause (machines/call/language.ts `takeSpeech`).
 */
export function speechItems(text: string): string[] {
  const items: string[] = [];
  let pending = '';
  for (const word of text.split(/(?<= )/)) {
    const next = takeSpeech(pending + word, items.length === 0);
    items.push(...next.items);
    pending = next.rest;
  }
  if (pending.trim()) items.push(pending.trim());
  return items;
}

/** Audio length (ms) of an agent reply: the engine synthesizes it item by item. */
export const replyMs = (text: string, cps = CPS) => speechItems(text).reduce((ms, s) => ms + speechMs(s, cps), 0);

/**
 * The scripted recognizer as a streaming vendor (ElevenLabs Scribe Realtime) behaves: each partial
 * once the caller has spoken its words (300 ms of audio a word, counted from speechStarted), then
 * 100–200 ms of vendor latency; finals 30 ms after the VAD boundary (set by each rig), never before
 * the machine has heard vad.speechEnd. A partial of four words therefore needs ~1.2 s of speech.
 */
export const streamingRecognizer: Pick<FakeSttOptions, 'partialsAt' | 'wordMs' | 'partialSchedule'> = {
  partialsAt: 'spoken',
  wordMs: 300,
  partialSchedule: (deliver) => void setTimeout(deliver, 100 + Math.random() * 100),
};

/** A loud 300 Hz tone (about -15 dBFS): what the energy VAD hears as the caller talking. */
export function tone(ms: number, amplitude = 8000): Uint8Array {
  const n = Math.round(ms * 8);
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) pcm[i] = Math.round(amplitude * Math.sin((2 * Math.PI * 300 * i) / 8000));
  return encodeUlaw(pcm);
}

let prompts: { cache: PromptCache; tts: TtsProvider } | null = null;

/** The prompt cache, rendered once per test file with the fake synthesizer. */
export async function warmPrompts(): Promise<PromptCache> {
  if (prompts) return prompts.cache;
  const tts = createFakeTts({ charsPerSecond: CPS });
  const cache = new PromptCache(tts);
  await cache.warm((await loadTenants(TENANTS)).all());
  prompts = { cache, tts };
  return cache;
}

export interface TimelineEntry {
  kind: 'state' | 'rest';
  callSid: string;
  /** Dotted state or REST op. */
  what: string;
  atPerfMs: number;
}

export interface RestEvent extends RestCall {
  atPerfMs: number;
}

export interface Rig {
  engine: TestEngine;
  stt: FakeSttProvider;
  rest: RestEvent[];
  timeline: TimelineEntry[];
  calls: FakeTwilio[];
  /** Runs when the engine makes a REST request (before it resolves). */
  onRest: ((call: RestEvent) => void) | null;
  dial(to?: string, extra?: { callSid?: string; start?: { callSid?: string; customParameters?: Record<string, string> }; line?: LineProfile }): Promise<FakeTwilio>;
  /** The stable states this call went through, in order (consecutive duplicates removed). */
  trace(callSid: string): string[];
  /** Current dotted state, or 'ended' once the registry dropped the call. */
  stateOf(callSid: string): string;
  /** Parsed log lines (optionally of one call, optionally with one message). */
  logs(callSid?: string, msg?: string): Record<string, unknown>[];
  close(): Promise<void>;
}

export interface RigOptions {
  agent: AgentProvider;
  stt?: readonly FakeSttUtterance[];
  /** Twilio REST rejects `update` (the transfer) when true. */
  failUpdate?: boolean;
  tts?: TtsProvider;
  /** Clinic files (default: test/fixtures/tenants). */
  tenantsDir?: string;
  /** Extra engine options (follow-through, clinic secrets, environment). */
  engine?: Pick<Parameters<typeof startEngine>[0], 'followUps' | 'tenantEnv' | 'env'>;
  /** The line every call of this rig is dialled over (default: a perfect line); `dial` may override. */
  line?: LineProfile;
}

const pathOf = (value: unknown): string => {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value as Record<string, unknown>)[0] ?? ['', ''];
  return `${key}.${pathOf(child)}`;
};

/** A rig closed when the test finishes (safe with concurrent tests). */
export async function rigFor(ctx: Pick<TestContext, 'onTestFinished'>, opts: RigOptions): Promise<Rig> {
  const r = await startRig(opts);
  ctx.onTestFinished(() => r.close());
  return r;
}

export async function startRig(opts: RigOptions): Promise<Rig> {
  const cache = await warmPrompts();
  const stt = createFakeStt({ script: opts.stt ?? [], ...streamingRecognizer, schedule: (deliver) => void setTimeout(deliver, 30) });
  const recorder = restRecorder({ fail: (op) => op === 'update' && opts.failUpdate === true });
  const rest: RestEvent[] = [];
  const timeline: TimelineEntry[] = [];
  const rig = { onRest: null } as Rig;
  const stamp = <T>(op: RestCall['op'], callSid: string, run: () => Promise<T>, extra: Partial<RestCall> = {}): Promise<T> => {
    const event: RestEvent = { op, callSid, ...extra, atPerfMs: performance.now() };
    rest.push(event);
    timeline.push({ kind: 'rest', callSid, what: op, atPerfMs: event.atPerfMs });
    rig.onRest?.(event);
    return run();
  };
  const restApi: TwilioRest = {
    updateCallTwiml: (sid, twiml, signal) => stamp('update', sid, () => recorder.rest.updateCallTwiml(sid, twiml, signal), { twiml }),
    hangup: (sid, signal) => stamp('hangup', sid, () => recorder.rest.hangup(sid, signal)),
    startRecording: (sid, url, signal) => stamp('record', sid, () => recorder.rest.startRecording(sid, url, signal), { callbackUrl: url }),
  };
  const engine = await startEngine({
    providers: { vad: energyVad, stt, tts: opts.tts ?? createFakeTts({ charsPerSecond: CPS }), agent: opts.agent },
    prompts: cache,
    rest: restApi,
    ...opts.engine,
    env: { TENANTS_DIR: opts.tenantsDir ?? TENANTS, ...opts.engine?.env },
  });
  // Mirror 'state changed' lines into the timeline as they are written (pino writes synchronously).
  const push = engine.logs.push.bind(engine.logs);
  engine.logs.push = (...lines: string[]) => {
    for (const chunk of lines) {
      for (const line of chunk.split('\n')) {
        if (!line.includes('"state changed"')) continue;
        const o = JSON.parse(line) as { callSid?: string; to?: string };
        if (o.callSid && o.to) timeline.push({ kind: 'state', callSid: o.callSid, what: pathOf(JSON.parse(o.to)), atPerfMs: performance.now() });
      }
    }
    return push(...lines);
  };

  const parsed = (): Record<string, unknown>[] =>
    engine.logs.flatMap((chunk) => chunk.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>));

  Object.assign(rig, {
    engine,
    stt,
    rest,
    timeline,
    calls: [] as FakeTwilio[],
    async dial(to = QUICK_VET, extra = {}) {
      const call = await FakeTwilio.call({
        serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT,
        to, from: nextCallerNumber(), ...(opts.line ? { line: opts.line } : {}), ...extra,
      });
      rig.calls.push(call);
      return call;
    },
    trace(callSid: string) {
      const states = timeline.filter((e) => e.kind === 'state' && e.callSid === callSid).map((e) => e.what);
      return states.filter((s, i) => s !== states[i - 1]);
    },
    stateOf(callSid: string) {
      return engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';
    },
    logs(callSid?: string, msg?: string) {
      return parsed().filter((o) => (callSid === undefined || o.callSid === callSid) && (msg === undefined || o.msg === msg));
    },
    async close() {
      await Promise.all(rig.calls.map((c) => c.dispose()));
      await engine.close();
    },
  } satisfies Omit<Rig, 'onRest'>);
  return rig;
}

/** Waits until the call's dotted state satisfies `ok` (string: exact match). */
export function untilState(rig: Rig, call: FakeTwilio, ok: string | ((state: string) => boolean), timeoutMs = 8_000): Promise<void> {
  const test = typeof ok === 'string' ? (s: string) => s === ok : ok;
  return call.waitFor(() => test(rig.stateOf(call.callSid)), timeoutMs, `state ${String(ok)} (now ${rig.stateOf(call.callSid)})`);
}

/** `ok` is a subsequence of `trace`: these states were visited in this order (others may come between). */
export function visitedInOrder(trace: readonly string[], ok: readonly string[]): boolean {
  let i = 0;
  for (const s of trace) if (s === ok[i]) i++;
  return i === ok.length;
}

/**
 * A reply was answered between `before` and `after`, by either legal path: prepared during the
 * end-of-turn window when the recognizer's interim words were in at the end of speech
 * (reply.preparing), or started on the final otherwise (reply.thinking). Which one a real-time run
 * takes depends on when the fake vendor's partial lands against the VAD's close; the machine tests
 * pin each path on the simulated clock.
 */
export function answeredInOrder(trace: readonly string[], before: readonly string[], after: readonly string[]): boolean {
  return visitedInOrder(trace, [...before, 'reply.preparing.pausing', ...after]) || visitedInOrder(trace, [...before, 'reply.thinking', ...after]);
}

/** Index in the timeline of the first entry matching. -1 if none. */
export function indexOf(rig: Rig, callSid: string, kind: TimelineEntry['kind'], what: string, from = 0): number {
  return rig.timeline.findIndex((e, i) => i >= from && e.callSid === callSid && e.kind === kind && e.what === what);
}

/** Outbound messages of one kind, with arrival time and (for marks) the decoded mark name. */
export function outboundOf(call: FakeTwilio, event: 'media' | 'mark' | 'clear') {
  return call.outbound
    .filter((r) => r.message?.event === event)
    .map((r) => ({ atMs: r.atMs, mark: r.message?.event === 'mark' ? Player.parseMark(r.message.mark.name) : null, bytes: r.message?.event === 'media' ? Buffer.from(r.message.media.payload, 'base64').length : 0 }));
}

/** Highest playback generation the fake has received a mark for (0: none yet). */
export function lastGeneration(call: FakeTwilio): number {
  return Math.max(0, ...outboundOf(call, 'mark').map((m) => m.mark?.generation ?? 0));
}

/** Highest mark of `generation` echoed as played (not because of a clear): ms of it the caller heard. */
export function playedOf(call: FakeTwilio, generation: number): number {
  const played = call.marksEchoed.filter((m) => m.cause === 'played' && m.name.startsWith(`${generation}:`));
  return Math.max(0, ...played.map((m) => Number(m.name.split(':')[2])));
}

/** Milliseconds of audio the engine sent for playback generation `generation`. */
export function generationAudioMs(call: FakeTwilio, generation: number): number {
  const marks = outboundOf(call, 'mark').filter((m) => m.mark?.generation === generation);
  return Math.max(0, ...marks.map((m) => m.mark?.endMs ?? 0));
}

/** POST a signed /twilio/voice like Twilio would (no stream follows): status, body and the stream token from the Stream URL path. */
export async function voiceWebhook(engineUrl: string, callSid: string, to = QUICK_VET): Promise<{ status: number; body: string; token: string | null }> {
  const params = { CallSid: callSid, AccountSid: TEST_ACCOUNT, From: nextCallerNumber(), To: to, CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01' };
  const signature = twilio.getExpectedTwilioSignature(TEST_TOKEN, `${TEST_BASE_URL}/twilio/voice`, params);
  const res = await fetch(`${engineUrl}/twilio/voice`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature },
    body: formBody(params),
  });
  const body = await res.text();
  return { status: res.status, body, token: /<Stream url="wss:\/\/[^/"]+\/twilio\/ws\/([^"/]+)"/.exec(body)?.[1] ?? null };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
