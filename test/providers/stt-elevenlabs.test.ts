/**
 * The ElevenLabs Scribe Realtime adapter through its real client code (ws) against the wire-level
 * fake (test/fakes/elevenlabs-scribe-server.ts): what goes on the wire, partials while the caller
 * talks, one final per commit in order, the keep-alive, and every failure mapped once.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { decodeUlaw } from '../../src/audio/ulaw.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createElevenLabsStt, scribeUrl } from '../../src/providers/stt/elevenlabs.js';
import type { SttProvider, SttStream } from '../../src/providers/stt/types.js';
import { vocabularyKeyterms } from '../../src/providers/stt/vocabulary.js';
import { FAKE_SCRIBE_KEY, startFakeScribe, type FakeScribe } from '../fakes/elevenlabs-scribe-server.js';

const FRAME = 160;
/** Sample values chosen so each kind of audio is recognisable in what the fake received. */
const QUIET = 40;
const SPEECH = 6000;
const VOCAB = ['Riverside Veterinary Clinic', 'Dr. Priya Patel', 'Emily', 'bleeding', 'vaccinations', 'Bella'];

let fake: FakeScribe;
const streams: SttStream[] = [];
const printed: string[] = [];

beforeEach(async () => {
  // Short, steady vendor delays so each test runs in well under a second of audio.
  fake = await startFakeScribe({ finalMs: 120, partialMs: 60, jitterMs: 10, wordMs: 200 });
  printed.length = 0;
  for (const m of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    vi.spyOn(console, m).mockImplementation((...args: unknown[]) => void printed.push(args.map(String).join(' ')));
  }
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

const scribe = (extra: Partial<Parameters<typeof createElevenLabsStt>[0]> = {}) =>
  createElevenLabsStt({ apiKey: FAKE_SCRIBE_KEY, baseUrl: fake.url, ...extra });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = (check: () => void, timeout = 5000) => vi.waitFor(check, { timeout, interval: 10 });

/** Writes 20 ms frames at once (audio already buffered). */
function play(s: SttStream, ms: number, value: number): void {
  for (let t = 0; t < ms; t += 20) s.write(new Int16Array(FRAME).fill(value));
}

/** Writes 20 ms frames in real time, the way a call delivers them. */
async function talk(s: SttStream, ms: number, value = SPEECH): Promise<void> {
  for (let t = 0; t < ms; t += 20) {
    s.write(new Int16Array(FRAME).fill(value));
    await sleep(20);
  }
}

/** Quiet, then a segment of speech the VAD marks, then quiet (buffered, not real time). */
function utterance(s: SttStream, speechMs: number, quietBeforeMs = 600): void {
  play(s, quietBeforeMs, QUIET);
  s.speechStarted();
  play(s, speechMs, SPEECH);
  s.speechEnded();
  play(s, 200, QUIET);
}

function expectFailure(e: Error | undefined, failure: string, status: number | null = null): void {
  expect(e).toBeInstanceOf(ProviderError);
  expect(e).toMatchObject({ provider: 'elevenlabs', failure, status });
}

/** The key appears nowhere: errors (message, string, JSON, stack) and anything printed. */
function expectNoKey(errors: readonly Error[], key = FAKE_SCRIBE_KEY): void {
  const text = [...errors.map((e) => `${String(e)} ${e.stack ?? ''} ${JSON.stringify(e)} ${String(e.cause)}`), ...printed].join('\n');
  expect(text).not.toContain(key);
  expect(text).not.toContain(key.slice(-12));
}

describe('Scribe realtime session', () => {
  it('connects with μ-law 8 kHz, manual commits, the language and the vocabulary as keyterms; the key only in the header', async () => {
    const h = listen(scribe());
    await until(() => expect(fake.sessions).toHaveLength(1));
    const s = fake.sessions[0]!;
    expect(s.authorized).toBe(true);
    expect(s.query).toMatchObject({ model_id: 'scribe_v2_realtime', audio_format: 'ulaw_8000', commit_strategy: 'manual', language_code: 'en' });
    expect(s.keyterms).toEqual(vocabularyKeyterms(VOCAB));
    expect(s.keyterms).toEqual(expect.arrayContaining(['Riverside', 'Veterinary', 'Dr. Priya Patel', 'bleeding', 'Bella']));
    expect(JSON.stringify(s.query)).not.toContain(FAKE_SCRIBE_KEY);
    await sleep(100);
    expect(h.log).toEqual([]);
    expect(scribe({ keyterms: false }).name).toBe('elevenlabs');
  });

  it('partials arrive while the caller is still talking; the final after the commit', async () => {
    fake.responder = () => 'my dog is bleeding from his paw';
    const h = listen(scribe());
    play(h.stream, 400, QUIET);
    h.stream.speechStarted();
    await talk(h.stream, 1000);
    const beforeEnd = [...h.log];
    h.stream.speechEnded();
    await until(() => expect(h.finals).toHaveLength(1));
    // 1 s of speech at 200 ms a word: up to five words heard before the caller stopped.
    expect(beforeEnd.length).toBeGreaterThanOrEqual(3);
    expect(beforeEnd.every((l) => l.startsWith('partial:'))).toBe(true);
    expect(beforeEnd).toContain('partial:my dog is');
    expect(h.log.at(-1)).toBe('final:my dog is bleeding from his paw');
    expect(fake.sessions[0]!.commits).toHaveLength(1);
  });

  it('sends only the speech segment plus 300 ms of pre-roll, in 40 ms chunks, then one commit', async () => {
    const h = listen(scribe());
    play(h.stream, 1000, QUIET);
    await sleep(100);
    expect(fake.sessions[0]!.audioBytes).toBe(0); // nothing before speech
    h.stream.speechStarted();
    play(h.stream, 500, SPEECH);
    h.stream.speechEnded();
    play(h.stream, 1000, QUIET);
    await until(() => expect(h.finals).toHaveLength(1));
    const s = fake.sessions[0]!;
    expect(s.audioBytes).toBe((300 + 500) * 8);
    expect(new Set(s.sampleRates)).toEqual(new Set([8000]));
    expect(s.events.filter((e) => e === 'commit')).toHaveLength(1);
    expect(s.events.at(-1)).toBe('commit');
    // The pre-roll at once, 500 ms of speech in 40 ms chunks (12), the last frame with the commit: not one per 20 ms frame.
    expect(s.chunks).toBe(14);
    const pcm = decodeUlaw(s.commits[0]!.ulaw);
    expect(pcm.slice(0, 300 * 8).every((v) => Math.abs(v - QUIET) < 4)).toBe(true);
    expect(pcm.slice(300 * 8).every((v) => Math.abs(v - SPEECH) < 200)).toBe(true);
  });

  it('keeps finals in commit order when the next utterance starts before the previous final', async () => {
    let n = 0;
    fake.responder = () => `utterance ${++n}`;
    fake.finalMs = 300;
    const h = listen(scribe());
    utterance(h.stream, 400);
    utterance(h.stream, 400, 100);
    await until(() => expect(h.finals).toEqual(['utterance 1', 'utterance 2']));
    expect(fake.sessions).toHaveLength(1);
    expect(fake.sessions[0]!.commits.map((c) => c.ms)).toEqual([700, 700]);
  });

  it('an utterance with no speech in it commits an empty transcript; speechEnded with nothing open is an empty final', async () => {
    const h = listen(scribe());
    play(h.stream, 400, QUIET);
    h.stream.speechStarted();
    play(h.stream, 300, QUIET);
    h.stream.speechEnded();
    h.stream.speechEnded();
    await until(() => expect(h.finals).toEqual(['', '']));
  });

  it('passes on no partial outside an utterance: one arriving after the final is dropped', async () => {
    fake.responder = () => 'hello there';
    const h = listen(scribe());
    utterance(h.stream, 400);
    await until(() => expect(h.finals).toEqual(['hello there']));
    fake.inject({ message_type: 'partial_transcript', text: 'my dog is bleeding' }); // e.g. our own voice, transcribed
    await sleep(100);
    h.stream.speechStarted();
    fake.inject({ message_type: 'partial_transcript', text: 'my dog' }); // an utterance is open: passed on
    await until(() => expect(h.log).toContain('partial:my dog'));
    expect(h.log.slice(h.log.indexOf('final:hello there'))).toEqual(['final:hello there', 'partial:my dog']);
  });

  it('a quiet call keeps its session: silence every keepAliveMs, and without it the server closes', async () => {
    fake.idleTimeoutMs = 400;
    const kept = listen(scribe({ keepAliveMs: 150 }));
    const dropped = listen(scribe({ keepAliveMs: 5000 }));
    play(kept.stream, 200, QUIET);
    await sleep(1200);
    expect(kept.errors).toEqual([]);
    const s = fake.sessions.find((x) => x.chunks > 0)!;
    expect(s.chunks).toBeGreaterThanOrEqual(5);
    expect(s.commits).toEqual([]);
    expectFailure(dropped.errors[0], 'http');
    expect(dropped.errors[0]!.message).toContain('insufficient_audio_activity');
    // The kept session still transcribes.
    utterance(kept.stream, 400);
    await until(() => expect(kept.finals).toHaveLength(1));
  });

  it('abort closes the socket and silences the stream', async () => {
    const h = listen(scribe());
    utterance(h.stream, 400);
    await until(() => expect(fake.sessions[0]?.commits).toHaveLength(1));
    h.ac.abort();
    await until(() => expect(fake.sessions[0]!.closedBy).toBe('client'));
    expect(fake.sessions[0]!.closeCode).toBe(1000);
    utterance(h.stream, 400);
    await sleep(fake.finalMs + 150);
    expect(h.log).toEqual([]);
  });

  it('close() while connecting: nothing sent, no callbacks', async () => {
    fake.faults.push({ firstByteMs: 150 });
    const h = listen(scribe());
    await until(() => expect(fake.sessions).toHaveLength(1));
    h.stream.close();
    utterance(h.stream, 400);
    await sleep(300);
    expect(h.log).toEqual([]);
    expect(fake.sessions[0]!.events).toEqual([]);
  });
});

describe('Scribe failures', () => {
  it('a wrong key: 401 at the upgrade → auth, and the key is never shown', async () => {
    const wrong = 'wrong-xi-key-for-this-test-WRONGCANARY';
    const h = listen(createElevenLabsStt({ apiKey: wrong, baseUrl: fake.url }));
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'auth', 401);
    expect(fake.sessions[0]).toMatchObject({ authorized: false, status: 401 });
    utterance(h.stream, 400);
    expect(h.log).toHaveLength(1);
    expectNoKey(h.errors, wrong);
  });

  it.each([
    [{ status: 429 as const }, 'quota', 429],
    [{ status: 503 as const }, 'http', 503],
  ])('upgrade refused %j → %s', async (plan, failure, status) => {
    fake.faults.push(plan);
    const h = listen(scribe());
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], failure, status);
    expectNoKey(h.errors);
  });

  it.each([
    [{ type: 'auth_error', at: 'start' as const }, 'auth'],
    [{ type: 'quota_exceeded', at: 'commit' as const }, 'quota'],
    [{ type: 'rate_limited', at: 'commit' as const }, 'quota'],
    [{ type: 'transcriber_error', at: 'commit' as const }, 'http'],
  ])('the vendor\'s %j message → %s, once, without its text', async (inband, failure) => {
    fake.inband.push(inband);
    const h = listen(scribe());
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], failure);
    expect(h.errors[0]!.message).toContain(inband.type);
    expect(h.errors[0]!.message).not.toContain('Scripted');
    expect(h.finals).toEqual([]);
    utterance(h.stream, 400);
    await sleep(100);
    expect(h.errors).toHaveLength(1);
  });

  it('the server drops the connection mid-utterance → network, once', async () => {
    fake.responder = () => 'one two three four five six';
    fake.faults.push({ dropAfterChunks: 2 }); // session_started and one partial
    const h = listen(scribe());
    h.stream.speechStarted();
    await talk(h.stream, 1000);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'network');
    expect(h.log[0]).toBe('partial:one');
    expect(fake.sessions[0]!.closedBy).toBe('server');
    h.stream.speechEnded();
    utterance(h.stream, 400);
    await sleep(100);
    expect(h.errors).toHaveLength(1);
    expectNoKey(h.errors);
  });

  it('a malformed message → protocol', async () => {
    fake.faults.push({ malformedAfterChunks: 1 });
    const h = listen(scribe());
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'protocol');
    expect(h.finals).toEqual([]);
    await until(() => expect(fake.sessions[0]!.closedBy).toBe('client'));
  });

  it('no committed transcript within the budget → timeout', async () => {
    fake.faults.push({ stallAfterChunks: 1 });
    const h = listen(scribe({ finalTimeoutMs: 400 }));
    utterance(h.stream, 400);
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'timeout');
    expect(h.log.some((l) => l.startsWith('final:'))).toBe(false);
  });

  it('a refused port → network', async () => {
    const url = fake.url;
    await fake.close();
    fake = await startFakeScribe();
    const h = listen(createElevenLabsStt({ apiKey: FAKE_SCRIBE_KEY, baseUrl: url }));
    await until(() => expect(h.errors).toHaveLength(1));
    expectFailure(h.errors[0], 'network');
  });
});

describe('Scribe URL and keyterms', () => {
  it('derives the WebSocket URL from the API origin', () => {
    expect(scribeUrl(null, { model: 'scribe_v2_realtime', language: 'en', keyterms: [] }))
      .toBe('wss://api.elevenlabs.io/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=ulaw_8000&commit_strategy=manual&language_code=en');
    expect(scribeUrl('http://127.0.0.1:9/', { model: 'm', language: '', keyterms: ['Dr. Patel', 'a b'] }))
      .toBe('ws://127.0.0.1:9/v1/speech-to-text/realtime?model_id=m&audio_format=ulaw_8000&commit_strategy=manual&keyterms=Dr.+Patel&keyterms=a+b');
  });

  it('bounds the keyterms: 50 at most, 20 characters each, deduplicated', () => {
    const many = Array.from({ length: 80 }, (_, i) => `Term${i}`);
    const k = vocabularyKeyterms([...many, ' term0 ', '', 'A Very Long Clinic Name Indeed']);
    expect(k).toHaveLength(50);
    expect(k.every((t) => t.length <= 20)).toBe(true);
    expect(k.filter((t) => t.toLowerCase() === 'term0')).toHaveLength(1);
    // A long name gives its capitalised words; the common vet terms follow the clinic's own.
    expect(vocabularyKeyterms(['Riverside Veterinary Clinic of Springfield', 'dog']).slice(0, 6)).toEqual(['Riverside', 'Veterinary', 'Clinic', 'Springfield', 'dog', 'cat']);
    expect(vocabularyKeyterms([])).toEqual([]);
  });
});
