/**
 * Bad input by the thousands, part 1: the Twilio Media Stream (docs/design/reliability.md F2–F5, §4 recipe 1).
 *
 * 1. The codec against an oracle: frames built valid (with the message they must decode to) or
 *    with exactly one defect (with the reason they must be rejected for), then broken as text; and
 *    junk (JSON values, random strings and bytes, 32k-deep nesting, huge strings) that must only
 *    come back as a typed result, the same as a string and as a Buffer.
 * 2. A storm over real sockets to a real engine on fake providers: seeded sequences (media before
 *    start, duplicate start, stop twice, out-of-order counters, binary, oversize, bad UTF-8,
 *    fragments, replayed, forged and foreign stream tokens) on 10 sockets at a time. A model of the
 *    socket policy and of the stream-token rules predicts, per socket, the refused upgrade or the
 *    close code or that it stays open, and the totals of the stream counters. Afterwards no call is
 *    left and a clean call still works.
 *
 * Seed: FUZZ_SEED (default below), printed; a failing storm sequence is named by its index.
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { INVALID_REASONS, parseInbound } from '../../src/twilio/media-codec.js';
import type { InboundResult } from '../../src/twilio/media-codec.js';
import { createStreamCounters, MEDIA_STREAM_WS_OPTIONS } from '../../src/twilio/stream-socket.js';
import { CPS, QUICK_VET, TENANTS, warmPrompts } from '../e2e/conversation-kit.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber, parseTwiml } from '../support/fake-twilio.js';
import { LONG, sized } from '../support/long.js';
import { restRecorder } from '../support/rest-recorder.js';
import { signedForm, wsSignature } from '../support/twilio-sign.js';
import {
  callSidArb, defectiveFrame, junkFrame, labelledText, RESULT_KINDS, validMedia,
} from './arbitraries.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20_261_125);
console.info(`[fuzz] media frames: seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);

/** docs/reliability.md: frames through the codec in the three properties below (×10 under `npm run test:long`). */
const CODEC_FRAMES = sized(9_000, 90_000);

/** Comparable form of a codec result: plain arrays and objects. */
function plain(r: InboundResult): unknown {
  if (r.kind === 'media') return { ...r, audio: [...r.audio] };
  if (r.kind === 'start') return { ...r, tracks: [...r.tracks], customParameters: { ...r.customParameters } };
  return r;
}

describe('codec: parseInbound against an oracle (fast-check)', () => {
  let parsed = 0;
  const parse = (raw: string | Buffer, binary = false): InboundResult => {
    parsed++;
    return parseInbound(raw, binary);
  };

  it('valid frames decode to their message; one-defect frames come back with their reason', () => {
    const seen = new Set<string>();
    fc.assert(fc.property(labelledText, ({ label, raw, expected }) => {
      const r = parse(raw);
      seen.add(expected.kind === 'invalid' ? expected.reason : expected.kind);
      expect(plain(r), label).toEqual(expected);
    }), { seed: SEED, numRuns: sized(5_000, 50_000) });
    // The generator reached every outcome a text frame can have.
    const outcomes: string[] = [...INVALID_REASONS.filter((r) => r !== 'binary'), 'connected', 'start', 'media', 'dtmf', 'mark', 'stop', 'ignored'];
    expect(outcomes.filter((o) => !seen.has(o))).toEqual([]);
  });

  it('junk never throws and always comes back typed, the same as a string and as a Buffer', () => {
    const kinds = new Set<string>();
    fc.assert(fc.property(junkFrame, (raw) => {
      const r = parse(raw);
      expect(RESULT_KINDS).toContain(r.kind);
      if (r.kind === 'invalid') {
        expect(INVALID_REASONS).toContain(r.reason);
        expect(Object.isFrozen(r)).toBe(true); // a shared constant: nothing from the frame rides along
      }
      kinds.add(r.kind === 'invalid' ? r.reason : r.kind);
      const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
      // Lone surrogates become U+FFFD on the wire: compare only when the string survives the round trip.
      if (typeof raw === 'string' && bytes.toString('utf8') !== raw) return;
      const again = parse(typeof raw === 'string' ? bytes : raw.toString('utf8'));
      expect(again.kind === 'invalid' ? again.reason : again.kind).toBe(r.kind === 'invalid' ? r.reason : r.kind);
    }), { seed: SEED, numRuns: sized(2_000, 20_000) });
    expect([...kinds]).toEqual(expect.arrayContaining(['json', 'shape', 'tooLarge']));
  });

  it('a binary frame is rejected as binary whatever it holds', () => {
    fc.assert(fc.property(fc.oneof(validMedia.map((l) => JSON.stringify(l.frame)), junkFrame), (raw) => {
      expect(parse(Buffer.isBuffer(raw) ? raw : Buffer.from(raw), true)).toEqual({ kind: 'invalid', reason: 'binary' });
    }), { seed: SEED, numRuns: sized(500, 5_000) });
  });

  it(`counts: at least ${CODEC_FRAMES.toLocaleString('en-US')} frames through the codec`, () => {
    expect(parsed).toBeGreaterThanOrEqual(CODEC_FRAMES);
  });
});

// ---------------------------------------------------------------------------------------------
// Part 2: the storm over real sockets
// ---------------------------------------------------------------------------------------------

const MAX_PAYLOAD = MEDIA_STREAM_WS_OPTIONS.maxPayload;
const MAX_FRAGMENTS = MEDIA_STREAM_WS_OPTIONS.maxFragments;
const START_TIMEOUT_MS = 3_000;
const LANES = 10;
/** Sequences run until the stream handler has seen this many messages (the model says which it sees); ×10 under `npm run test:long`. */
const TARGET_HANDLED = sized(10_000, 100_000);
/** docs/reliability.md: sockets the storm opens at least (about 240 per 10,000 messages). */
const MIN_SOCKETS = sized(200, 2_000);
/** Sampled up front; about 240 are needed per 10,000 messages. */
const SEQUENCES = sized(500, 5_000);

/**
 * The `start` a socket sends. The token is in the upgrade's path, so `customParameters` carry no
 * credential: `none`, `random` and `burned` put nothing, a random or a used token there, and are
 * accepted like `own` when the start names the token's call and account.
 */
type StartVariant = 'own' | 'none' | 'random' | 'burned' | 'otherCall' | 'otherAccount' | 'badFormat';
/** One WebSocket message as the fake peer sends it; `start` is filled in once the call is minted. */
type Step =
  | { t: 'text'; raw: string | Buffer }
  | { t: 'start'; variant: StartVariant }
  | { t: 'stop' }
  | { t: 'fragments'; raw: string; parts: number }
  | { t: 'binary'; bytes: Uint8Array };
/** How the peer leaves a socket that is still open at the end: `stop`, a close frame, or vanishing (no close frame). */
type Exit = 'stop' | 'close' | 'vanish';
/** `mint`: the socket's upgrade carries the token /twilio/voice minted for its call; else a used, forged or garbage one (refused 403). */
interface Sequence { mint: boolean; steps: Step[]; exit: Exit; tags: string[] }

/** Bytes as they cross the wire (a JS string is sent as UTF-8, lone surrogates replaced). */
const wire = (raw: string | Buffer): Buffer => (typeof raw === 'string' ? Buffer.from(raw) : raw);
const PAD_HEAD = '{"event":"padding","pad":"';
const text = (raw: string | Buffer): Step => ({ t: 'text', raw });
/** Valid media with counters in any order (out-of-order, repeated, far-future sequence numbers). */
const mediaStep = validMedia.map((l) => text(JSON.stringify(l.frame)));
const junkStep = fc.oneof(junkFrame, defectiveFrame.map((l) => JSON.stringify(l.frame))).map(text);
/** Junk the stream handler sees (ws lets it through): it costs the socket an invalid-frame strike at most. */
const softJunkStep = fc.oneof(junkFrame, defectiveFrame.map((l) => JSON.stringify(l.frame)))
  .filter((raw) => wire(raw).length <= MAX_PAYLOAD && isUtf8(wire(raw))).map(text);
const markStep = fc.string({ minLength: 1, maxLength: 40 }).map((name) => text(JSON.stringify({ event: 'mark', sequenceNumber: '7', streamSid: 'MZ1', mark: { name } })));
const otherStep = fc.constantFrom(
  text(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' })),
  text(JSON.stringify({ event: 'someFutureEvent', streamSid: 'MZ1' })),
  // Exactly at the size limit: passes ws and the codec's size check, then is an unknown event.
  text(`${PAD_HEAD}${'p'.repeat(MAX_PAYLOAD - PAD_HEAD.length - 2)}"}`),
);
const fragmentsStep = fc.tuple(validMedia, fc.integer({ min: 2, max: MAX_FRAGMENTS })).map(([l, parts]): Step => ({ t: 'fragments', raw: JSON.stringify(l.frame), parts }));
const preStep = fc.oneof({ arbitrary: mediaStep, weight: 4 }, { arbitrary: junkStep, weight: 2 }, markStep, otherStep, fc.constant<Step>({ t: 'stop' }));
const bodyStep = fc.oneof(
  { arbitrary: mediaStep, weight: 40 }, { arbitrary: softJunkStep, weight: 2 }, { arbitrary: markStep, weight: 2 },
  { arbitrary: otherStep, weight: 1 }, { arbitrary: fragmentsStep, weight: 1 },
);

/** How a sequence ends: most finales are one more attack. */
const finales: Record<string, fc.Arbitrary<Step[]>> = {
  none: fc.constant([]),
  stop: fc.constant([{ t: 'stop' }]),
  stopTwice: fc.constant([{ t: 'stop' }, { t: 'stop' }, text('{"event":"media"}')]),
  duplicateStart: fc.constant([{ t: 'start', variant: 'own' }]),
  binary: fc.uint8Array({ maxLength: 200 }).map((bytes) => [{ t: 'binary', bytes }]),
  oversize: fc.integer({ min: 1, max: 4_096 }).map((extra) => [text('x'.repeat(MAX_PAYLOAD + extra))]),
  badUtf8: fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80])
    .map((bad) => [text(Buffer.concat([Buffer.from('{"event":"mark","mark":{"name":"'), Buffer.from(bad), Buffer.from('"}}')]))]),
  tooManyFragments: fc.tuple(validMedia, fc.integer({ min: MAX_FRAGMENTS + 1, max: 200 }))
    .map(([l, parts]) => [{ t: 'fragments', raw: JSON.stringify(l.frame), parts }]),
  junkBurst: fc.array(junkStep, { minLength: 10, maxLength: 14 }),
};

const sequenceArb: fc.Arbitrary<Sequence> = fc
  .record({
    mint: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, fc.constant(false)),
    pre: fc.array(preStep, { maxLength: 6 }),
    start: fc.oneof(
      { arbitrary: fc.constant<StartVariant | null>('own'), weight: 12 },
      { arbitrary: fc.constantFrom<StartVariant | null>('none', 'random', 'burned', 'otherCall', 'otherAccount', 'badFormat', null), weight: 3 },
    ),
    body: fc.array(bodyStep, { minLength: 30, maxLength: 110, size: 'max' }),
    exit: fc.constantFrom<Exit>('stop', 'close', 'vanish'),
    // 'none' about a quarter of the time: those sockets stay open and test how a peer leaves.
    finale: fc.oneof(
      { arbitrary: fc.constant('none'), weight: 3 },
      { arbitrary: fc.constantFrom(...Object.keys(finales).filter((n) => n !== 'none')), weight: 8 },
    ).chain((name) => (finales[name] ?? fc.constant([])).map((steps) => ({ name, steps }))),
  })
  .map(({ mint, pre, start, body, exit, finale }) => ({
    mint,
    exit,
    steps: [...pre, ...(start ? [{ t: 'start', variant: start } as Step] : []), ...body, ...finale.steps],
    tags: [`start:${start ?? 'omitted'}`, `finale:${finale.name}`, ...(pre.some((s) => s.t === 'text' && String(s.raw).includes('"media"')) ? ['mediaBeforeStart'] : [])],
  }));

/** What the server must do with one socket, from the policy (stream-socket.ts, ws options) and the registry's token rules. */
interface Prediction {
  close: { code: number; reason: string | null } | null;
  acceptedCallSid: string | null;
  /** Messages the stream handler processed (before any close). */
  processed: number;
  counts: Record<CountedKey, number>;
}

/** Stream counters the model predicts exactly. */
const COUNTED = [
  'invalidTotal', 'accepted', 'rejected', 'duplicateStarts', 'binaryCloses', 'invalidCloses', 'mediaFrames', 'ignoredEvents', 'ignoredBeforeStart',
] as const;
type CountedKey = (typeof COUNTED)[number];

/** `owner`: the call the socket's (verified, first-use) path token was minted for. */
function predict(payloads: Payload[], owner: string): Prediction {
  const p: Prediction = { close: null, acceptedCallSid: null, processed: 0,
    counts: Object.fromEntries(COUNTED.map((k) => [k, 0])) as Record<CountedKey, number> };
  let started = false;
  let invalid = 0;
  const close = (code: number, reason: string | null) => { p.close = { code, reason }; };
  for (const m of payloads) {
    if (p.close) break;
    if (m.kind === 'binary') {
      p.processed++;
      p.counts.invalidTotal++;
      p.counts.binaryCloses++;
      close(1003, 'binary frame');
      continue;
    }
    if (m.kind === 'fragments' && m.parts > MAX_FRAGMENTS) { close(1008, null); continue; } // ws: too many fragments
    const bytes = m.bytes;
    if (bytes.length > MAX_PAYLOAD) { close(1009, null); continue; } // ws: maxPayload
    if (!isUtf8(bytes)) { close(1007, null); continue; } // ws: invalid UTF-8 in a text frame
    p.processed++;
    const r = parseInbound(bytes, false);
    if (r.kind === 'invalid') {
      p.counts.invalidTotal++;
      if (r.reason === 'mediaFormat') close(1008, 'unsupported media format');
      else if (++invalid >= 10) { p.counts.invalidCloses++; close(1008, 'too many invalid frames'); }
    } else if (r.kind === 'start') {
      if (started) { p.counts.duplicateStarts++; close(1008, 'duplicate start'); continue; }
      if (owner !== r.callSid) { p.counts.rejected++; close(1008, 'stream token belongs to another call'); continue; }
      if (r.accountSid !== TEST_ACCOUNT) { p.counts.rejected++; close(1008, 'stream from another account'); continue; }
      started = true;
      p.counts.accepted++;
      p.acceptedCallSid = owner;
    } else if (r.kind === 'ignored') {
      p.counts.ignoredEvents++;
    } else if (r.kind !== 'connected' && !started) {
      p.counts.ignoredBeforeStart++;
    } else if (r.kind === 'stop') {
      close(1000, 'stop');
    } else if (r.kind === 'media') {
      p.counts.mediaFrames++;
    }
  }
  return p;
}

type Payload = { kind: 'text'; bytes: Buffer } | { kind: 'fragments'; bytes: Buffer; parts: number } | { kind: 'binary'; bytes: Buffer };

const startFrame = (callSid: string, params: Record<string, string>, sampleRate = 8000, accountSid = TEST_ACCOUNT) => JSON.stringify({
  event: 'start', sequenceNumber: '1', streamSid: `MZ${randomBytes(16).toString('hex')}`,
  start: { accountSid, streamSid: `MZ${randomBytes(16).toString('hex')}`, callSid, tracks: ['inbound'],
    customParameters: params, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate, channels: 1 } },
});

describe('a storm of hostile frames over real sockets', () => {
  let engine: TestEngine;
  const counters = createStreamCounters();
  const crashes: unknown[] = [];
  const onCrash = (err: unknown) => crashes.push(err);

  beforeAll(async () => {
    process.on('uncaughtException', onCrash);
    process.on('unhandledRejection', onCrash);
    engine = await startEngine({
      providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: CPS }), agent: createFakeAgent() },
      prompts: await warmPrompts(),
      rest: restRecorder().rest,
      // A minted call whose stream never starts stays up for the machine's stream-start timeout
      // (60 s): the ten-times storm mints ~1,800 calls in about a minute, more than MAX_CALLS' 500.
      env: { TENANTS_DIR: TENANTS, ...(LONG ? { MAX_CALLS: '5000' } : {}) },
      // The storm holds up to 11 unstarted sockets, under the process's cap (which has its own test).
      streamOptions: { counters, startTimeoutMs: START_TIMEOUT_MS },
    });
  });
  afterAll(async () => {
    await engine.close();
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  });

  /** /twilio/voice signed like Twilio: a call in `connecting` and its one-time stream token (the Stream URL's last segment). */
  async function mint(callSid: string): Promise<string> {
    const res = await engine.app.inject(signedForm({
      baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/voice',
      params: { CallSid: callSid, AccountSid: TEST_ACCOUNT, From: nextCallerNumber(), To: QUICK_VET, CallStatus: 'ringing', Direction: 'inbound' },
    }));
    const token = /\/twilio\/ws\/([^/]+)$/.exec(parseTwiml(res.body, res.statusCode).stream?.url ?? '')?.[1];
    if (res.statusCode !== 200 || !token) throw new Error(`webhook answered ${res.statusCode} without a stream token`);
    return token;
  }

  /** A signed upgrade of `/twilio/ws/<token>`: the open socket, or the status it was refused with. */
  function connect(token: string): Promise<WebSocket | number> {
    const path = `/twilio/ws/${token}`;
    const ws = new WebSocket(`${engine.url.replace(/^http/, 'ws')}${path}`, {
      headers: { 'x-twilio-signature': wsSignature(TEST_BASE_URL, TEST_TOKEN, path) },
    });
    ws.on('error', () => undefined); // resets after a policy close are expected; the close code is what counts
    return new Promise((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('open', () => resolve(ws)).once('error', reject);
    });
  }
  async function opened(token: string): Promise<WebSocket> {
    const ws = await connect(token);
    if (typeof ws === 'number') throw new Error(`upgrade refused with ${ws}`);
    return ws;
  }

  type Closed = { code: number; reason: string } | 'timeout';
  const closed = (ws: WebSocket, timeoutMs: number) => new Promise<Closed>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), timeoutMs);
    ws.once('close', (code: number, reason: Buffer) => {
      clearTimeout(timer);
      resolve({ code, reason: reason.toString() });
    });
  });
  /** A ping is answered after every earlier frame was handled: pong means the socket is still open. */
  const stillOpen = (ws: WebSocket) => new Promise<boolean>((resolve) => {
    ws.once('pong', () => resolve(true)).once('close', () => resolve(false));
    ws.ping();
  });

  /** The peer leaves an open socket; the call (if any) must end either way (checked by the registry at the end). */
  function leave(ws: WebSocket, exit: Exit, callSid: string, end: Promise<Closed>): Promise<Closed> {
    if (exit === 'vanish') ws.terminate();
    else if (exit === 'close') ws.close(4000, 'bye');
    else {
      ws.send(JSON.stringify({ event: 'stop', sequenceNumber: '100', streamSid: 'MZ1', stop: { accountSid: TEST_ACCOUNT, callSid } }));
      ws.close(4000, 'bye'); // ignored by the server if its stop close (1000) came first
    }
    return end;
  }

  function send(ws: WebSocket, m: Payload): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (m.kind === 'binary') ws.send(m.bytes, { binary: true });
    else if (m.kind === 'text') ws.send(m.bytes, { binary: false });
    else {
      const size = Math.ceil(m.bytes.length / m.parts);
      for (let i = 0; i < m.parts; i++) {
        const part = m.bytes.subarray(Math.min(i * size, m.bytes.length), Math.min((i + 1) * size, m.bytes.length));
        ws.send(part, { binary: false, fin: i === m.parts - 1 });
      }
    }
  }

  it(`${TARGET_HANDLED.toLocaleString('en-US')}+ frames on ${LANES} sockets at a time: the process lives, every socket ends as predicted, nothing leaks, a clean call works after`, async () => {
    const sequences = fc.sample(sequenceArb, { seed: SEED, numRuns: SEQUENCES });
    let next = 0; // lanes take the next sequence until the target is reached
    const burned: string[] = []; // tokens of finished sequences: safe to replay
    const minted: { callSid: string; accepted: boolean }[] = [];
    const failures: string[] = [];
    const predicted = Object.fromEntries(COUNTED.map((k) => [k, 0])) as Record<CountedKey, number>;
    const tally = { sockets: 0, processed: 0, closes: {} as Record<string, number> };
    const before = { ...counters, invalid: { ...counters.invalid } };

    async function runOne(index: number, seq: Sequence): Promise<void> {
      const callSid = fc.sample(callSidArb, { seed: SEED + index, numRuns: 1 })[0] ?? `CA${'f'.repeat(32)}`;
      if (!seq.mint) {
        // A used token (replayed upgrade), a forged one (another call's payload under a used MAC) or garbage: 403 before the handshake.
        const used = burned[index % Math.max(1, burned.length)];
        const [payload = '', mac = ''] = (used ?? '').split('.');
        const forged = used === undefined ? 'never.minted' : `${Buffer.from(JSON.stringify({ ...(JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>), callSid })).toString('base64url')}.${mac}`;
        const bad = [used ?? 'never.minted', forged, randomBytes(24).toString('base64url')][index % 3] ?? 'x';
        const refused = await connect(bad);
        tally.sockets++;
        if (refused !== 403) failures.push(`sequence ${index} [${seq.tags.join(' ')}]: upgrade with a bad token got ${typeof refused === 'number' ? refused : 101}`);
        if (typeof refused !== 'number') refused.terminate();
        tally.closes['403'] = (tally.closes['403'] ?? 0) + 1;
        return;
      }
      const token = await mint(callSid);
      const startParams = (v: StartVariant): string => {
        switch (v) {
          case 'own': return startFrame(callSid, { tenantId: 'quick-vet' });
          case 'none': return startFrame(callSid, {});
          case 'random': return startFrame(callSid, { callToken: randomBytes(24).toString('base64url') });
          case 'burned': return startFrame(callSid, { callToken: burned[index % Math.max(1, burned.length)] ?? 'never-minted' });
          case 'otherCall': return startFrame(`CA${randomBytes(16).toString('hex')}`, { tenantId: 'quick-vet' });
          case 'otherAccount': return startFrame(callSid, { tenantId: 'quick-vet' }, 8000, `AC${'b'.repeat(32)}`);
          case 'badFormat': return startFrame(callSid, { tenantId: 'quick-vet' }, 16_000);
        }
      };
      const payloads: Payload[] = seq.steps.map((s): Payload => {
        switch (s.t) {
          case 'text': return { kind: 'text', bytes: wire(s.raw) };
          case 'start': return { kind: 'text', bytes: Buffer.from(startParams(s.variant)) };
          case 'stop': return { kind: 'text', bytes: Buffer.from(JSON.stringify({ event: 'stop', sequenceNumber: '99', streamSid: 'MZ1', stop: { accountSid: TEST_ACCOUNT, callSid } })) };
          case 'fragments': return { kind: 'fragments', bytes: Buffer.from(s.raw), parts: s.parts };
          case 'binary': return { kind: 'binary', bytes: Buffer.from(s.bytes) };
        }
      });
      const p = predict(payloads, callSid);
      for (const k of COUNTED) predicted[k] += p.counts[k];
      minted.push({ callSid, accepted: p.acceptedCallSid !== null });

      const ws = await opened(token);
      tally.sockets++;
      const openedAt = performance.now();
      const end = closed(ws, 5_000);
      for (const m of payloads) send(ws, m);
      tally.processed += p.processed;
      const fail = (what: string) => failures.push(`sequence ${index} [${seq.tags.join(' ')}]: ${what}`);
      let outcome: Closed;
      if (p.close) {
        outcome = await end;
        if (outcome === 'timeout') fail(`expected close ${p.close.code}, socket stayed open`);
        else if (outcome.code !== p.close.code || (p.close.reason !== null && outcome.reason !== p.close.reason)) {
          fail(`expected close ${p.close.code} ${p.close.reason ?? ''}, got ${outcome.code} ${outcome.reason}`);
        }
      } else if (await stillOpen(ws)) {
        if (p.acceptedCallSid !== null && engine.registry.session(p.acceptedCallSid)?.streamConnected !== true) fail('accepted stream has no live call');
        outcome = await leave(ws, seq.exit, callSid, end);
        const expected = seq.exit === 'vanish' ? 1006 : seq.exit === 'close' || p.acceptedCallSid === null ? 4000 : 1000;
        if (outcome === 'timeout' || outcome.code !== expected) fail(`${seq.exit} after the storm: ${JSON.stringify(outcome)}`);
        if (seq.exit === 'stop' && p.acceptedCallSid === null) predicted.ignoredBeforeStart++; // a stop before any start
      } else {
        outcome = await end;
        // The only close a socket predicted open may see: the start timeout, and only once it has passed.
        const late = performance.now() - openedAt >= START_TIMEOUT_MS - 50;
        if (outcome === 'timeout' || outcome.code !== 1008 || outcome.reason !== 'start timeout' || !late || p.acceptedCallSid !== null) {
          fail(`expected to stay open, got ${JSON.stringify(outcome)}`);
        }
      }
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
      const key = outcome === 'timeout' ? 'timeout' : String(outcome.code);
      tally.closes[key] = (tally.closes[key] ?? 0) + 1;
      burned.push(token);
    }

    // A socket that never sends `start` is closed by the start timeout (F5), storm or not.
    const silent = (async () => {
      const silentSid = `CA${randomBytes(16).toString('hex')}`;
      minted.push({ callSid: silentSid, accepted: false });
      const ws = await opened(await mint(silentSid));
      ws.send(JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }));
      return closed(ws, START_TIMEOUT_MS + 5_000);
    })();
    await Promise.all(Array.from({ length: LANES }, async () => {
      while (tally.processed < TARGET_HANDLED && next < sequences.length) {
        const i = next++;
        const seq = sequences[i];
        if (seq) await runOne(i, seq);
      }
    }));
    expect(await silent).toEqual({ code: 1008, reason: 'start timeout' });

    expect(failures).toEqual([]);
    expect(crashes).toEqual([]);
    // The socket policy's own count of what it saw matches the model's, frame for frame.
    expect(Object.fromEntries(COUNTED.map((k) => [k, counters[k] - before[k]]))).toEqual(predicted);
    expect(counters.handlerErrors - before.handlerErrors).toBe(0);
    expect(counters.startTimeouts - before.startTimeouts).toBe(1);

    // Calls whose stream was refused are still waiting for it: Twilio's final status ends them. The
    // accepted ones must have ended on their own when their socket closed.
    for (const c of minted.filter((m) => !m.accepted)) {
      const res = await engine.app.inject(signedForm({
        baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path: '/twilio/status',
        params: { CallSid: c.callSid, AccountSid: TEST_ACCOUNT, CallStatus: 'completed', SequenceNumber: '0' },
      }));
      expect(res.statusCode).toBe(200);
    }
    await expect.poll(() => engine.registry.activeCount, { timeout: 5_000, interval: 50 }).toBe(0);
    expect(engine.registry.list()).toEqual([]);

    // After the storm, a genuine call is answered: greeting audio arrives, a hang-up ends it.
    const call = await FakeTwilio.call({
      serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber(),
    });
    try {
      await call.waitFor((c) => c.outbound.some((o) => o.message?.event === 'media'), 5_000, 'greeting audio');
      await call.waitFor(() => engine.registry.list().find((c) => c.callSid === call.callSid)?.state === 'listening.waiting', 8_000, 'the greeting to finish');
      expect(call.protocolErrors).toEqual([]);
      expect(call.heardMs()).toBeGreaterThan(0);
      await call.hangUp();
      expect(call.closed?.code).toBe(1000);
      await expect.poll(() => engine.registry.activeCount, { timeout: 3_000, interval: 50 }).toBe(0);
    } finally {
      await call.dispose();
    }
    expect(crashes).toEqual([]);

    // docs/reliability.md's figures: over 10,000 frames on over 200 sockets, every close code the policy has.
    expect(tally.processed).toBeGreaterThanOrEqual(TARGET_HANDLED);
    expect(tally.sockets).toBeGreaterThanOrEqual(MIN_SOCKETS);
    expect(Object.keys(tally.closes).sort()).toEqual(expect.arrayContaining(['1000', '1003', '1007', '1008', '1009', '403']));
  }, sized(50_000, 900_000));
});
