/**
 * Shared rig for the non-provider fault tests (docs/design/reliability.md §1, §2, §4 recipe 5): a real engine on
 * 127.0.0.1 with the energy VAD, a scripted fake recognizer that always hears "what are your hours",
 * the rule-based receptionist and the fake synthesizer; Twilio REST and the journal are whatever the
 * test injects. Every fault test runs a second, healthy call beside the faulted one (`converse`) and
 * measures what the caller heard from FakeTwilio's received audio.
 */
import { readdir } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TestContext } from 'vitest';
import type { SessionTap } from '../../src/calls/session.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { createFakeStt, type FakeSttProvider } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import { readJournal, type Journal } from '../../src/replay/read.js';
import type { TwilioRest } from '../../src/twilio/rest-types.js';
import type { MediaStreamOptions } from '../../src/twilio/stream-socket.js';
import { CPS, QUICK_VET, TENANTS, outboundOf, streamingRecognizer, tone, warmPrompts } from '../e2e/conversation-kit.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';

export const HOURS = 'what are your hours';

export interface FaultRig {
  engine: TestEngine;
  stt: FakeSttProvider;
  calls: FakeTwilio[];
  /** performance.now() of every state a call entered, in order. */
  states: { callSid: string; state: string; atPerf: number }[];
  dial(opts?: { serverUrl?: string }): Promise<FakeTwilio>;
  /** Dotted state, or 'ended' once the registry dropped the call. */
  stateOf(callSid: string): string;
  /** Parsed engine log lines, optionally of one call. */
  logs(callSid?: string): Record<string, unknown>[];
  outcomeOf(callSid: string): string | null | undefined;
  close(): Promise<void>;
}

export async function faultRig(
  ctx: Pick<TestContext, 'onTestFinished'>,
  opts: { rest?: TwilioRest | null; journalDir?: string; streamOptions?: MediaStreamOptions } = {},
): Promise<FaultRig> {
  const prompts = await warmPrompts();
  // Every caller says the same thing, so the shared FIFO script does not care which call asks first.
  const stt = createFakeStt({ script: Array<string>(50).fill(HOURS), ...streamingRecognizer, schedule: (deliver) => void setTimeout(deliver, 30) });
  const states: FaultRig['states'] = [];
  const tap: SessionTap = { transition: (callSid, state) => void states.push({ callSid, state, atPerf: performance.now() }) };
  const engine = await startEngine({
    providers: { vad: energyVad, stt, tts: createFakeTts({ charsPerSecond: CPS }), agent: localAgent },
    prompts,
    rest: opts.rest ?? null,
    env: { TENANTS_DIR: TENANTS },
    tap,
    ...(opts.journalDir ? { journalDir: opts.journalDir } : {}),
    ...(opts.streamOptions ? { streamOptions: opts.streamOptions } : {}),
  });
  const calls: FakeTwilio[] = [];
  const rig: FaultRig = {
    engine,
    stt,
    calls,
    states,
    async dial({ serverUrl } = {}) {
      const call = await FakeTwilio.call({
        serverUrl: serverUrl ?? engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT,
        to: QUICK_VET, from: nextCallerNumber(),
      });
      calls.push(call);
      return call;
    },
    stateOf: (callSid) => engine.registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended',
    logs: (callSid) =>
      engine.logs
        .flatMap((chunk) => chunk.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>))
        .filter((o) => callSid === undefined || o.callSid === callSid),
    outcomeOf: (callSid) => engine.registry.recentCalls().find((c) => c.callSid === callSid)?.outcome,
    async close() {
      await Promise.all(calls.map((c) => c.dispose()));
      await engine.close();
    },
  };
  ctx.onTestFinished(() => rig.close());
  return rig;
}

/** Waits until the call's dotted state satisfies `ok` (string: exact match). */
export function untilState(rig: FaultRig, call: FakeTwilio, ok: string | ((state: string) => boolean), timeoutMs = 8_000): Promise<void> {
  const test = typeof ok === 'string' ? (s: string) => s === ok : ok;
  return call.waitFor(() => test(rig.stateOf(call.callSid)), timeoutMs, `state ${String(ok)} (now ${rig.stateOf(call.callSid)})`);
}

/** performance.now() when `callSid` first entered `state` at or after `sincePerf`. */
export function enteredAt(rig: FaultRig, callSid: string, state: string, sincePerf = 0): number | undefined {
  return rig.states.find((s) => s.callSid === callSid && s.state === state && s.atPerf >= sincePerf)?.atPerf;
}

/**
 * Waits until the call has entered `state` (per the session tap, so a state left within
 * milliseconds still counts); resolves with the performance.now() of the entry.
 */
export async function untilEntered(rig: FaultRig, call: FakeTwilio, state: string, timeoutMs = 8_000, sincePerf = 0): Promise<number> {
  await call.waitFor(() => enteredAt(rig, call.callSid, state, sincePerf) !== undefined, timeoutMs, `state ${state} entered (now ${rig.stateOf(call.callSid)})`);
  return enteredAt(rig, call.callSid, state, sincePerf) ?? Number.NaN;
}

/**
 * The furthest playback position among mark names (`generation:epoch:endMs`) as generation × 1e9 +
 * endMs; -1 for none. The session hands the machine only some mark echoes (at most one per 250 ms,
 * the held one before anything else: src/calls/mark-echoes.ts), so what must be journaled is the
 * furthest position the engine had received, not every echo.
 */
export function furthestMark(names: readonly string[]): number {
  let furthest = -1;
  for (const name of names) {
    const [generation, , endMs] = name.split(':').map(Number);
    if (generation !== undefined && endMs !== undefined) furthest = Math.max(furthest, generation * 1e9 + endMs);
  }
  return furthest;
}

/** Mark names journaled as `twilio.mark` events, in the player's naming. */
export const journaledMarks = (events: readonly { event: { type: string } }[]): string[] =>
  events.flatMap(({ event: e }) => (e.type === 'twilio.mark' && 'generation' in e && 'epoch' in e && 'endMs' in e ? [`${String(e.generation)}:${String(e.epoch)}:${String(e.endMs)}`] : []));

/** A performance.now() instant on this call's clock (FakeTwilio times count from its creation). */
export const onCallClock = (call: FakeTwilio, perf: number) => perf - (performance.now() - call.now());

/** ms from `fromMs` (call clock) to the first outbound media the fake received after it; null if none. */
export function firstAudioAfter(call: FakeTwilio, fromMs: number): number | null {
  const media = outboundOf(call, 'media').find((m) => m.atMs >= fromMs);
  return media ? media.atMs - fromMs : null;
}

/**
 * The healthy neighbour: one full question-and-answer turn, then a hang-up. Resolves with the
 * agent's line; rejects if any step stalls.
 */
export async function converse(rig: FaultRig, call: FakeTwilio): Promise<string> {
  await untilState(rig, call, 'listening.waiting', 10_000);
  const said = rig.engine.registry.session(call.callSid)?.history.length ?? 0;
  await call.say(tone(400));
  await untilState(rig, call, (s) => s.startsWith('reply.'), 6_000);
  await untilState(rig, call, 'listening.waiting', 10_000);
  const history = rig.engine.registry.session(call.callSid)?.history ?? [];
  const agent = history.slice(said).find((h) => h.role === 'agent')?.text ?? '';
  await call.hangUp();
  await untilState(rig, call, 'ended', 3_000);
  return agent;
}

/** `work`, to be awaited later: if it fails before then, the test reports it there, not as an unhandled rejection. */
export function later<T>(work: Promise<T>): Promise<T> {
  work.catch(() => {});
  return work;
}

/** Timers and sockets keeping the event loop alive, by type. */
export function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

/** The journal file of `callSid` in `dir`, parsed by the replay reader (the real one). */
export async function journalOf(dir: string, callSid: string): Promise<Journal> {
  const name = (await readdir(dir)).find((f) => f.endsWith(`_${callSid}.jsonl`));
  if (!name) throw new Error(`no journal for ${callSid} in ${dir}`);
  return readJournal(join(dir, name));
}

export type CutMode = 'fin' | 'rst' | 'blackhole';

/**
 * A TCP proxy in front of the engine (docs/design/reliability.md §4 recipe 5: "a small net proxy adds cut,
 * blackhole"). `cut` acts on every Media Stream connection (the ones that sent an Upgrade):
 * `fin` closes both sides without a WebSocket close frame, `rst` resets the engine's side,
 * `blackhole` keeps both open and forwards nothing more.
 */
export async function streamProxy(target: string): Promise<{ url: string; cut(mode: CutMode): number; close(): Promise<void> }> {
  const { hostname, port } = new URL(target);
  const pairs: { client: Socket; upstream: Socket; stream: boolean; holed: boolean }[] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    const pair = { client, upstream, stream: false, holed: false };
    pairs.push(pair);
    client.on('data', (d: Buffer) => {
      if (!pair.stream && d.toString('latin1').toLowerCase().includes('upgrade: websocket')) pair.stream = true;
      if (!pair.holed) upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => void (pair.holed || client.write(d)));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${own}`,
    cut(mode) {
      const streams = pairs.filter((p) => p.stream && !p.upstream.destroyed);
      for (const p of streams) {
        if (mode === 'blackhole') p.holed = true;
        else if (mode === 'rst') p.upstream.resetAndDestroy();
        else p.upstream.destroy();
      }
      return streams.length;
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
