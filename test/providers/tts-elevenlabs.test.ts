import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/providers/errors.js';
import { createElevenLabsTts, loadElevenLabs, type ElevenLabsTts } from '../../src/providers/tts/elevenlabs.js';
import { createElevenLabsWsTts } from '../../src/providers/tts/elevenlabs-ws.js';
import type { FaultPlan } from '../fakes/fault-plan.js';
import { FAKE_ELEVENLABS_KEY, fakeAudio, startElevenLabsFake, type FakeElevenLabs } from '../fakes/elevenlabs-server.js';

const TEXT = 'Thanks for calling Riverside Vet.';
const VOICE = 'cloudVoice00000000001';
const DEFAULT_VOICE = 'defaultVoice00000002';
let fake: FakeElevenLabs;

beforeAll(async () => {
  fake = await startElevenLabsFake();
  await loadElevenLabs(); // 1–2 s import, kept out of the timed assertions
});
afterEach(() => fake.faults.clear());
afterAll(() => fake.close());

const variants = {
  http: (apiKey = FAKE_ELEVENLABS_KEY) => createElevenLabsTts({ apiKey, baseUrl: fake.url, defaultVoice: DEFAULT_VOICE }),
  ws: (apiKey = FAKE_ELEVENLABS_KEY) => createElevenLabsWsTts({ apiKey, baseUrl: fake.url, defaultVoice: DEFAULT_VOICE }),
};

interface Run {
  chunks: Uint8Array[];
  error: unknown;
  /** Chunks delivered after the signal was aborted (must stay 0). */
  afterAbort: number;
}

/** Consumes one synthesize call; `onChunk` may abort. Never throws: the error is returned. */
async function run(tts: ElevenLabsTts, text: string, ac = new AbortController(), onChunk?: (n: number) => void, voice = VOICE): Promise<Run> {
  const r: Run = { chunks: [], error: null, afterAbort: 0 };
  try {
    for await (const c of tts.synthesize(text, { voice, language: 'en-US', signal: ac.signal })) {
      if (ac.signal.aborted) r.afterAbort += 1;
      r.chunks.push(c);
      onChunk?.(r.chunks.length);
    }
  } catch (err) {
    r.error = err;
  }
  return r;
}

const concat = (chunks: Uint8Array[]) => Buffer.concat(chunks.map((c) => Buffer.from(c)));
const requestsSoFar = () => fake.requests.length;

describe.each(['http', 'ws'] as const)('ElevenLabs TTS over %s, real client against the fake', (variant) => {
  const make = variants[variant];

  it('streams the fake audio for the text as μ-law 8 kHz with the low-latency model and the cloud voice', async () => {
    const tts = make();
    const before = requestsSoFar();
    const r = await run(tts, TEXT);
    expect(r.error).toBeNull();
    const req = fake.requests[before]!;
    expect(req).toMatchObject({ transport: variant, voice: VOICE, model: 'eleven_flash_v2_5', format: 'ulaw_8000', language: 'en' });
    expect(req).toMatchObject({ keyPresent: true, authorized: true, finished: true, disconnected: false });
    expect(req.text.trim()).toBe(TEXT);
    expect(concat(r.chunks).equals(Buffer.from(fakeAudio(req.text)))).toBe(true);
    expect(tts.characters).toBe(TEXT.length);
    expect(tts.name).toBe('elevenlabs');
  });

  it('falls back to the default voice when given none or a local flite voice', async () => {
    const tts = make();
    const before = requestsSoFar();
    expect((await run(tts, 'One.', undefined, undefined, 'kal')).error).toBeNull();
    expect((await run(tts, 'Two.', undefined, undefined, '')).error).toBeNull();
    expect(fake.requests.slice(before).map((r) => r.voice)).toEqual([DEFAULT_VOICE, DEFAULT_VOICE]);
  });

  it('yields each chunk as it arrives, before the server has finished', async () => {
    fake.faults.push({ chunkDelayMs: 60 });
    const before = requestsSoFar();
    let finishedAtFirstChunk: boolean | null = null;
    const r = await run(make(), TEXT, undefined, (n) => {
      if (n === 1) finishedAtFirstChunk = fake.requests[before]!.finished;
    });
    expect(r.error).toBeNull();
    expect(finishedAtFirstChunk).toBe(false);
    expect(r.chunks.length).toBeGreaterThan(5);
  });

  it('abort mid-stream: the iterable ends quietly, nothing after the abort, the server sees the disconnect', async () => {
    fake.faults.push({ chunkDelayMs: 40 });
    const before = requestsSoFar();
    const ac = new AbortController();
    const r = await run(make(), TEXT, ac, (n) => n === 2 && ac.abort());
    expect(r.error).toBeNull();
    expect(r.chunks).toHaveLength(2);
    expect(r.afterAbort).toBe(0);
    const req = await fake.waitFor(before + 1, (q) => q.disconnected);
    expect(req.finished).toBe(false);
  });

  it('a consumer that stops early (break) cancels the request', async () => {
    fake.faults.push({ chunkDelayMs: 40 });
    const before = requestsSoFar();
    for await (const chunk of make().synthesize(TEXT, { voice: VOICE, language: 'en-US', signal: new AbortController().signal })) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    const req = await fake.waitFor(before + 1, (q) => q.disconnected);
    expect(req.finished).toBe(false);
  });

  it('abort before the first byte ends the iterable at once, without an error', async () => {
    fake.faults.push({ firstByteMs: 3_000 });
    const before = requestsSoFar();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const t0 = performance.now();
    const r = await run(make(), TEXT, ac);
    expect(r.error).toBeNull();
    expect(r.chunks).toHaveLength(0);
    expect(performance.now() - t0).toBeLessThan(2_500); // the fake would answer only after 3 s
    await fake.waitFor(before + 1, (q) => q.disconnected);
  });

  it('an already aborted signal sends nothing', async () => {
    const ac = new AbortController();
    ac.abort();
    const before = requestsSoFar();
    const r = await run(make(), TEXT, ac);
    expect(r).toMatchObject({ chunks: [], error: null });
    expect(requestsSoFar()).toBe(before);
  });

  it.each([
    ['a wrong key', 401, 'auth'],
    ['429', 429, 'quota'],
    ['500', 500, 'http'],
    ['503', 503, 'http'],
  ] as const)('%s → ProviderError %s/%s', async (_label, status, failure) => {
    const wrongKey = status === 401;
    if (!wrongKey) fake.faults.push({ status, retryAfterS: 2 });
    const r = await run(make(wrongKey ? 'not-the-key-0000' : FAKE_ELEVENLABS_KEY), TEXT);
    expect(r.chunks).toHaveLength(0);
    expect(r.error).toBeInstanceOf(ProviderError);
    expect(r.error).toMatchObject({ provider: 'elevenlabs', failure, status });
    expect((r.error as ProviderError).transient).toBe(failure !== 'auth');
  });

  it('a connection dropped mid-stream → network, after the chunks that did arrive', async () => {
    fake.faults.push({ chunkDelayMs: 30, dropAfterChunks: 3 });
    const r = await run(make(), TEXT);
    expect(r.error).toMatchObject({ provider: 'elevenlabs', failure: 'network' });
    expect(r.chunks.length).toBeGreaterThan(0);
    expect(r.chunks.length).toBeLessThanOrEqual(3);
  });

  it('a malformed chunk → protocol', async () => {
    fake.faults.push({ chunkDelayMs: 30, malformedAfterChunks: 2 });
    const r = await run(make(), TEXT);
    expect(r.error).toMatchObject({ provider: 'elevenlabs', failure: 'protocol' });
    expect(r.chunks.length).toBeLessThanOrEqual(2);
  });

  it('a stalled stream ends promptly when the watchdog aborts, without an error', async () => {
    fake.faults.push({ chunkDelayMs: 20, stallAfterChunks: 2 });
    const before = requestsSoFar();
    const ac = new AbortController();
    let abortedAt = 0;
    const r = await run(make(), TEXT, ac, (n) => {
      if (n === 2)
        setTimeout(() => {
          abortedAt = performance.now();
          ac.abort(new Error('no data for 300 ms'));
        }, 300);
    });
    expect(r.error).toBeNull();
    expect(r.chunks).toHaveLength(2);
    expect(performance.now() - abortedAt).toBeLessThan(1_000);
    await fake.waitFor(before + 1, (q) => q.disconnected);
  });

  it('never puts the key into errors or output', async () => {
    const writes: string[] = [];
    const spy = (orig: typeof process.stdout.write) =>
      ((chunk: string | Uint8Array, ...rest: never[]) => {
        writes.push(String(chunk));
        return orig(chunk, ...rest);
      }) as typeof process.stdout.write;
    const [out, err] = [process.stdout.write.bind(process.stdout), process.stderr.write.bind(process.stderr)];
    process.stdout.write = spy(out);
    process.stderr.write = spy(err);
    const plans: FaultPlan[] = [{ status: 401 }, { status: 429 }, { status: 500 }, { dropAfterChunks: 1, chunkDelayMs: 10 }, { malformedAfterChunks: 1 }];
    const errors: unknown[] = [];
    try {
      for (const plan of plans) {
        fake.faults.push(plan);
        errors.push((await run(make(), TEXT)).error);
      }
    } finally {
      process.stdout.write = out;
      process.stderr.write = err;
    }
    expect(errors.every((e) => e instanceof ProviderError)).toBe(true);
    for (const e of errors) expect(inspect(e, { depth: 8 })).not.toContain(FAKE_ELEVENLABS_KEY);
    expect(writes.join('')).not.toContain(FAKE_ELEVENLABS_KEY);
  });
});

describe('ElevenLabs stream-input WebSocket specifics', () => {
  const tokens = async function* (text: string, everyMs: number) {
    for (const t of text.match(/\S+\s*|\s+/g) ?? []) {
      await new Promise((r) => setTimeout(r, everyMs));
      yield t;
    }
  };

  it('follows the documented message sequence: init space, text ending in a space, empty text to close', async () => {
    const before = requestsSoFar();
    const r = await run(variants.ws(), TEXT);
    expect(r.error).toBeNull();
    const req = fake.requests[before]!;
    expect(req.autoMode).toBe(true);
    expect(req.messages).toEqual([{ text: ' ' }, { text: `${TEXT} ` }, { text: '' }]);
    // The key travels in the handshake header only.
    expect(JSON.stringify(req.messages)).not.toContain(FAKE_ELEVENLABS_KEY);
  });

  it('takes a token stream on one socket and starts the audio before the text is complete', async () => {
    const reply = 'Sure, I can help with that. What is your pet called?';
    const tts = createElevenLabsWsTts({ apiKey: FAKE_ELEVENLABS_KEY, baseUrl: fake.url, defaultVoice: DEFAULT_VOICE });
    const before = requestsSoFar();
    let tokensLeftAtFirstAudio = -1;
    let sent = 0;
    const total = (reply.match(/\S+\s*|\s+/g) ?? []).length;
    const counted = async function* () {
      for await (const t of tokens(reply, 30)) {
        sent += 1;
        yield t;
      }
    };
    const chunks: Uint8Array[] = [];
    for await (const c of tts.synthesizeStream(counted(), { voice: VOICE, language: 'en-US', signal: new AbortController().signal })) {
      if (chunks.length === 0) tokensLeftAtFirstAudio = total - sent;
      chunks.push(c);
    }
    expect(tokensLeftAtFirstAudio).toBeGreaterThan(0);
    const req = fake.requests[before]!;
    expect(req.autoMode).toBe(false);
    expect(req.text.replace(/\s+/g, ' ').trim()).toBe(reply);
    // Whole words as they complete; the sentence end is flushed so it need not wait for the schedule.
    expect(req.messages.slice(1, 7)).toEqual([
      { text: 'Sure, ' },
      { text: 'I ' },
      { text: 'can ' },
      { text: 'help ' },
      { text: 'with ' },
      { text: 'that. ', flush: true },
    ]);
    expect(req.messages.at(-1)).toEqual({ text: '' });
    expect(concat(chunks).equals(Buffer.from(fakeAudio(req.text)))).toBe(true);
    expect(tts.characters).toBe(reply.length);
  });
});
