/**
 * One call's actor throwing must cost that call only (docs/design/reliability.md F1): the crashed call ends with
 * outcome 'error', its stream is closed 1011 (so Twilio runs the fallback after </Connect>), the
 * failure is logged as VET_E_CALL_CRASHED, nothing escapes as an uncaught exception, and a call of
 * another clinic running at the same time carries on to a normal end.
 *
 * The Registry is driven directly, with a fake MediaStreamHandle playing Twilio's part: it plays
 * outbound audio in real time and echoes marks when reached (at once on clear), and feeds 20 ms
 * inbound μ-law frames (silence, or a tone when the caller "talks").
 */
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { callMachine } from '../../machines/call/call.machine.js';
import { encodeUlaw } from '../../src/audio/ulaw.js';
import { Registry } from '../../src/calls/registry.js';
import type { CallSession } from '../../src/calls/session.js';
import { loadTenants, type TenantDirectory } from '../../src/config/tenants.js';
import { createLogger } from '../../src/observability/logger.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { PromptCache } from '../../src/providers/tts/prompt-cache.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import type { MediaStreamHandle, StreamState } from '../../src/twilio/stream-socket.js';
import { restRecorder } from '../support/rest-recorder.js';
import { claimsOf } from '../http/edge-fixtures.js';

const TENANTS = fileURLToPath(new URL('../fixtures/tenants', import.meta.url));
const ACCOUNT = `AC${'a'.repeat(32)}`;
const FRAME_BYTES = 160;

const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);
let tenants: TenantDirectory;
let prompts: PromptCache;
const streams: FakeStream[] = [];

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  tenants = await loadTenants(TENANTS);
  prompts = new PromptCache(createFakeTts({ charsPerSecond: 50 }));
  await prompts.warm(tenants.all());
});

afterAll(() => {
  for (const s of streams) s.dispose();
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
});

/** Twilio's side of one Media Stream, as the session sees it through MediaStreamHandle. */
class FakeStream implements MediaStreamHandle {
  state: StreamState = 'started';
  readonly streamSid = `MZ${randomBytes(16).toString('hex')}`;
  readonly sent: { event: string; mark?: { name: string } }[] = [];
  closedWith: { code: number; reason: string } | null = null;
  session: CallSession | undefined;
  private queueEndMs = 0;
  private readonly marks = new Set<NodeJS.Timeout>();
  private speech: Uint8Array = new Uint8Array(0);
  private frame = 0;
  private readonly pump: NodeJS.Timeout;

  constructor(readonly callSid: string) {
    this.pump = setInterval(() => this.inbound(), 20);
    streams.push(this);
  }

  batch(sends: () => void): void {
    sends();
  }

  send(json: string): boolean {
    if (this.state !== 'started') return false;
    const msg = JSON.parse(json) as { event: string; media?: { payload: string }; mark?: { name: string } };
    this.sent.push(msg);
    const now = performance.now();
    if (msg.event === 'media') {
      this.queueEndMs = Math.max(now, this.queueEndMs) + Buffer.from(msg.media!.payload, 'base64').length / 8;
    } else if (msg.event === 'mark') {
      const name = msg.mark!.name;
      const timer = setTimeout(() => {
        this.marks.delete(timer);
        this.session?.onMark({ kind: 'mark', name });
      }, Math.max(0, this.queueEndMs - now));
      this.marks.add(timer);
    } else if (msg.event === 'clear') {
      this.queueEndMs = now; // pending marks still come back (as cleared): the timers fire now-ish
    }
    return true;
  }

  close(code = 1000, reason = 'closed'): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closedWith = { code, reason };
    this.dispose();
  }

  /** The caller talks: a loud tone the energy VAD hears. */
  say(ms: number): void {
    const pcm = Int16Array.from({ length: ms * 8 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 300 * i) / 8000)));
    this.speech = encodeUlaw(pcm);
  }

  dispose(): void {
    clearInterval(this.pump);
    for (const t of this.marks) clearTimeout(t);
    this.marks.clear();
  }

  private inbound(): void {
    if (this.state !== 'started' || !this.session) return;
    const audio = new Uint8Array(FRAME_BYTES).fill(0xff);
    const take = this.speech.subarray(0, FRAME_BYTES);
    audio.set(take);
    this.speech = this.speech.subarray(take.length);
    const n = this.frame++;
    this.session.onMedia({ kind: 'media', seq: n + 2, chunk: n + 1, timestampMs: n * 20, audio });
  }
}

function harness(machine?: typeof callMachine) {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
        done();
      },
    }),
  });
  const rest = restRecorder();
  const stt = createFakeStt({ script: ['what are your hours', 'that is all, bye'], schedule: (deliver) => void setTimeout(deliver, 30) });
  const agent = createFakeAgent({
    script: ['We are open Monday to Friday, 8 to 6.', [{ type: 'delta', text: 'Goodbye!' }, { type: 'action', action: { type: 'end', reason: 'caller said goodbye' } }]],
  });
  const registry = new Registry({
    providers: { vad: energyVad, stt, tts: createFakeTts({ charsPerSecond: 50 }), agent },
    prompts,
    rest: rest.rest,
    publicBaseUrl: 'https://voice.test',
    logger,
    accountSid: ACCOUNT,
    maxCalls: 10,
    ...(machine ? { machine } : {}),
  });
  /** /twilio/voice, then the stream's start with the minted token. */
  const dial = (tenantId: string) => {
    const callSid = `CA${randomBytes(16).toString('hex')}`;
    const opened = registry.open({ callSid, accountSid: ACCOUNT, tenant: tenants.byId(tenantId)! });
    if (opened.kind !== 'created') throw new Error(`open: ${opened.kind}`);
    const stream = new FakeStream(callSid);
    const decision = registry.acceptStream(
      { kind: 'start', streamSid: stream.streamSid, callSid, accountSid: ACCOUNT, customParameters: {},
        tracks: ['inbound'], mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
      stream,
      claimsOf(opened.streamToken),
    );
    stream.session = registry.session(callSid);
    return { callSid, stream, decision };
  };
  const stateOf = (callSid: string) => registry.list().find((c) => c.callSid === callSid)?.state ?? 'ended';
  const until = async (what: string, ok: () => boolean, timeoutMs = 6_000) => {
    const deadline = performance.now() + timeoutMs;
    while (!ok()) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const outcomeOf = (callSid: string) => registry.recentCalls().find((r) => r.callSid === callSid)?.outcome ?? null;
  return { registry, lines, rest, agent, dial, stateOf, until, outcomeOf };
}

type Harness = ReturnType<typeof harness>;

/** The surviving call: greeting, a question and its answer, then goodbye and a REST hang-up. */
async function converse(h: Harness, call: ReturnType<Harness['dial']>, duringFirstReply: () => void): Promise<void> {
  await h.until('listening', () => h.stateOf(call.callSid) === 'listening.waiting');
  call.stream.say(300);
  await h.until('the first reply', () => h.stateOf(call.callSid) === 'reply.speaking');
  duringFirstReply();
  await h.until('listening again', () => h.stateOf(call.callSid) === 'listening.waiting');
  call.stream.say(300);
  await h.until('the end of the call', () => h.outcomeOf(call.callSid) !== null, 8_000);
}

function expectCrashed(expect: ExpectStatic, h: Harness, crashed: ReturnType<Harness['dial']>): void {
  expect(h.outcomeOf(crashed.callSid)).toBe('error');
  expect(crashed.stream.closedWith).toEqual({ code: 1011, reason: 'call failed' });
  const errors = h.lines.filter((l) => l.callSid === crashed.callSid && l.level === 50);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({ code: 'VET_E_CALL_CRASHED', msg: 'call crashed; handing the caller to the fallback menu' });
  expect((errors[0]!.err as { message?: string }).message).toBe('boom');
  expect(h.registry.session(crashed.callSid)).toBeUndefined();
  // Twilio frames still arriving for the dead call are harmless.
  expect(() => {
    crashed.stream.session?.onMedia({ kind: 'media', seq: 1, chunk: 1, timestampMs: 0, audio: new Uint8Array(FRAME_BYTES).fill(0xff) });
    crashed.stream.session?.onMark({ kind: 'mark', name: '1:0:100' });
    crashed.stream.session?.onDtmf({ kind: 'dtmf', digit: '9' });
    crashed.stream.session?.onStop();
  }).not.toThrow();
}

describe.concurrent('a call that crashes takes down nothing else', () => {
  it('beginPlayback throws in one registry; a call in another registry completes normally', async ({ expect }) => {
    const boom = callMachine.provide({ actions: { beginPlayback: () => { throw new Error('boom'); } } });
    const healthy = harness();
    const broken = harness(boom);

    const survivor = healthy.dial('quick-vet');
    expect(survivor.decision).toBe('accept');
    let crashed: ReturnType<Harness['dial']> | null = null;
    await converse(healthy, survivor, () => {
      crashed = broken.dial('consent-vet'); // crashes on twilio.start, at the greeting's first action
    });

    expect(crashed).not.toBeNull();
    expectCrashed(expect, broken, crashed!);
    expect(crashed!.stream.sent).toEqual([]); // nothing was played
    expect(broken.registry.list()).toEqual([]);
    expect(broken.rest.calls).toEqual([]);

    expect(healthy.outcomeOf(survivor.callSid)).toBe('completed');
    expect(healthy.rest.calls.map((c) => c.op)).toEqual(['record', 'hangup']);
    expect(healthy.registry.recentCalls()[0]?.turns).toHaveLength(2);
    expect(healthy.lines.some((l) => l.level === 50)).toBe(false);
    expect(uncaught).toEqual([]);
  }, 20_000);

  it('one registry, two clinics: the consent-vet call crashes mid-call, the quick-vet call carries on', async ({ expect }) => {
    // Only consent-vet calls reach `consent`; its entry action throws after the greeting has played.
    const boom = callMachine.provide({ actions: { countConsentAsk: () => { throw new Error('boom'); } } });
    const h = harness(boom);

    const survivor = h.dial('quick-vet');
    const crashed = h.dial('consent-vet');
    expect([survivor.decision, crashed.decision]).toEqual(['accept', 'accept']);
    await h.until('the crash', () => h.outcomeOf(crashed.callSid) !== null);
    expectCrashed(expect, h, crashed);
    expect(crashed.stream.sent.some((m) => m.event === 'media')).toBe(true); // the greeting had played
    expect(h.registry.list().map((c) => c.callSid)).toEqual([survivor.callSid]);

    await converse(h, survivor, () => undefined);
    expect(h.outcomeOf(survivor.callSid)).toBe('completed');
    expect(survivor.stream.closedWith).toEqual({ code: 1000, reason: 'call ended' });
    expect(h.rest.calls.map((c) => [c.op, c.callSid])).toEqual([['record', survivor.callSid], ['hangup', survivor.callSid]]);
    expect(h.agent.turns.map((t) => t.transcript)).toEqual(['what are your hours', 'that is all, bye']);
    expect(h.registry.list()).toEqual([]);
    expect(h.lines.filter((l) => l.level === 50).map((l) => l.callSid)).toEqual([crashed.callSid]);
    expect(uncaught).toEqual([]);
  }, 20_000);
});
