import OpenAI from 'openai';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeUlaw, encodeUlaw } from '../../src/audio/ulaw.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createOpenAiStt, realtimeUrl } from '../../src/providers/stt/openai.js';
import { createOpenAiBatchStt, transcribeUlaw, vocabularyPrompt } from '../../src/providers/stt/openai-batch.js';
import type { SttProvider, SttStream } from '../../src/providers/stt/types.js';
import { FAKE_OPENAI_KEY, startFakeOpenAiTranscription } from '../fakes/openai-transcription-server.js';
import type { FakeOpenAiTranscription } from '../fakes/openai-transcription-server.js';

const FRAME = 160;
/** Sample values chosen so each kind of audio is recognisable in what the fake received. */
const QUIET = 40;
const SPEECH = 6000;
const VOCAB = ['Riverside Vet Clinic', 'Dr. Priya Patel', 'Emily Stone', 'vaccinations', 'Bella'];

let fake: FakeOpenAiTranscription;
const streams: SttStream[] = [];
/** Everything the SDK or the adapters print, checked for the key. */
const printed: string[] = [];

beforeEach(async () => {
  fake = await startFakeOpenAiTranscription({ finalMs: 150 });
  printed.length = 0;
  for (const m of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    vi.spyOn(console, m).mockImplementation((...args: unknown[]) => void printed.push(args.map(String).join(' ')));
  }
  vi.spyOn(process, 'emitWarning').mockImplementation((w: string | Error) => void printed.push(String(w)));
});

afterEach(async () => {
  for (const s of streams.splice(0)) s.close();
  vi.restoreAllMocks();
  await fake.close();
});

interface Heard {
  stream: SttStream;
  ac: AbortController;
  /** Callbacks in order: `partial:…`, `final:…`, `error:…`. */
  log: string[];
  finals: string[];
  errors: Error[];
}

function listen(provider: SttProvider): Heard {
  const ac = new AbortController();
  const h: Heard = { stream: undefined as unknown as SttStream, ac, log: [], finals: [], errors: [] };
  h.stream = provider.open({
    language: 'en-US', vocabulary: VOCAB, signal: ac.signal,
    onPartial: (t) => h.log.push(`partial:${t}`),
    onFinal: (t, c) => { h.log.push(`final:${t}`); h.finals.push(t); expect(c).toBeNull(); },
    onError: (e) => { h.log.push(`error:${e.message}`); h.errors.push(e); },
  });
  streams.push(h.stream);
  return h;
}

function play(s: SttStream, ms: number, value: number): void {
  for (let t = 0; t < ms; t += 20) s.write(new Int16Array(FRAME).fill(value));
}

/** Quiet, then a segment of speech the VAD marks, then quiet: the way a call drives the stream. */
function utterance(s: SttStream, speechMs: number, quietBeforeMs = 600): void {
  play(s, quietBeforeMs, QUIET);
  s.speechStarted();
  play(s, speechMs, SPEECH);
  s.speechEnded();
  play(s, 200, QUIET);
}

const realtime = (extra: Partial<Parameters<typeof createOpenAiStt>[0]> = {}) =>
  createOpenAiStt({ apiKey: FAKE_OPENAI_KEY, baseUrl: fake.httpUrl, ...extra });
const batch = (extra: Partial<Parameters<typeof createOpenAiBatchStt>[0]> = {}) =>
  createOpenAiBatchStt({ apiKey: FAKE_OPENAI_KEY, baseUrl: fake.httpUrl, ...extra });

const until = (check: () => void, timeout = 5000) => vi.waitFor(check, { timeout, interval: 10 });

function expectFailure(e: Error | undefined, failure: string, status: number | null = null): void {
  expect(e).toBeInstanceOf(ProviderError);
  expect(e).toMatchObject({ provider: 'openai', failure, status });
}

/** The key appears nowhere: errors (message, string, JSON, stack) and anything printed. */
function expectNoKey(errors: readonly Error[], key = FAKE_OPENAI_KEY): void {
  const text = [...errors.map((e) => `${String(e)} ${e.stack ?? ''} ${JSON.stringify(e)} ${String(e.cause)}`), ...printed].join('\n');
  expect(text).not.toContain(key);
  expect(text).not.toContain(key.slice(-12));
}

describe('realtime transcription session', () => {
  it('connects as a transcription session with μ-law in, no server VAD and the vocabulary as prompt', async () => {
    const h = listen(realtime());
    await until(() => expect(fake.sessions[0]?.updates).toHaveLength(1));
    const s = fake.sessions[0]!;
    expect(s.authorized).toBe(true);
    expect(s.query).toEqual({ intent: 'transcription' });
    expect(s.updates[0]).toEqual({
      type: 'transcription',
      audio: { input: { format: { type: 'audio/pcmu' }, transcription: { model: 'gpt-4o-mini-transcribe', language: 'en', prompt: vocabularyPrompt(VOCAB) }, turn_detection: null } },
    });
    for (const term of VOCAB) expect(vocabularyPrompt(VOCAB)).toContain(term);
    expect(s.config.audio.input.turn_detection).toBeNull();
    expect(h.log).toEqual([]);
  });

  it('streams partials, then exactly one final per utterance', async () => {
    fake.responder = () => 'I need a refill for Bella';
    const h = listen(realtime());
    utterance(h.stream, 600);
    await until(() => expect(h.finals).toHaveLength(1));
    await new Promise((r) => setTimeout(r, fake.finalMs + 100)); // nothing else arrives
    expect(h.log).toEqual([
      'partial:I', 'partial:I need', 'partial:I need a', 'partial:I need a refill', 'partial:I need a refill for',
      'partial:I need a refill for Bella', 'final:I need a refill for Bella',
    ]);
    expect(fake.sessions[0]!.commits).toHaveLength(1);
  });

  it('sends only the speech segment plus 300 ms of pre-roll, as μ-law', async () => {
    const h = listen(realtime());
    play(h.stream, 1000, QUIET);
    await new Promise((r) => setTimeout(r, 100));
    expect(fake.sessions[0]!.appendedBytes).toBe(0); // nothing before speech
    h.stream.speechStarted();
    play(h.stream, 500, SPEECH);
    h.stream.speechEnded();
    play(h.stream, 1000, QUIET);
    await until(() => expect(h.finals).toHaveLength(1));
    const s = fake.sessions[0]!;
    expect(s.appendedBytes).toBe((300 + 500) * 8);
    const pcm = decodeUlaw(s.commits[0]!.ulaw);
    expect(pcm.slice(0, 300 * 8).every((v) => Math.abs(v - QUIET) < 4)).toBe(true);
    expect(pcm.slice(300 * 8).every((v) => Math.abs(v - SPEECH) < 200)).toBe(true);
    expect(s.events.filter((e) => e === 'input_audio_buffer.append').length).toBeLessThanOrEqual(9); // 100 ms appends, not 20 ms
  });

  it('keeps finals in order when the next utterance starts before the previous final', async () => {
    let n = 0;
    fake.responder = () => `utterance ${++n}`;
    fake.finalMs = 400;
    const h = listen(realtime());
    utterance(h.stream, 400);
    utterance(h.stream, 400, 100);
    await until(() => expect(h.finals).toEqual(['utterance 1', 'utterance 2']));
    const first = h.log.indexOf('final:utterance 1');
    expect(h.log.findIndex((l) => l.startsWith('partial:utterance 2'))).toBeGreaterThan(first);
    expect(fake.sessions).toHaveLength(1);
    expect(fake.sessions[0]!.commits.map((c) => c.ms)).toEqual([700, 700]);
  });

  it('drops a too-short segment without a commit: empty final', async () => {
    const h = listen(realtime());
    utterance(h.stream, 100);
    h.stream.speechEnded(); // no segment open
    expect(h.log).toEqual(['final:', 'final:']);
    await until(() => expect(fake.sessions[0]?.clears).toBe(1));
    expect(fake.sessions[0]!.commits).toHaveLength(0);
  });

  it('abort closes the socket and silences the stream', async () => {
    const h = listen(realtime());
    utterance(h.stream, 400);
    await until(() => expect(fake.sessions[0]?.commits).toHaveLength(1));
    h.ac.abort();
    await until(() => expect(fake.sessions[0]!.closedBy).toBe('client'));
    expect(fake.sessions[0]!.closeCode).toBe(1000);
    utterance(h.stream, 400);
    await new Promise((r) => setTimeout(r, fake.finalMs + 150));
    expect(h.log).toEqual([]);
  });

  it('close() while connecting: nothing sent, no callbacks', async () => {
    fake.faults.push({ firstByteMs: 150 });
    const h = listen(realtime());
    await until(() => expect(fake.sessions).toHaveLength(1));
    h.stream.close();
    utterance(h.stream, 400);
    await new Promise((r) => setTimeout(r, 300));
    expect(h.log).toEqual([]);
    expect(fake.sessions[0]!.events).toEqual([]);
  });

  it('a wrong key: 401 at the upgrade → auth, and the key is never shown', async () => {
    const wrong = 'sk-wrong-key-for-this-test-WRONGCANARY';
    const h = listen(createOpenAiStt({ apiKey: wrong, baseUrl: fake.httpUrl }));
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'auth', 401);
    expect(fake.sessions[0]).toMatchObject({ authorized: false, status: 401 });
    utterance(h.stream, 400);
    expect(h.log).toHaveLength(1);
    expectNoKey(h.errors, wrong);
  });

  it('429 at the upgrade → quota', async () => {
    fake.faults.push({ status: 429, retryAfterS: 2 });
    const h = listen(realtime());
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'quota', 429);
    expectNoKey(h.errors);
  });

  it('the server drops the connection mid-utterance → network, once', async () => {
    fake.faults.push({ dropAfterChunks: 5 }); // created, updated, committed, item.added, one delta
    const h = listen(realtime());
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'network');
    expect(h.log).toEqual(['partial:I', h.log[1]]);
    expect(fake.sessions[0]!.closedBy).toBe('server');
    utterance(h.stream, 400);
    await new Promise((r) => setTimeout(r, 100));
    expect(h.errors).toHaveLength(1);
    expectNoKey(h.errors);
  });

  it('a malformed event → protocol', async () => {
    fake.faults.push({ malformedAfterChunks: 2 });
    const h = listen(realtime());
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'protocol');
    expect(h.finals).toEqual([]);
    await until(() => expect(fake.sessions[0]!.closedBy).toBe('client'));
  });

  it('no final within the budget → timeout', async () => {
    fake.faults.push({ stallAfterChunks: 4 });
    const h = listen(realtime({ finalTimeoutMs: 400 }));
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'timeout');
    expect(h.log.some((l) => l.startsWith('final:'))).toBe(false);
  });

  it('a refused port → network', async () => {
    const url = fake.httpUrl;
    await fake.close();
    fake = await startFakeOpenAiTranscription();
    const h = listen(createOpenAiStt({ apiKey: FAKE_OPENAI_KEY, baseUrl: url }));
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'network');
  });

  it('derives the WebSocket URL from the API base', () => {
    expect(realtimeUrl(null)).toBe('wss://api.openai.com/v1/realtime?intent=transcription');
    expect(realtimeUrl('http://127.0.0.1:9/v1/')).toBe('ws://127.0.0.1:9/v1/realtime?intent=transcription');
  });

  it('mode batch gives the batch provider', () => {
    expect(createOpenAiStt({ apiKey: FAKE_OPENAI_KEY, mode: 'batch' }).name).toBe('openai-batch');
    expect(realtime().name).toBe('openai');
  });
});

describe('batch transcription through the openai SDK', () => {
  const client = () => new OpenAI({ apiKey: FAKE_OPENAI_KEY, baseURL: fake.httpUrl, maxRetries: 0 });

  it('uploads an 8 kHz mono PCM16 WAV with model, language and prompt', async () => {
    const ulaw = encodeUlaw(Int16Array.from({ length: 4000 }, (_, i) => Math.round(8000 * Math.sin(i / 5))));
    let heard: Uint8Array | null = null;
    fake.responder = ({ ulaw: got, ms }) => { heard = got; return ` ${ms} ms heard `; };
    const text = await transcribeUlaw(client(), ulaw, { model: 'gpt-4o-mini-transcribe', language: 'en-US', prompt: 'Bella', signal: new AbortController().signal });
    expect(text).toBe('500 ms heard');
    expect(fake.requests[0]).toMatchObject({ model: 'gpt-4o-mini-transcribe', language: 'en', prompt: 'Bella', responseFormat: 'json',
      wav: { sampleRate: 8000, channels: 1, bitDepth: '16', ms: 500 }, status: 200 });
    expect(heard).toEqual(encodeUlaw(decodeUlaw(ulaw)));
  });

  it('buffers the segment with pre-roll and gives one final per utterance, in order', async () => {
    fake.faults.push({ firstByteMs: 400 }); // the first answer comes after the second
    let n = 0;
    fake.responder = ({ ms }) => `utterance ${++n}: ${ms} ms`;
    const h = listen(batch());
    utterance(h.stream, 500);
    utterance(h.stream, 300, 100);
    await until(() => expect(h.finals).toHaveLength(2));
    expect(h.finals).toEqual(['utterance 2: 800 ms', 'utterance 1: 600 ms']); // numbered as answered; finals keep speech order
    expect(fake.requests.map((r) => r.prompt)).toEqual([vocabularyPrompt(VOCAB), vocabularyPrompt(VOCAB)]);
  });

  it('a segment under 150 ms → empty final without a request', async () => {
    const h = listen(batch());
    utterance(h.stream, 100);
    await until(() => expect(h.finals).toEqual(['']));
    expect(fake.requests).toHaveLength(0);
  });

  it('abort cancels the request in flight: no callback', async () => {
    fake.faults.push({ firstByteMs: 300 });
    const h = listen(batch());
    utterance(h.stream, 400);
    await until(() => expect(fake.requests).toHaveLength(1));
    h.ac.abort();
    await new Promise((r) => setTimeout(r, 500));
    expect(h.log).toEqual([]);
  });

  it.each([
    [{ status: 429 as const, retryAfterS: 1 }, 'quota', 429],
    [{ status: 500 as const }, 'http', 500],
    [{ status: 503 as const }, 'http', 503],
    [{ status: 401 as const }, 'auth', 401],
    [{ malformedAfterChunks: 1 }, 'protocol', null],
    [{ dropAfterChunks: 1 }, 'network', null],
  ])('fault %j → ProviderError %s', async (plan, failure, status) => {
    fake.faults.push(plan);
    const h = listen(batch());
    utterance(h.stream, 400);
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], failure, status);
    await new Promise((r) => setTimeout(r, 100));
    expect(h.log).toHaveLength(1); // the utterance after the failure reports nothing
    expectNoKey(h.errors);
  });

  it('a stalled response → timeout', async () => {
    fake.faults.push({ stallAfterChunks: 1 });
    const h = listen(batch({ timeoutMs: 400 }));
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'timeout');
  });

  it('a wrong key → auth; the key is in neither the error nor the output', async () => {
    const wrong = 'sk-wrong-batch-key-WRONGCANARY-0001';
    const h = listen(createOpenAiBatchStt({ apiKey: wrong, baseUrl: fake.httpUrl }));
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'auth', 401);
    expect(h.errors[0]!.message).toContain('invalid_api_key');
    expectNoKey(h.errors, wrong);
  });

  it('bounds the vocabulary prompt', () => {
    const many = Array.from({ length: 500 }, (_, i) => `Term${i}`);
    const p = vocabularyPrompt([...many, ' term0 ', '']);
    expect(p.length).toBeLessThanOrEqual(600);
    expect(p).toContain('Term0, Term1,');
    expect(p.match(/term0\b/gi)).toHaveLength(1);
    expect(vocabularyPrompt([])).toBe('');
  });
});
