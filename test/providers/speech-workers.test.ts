/**
 * The speech workers (src/providers/speech/pool.ts): synthesis and recognition run off the main
 * thread, and a worker that dies takes down only what it was doing — its calls' recognizers end
 * with an error, its synthesis rejects — and is replaced.
 */
import alawmulaw from 'alawmulaw';
import { threadId } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SpeechPool } from '../../src/providers/speech/pool.js';
import { createLocalStt } from '../../src/providers/stt/local.js';
import type { SttProvider, SttStream } from '../../src/providers/stt/types.js';
import { useClipCache } from '../../src/providers/tts/clip-cache.js';
import { createLocalTts, synthesizeUlaw } from '../../src/providers/tts/local.js';
import { CRASH_WORD, CRASHING_SPEECH_WORKER } from '../support/crashing-speech.js';

// Rendered here, every time: the suite's clip cache would answer without a worker.
useClipCache(null);

const pool = new SpeechPool({ workers: 1, maxDecoders: 2, script: CRASHING_SPEECH_WORKER });
let stt: SttProvider;
let hours: Int16Array;

beforeAll(async () => {
  stt = await createLocalStt({ pool, onWarning: () => {} });
  hours = alawmulaw.mulaw.decode(await synthesizeUlaw('what are your hours', 'kal', { pool }));
}, 60_000);

afterAll(() => pool.close());

interface Heard { finals: string[]; errors: Error[] }
function open(vocabulary: readonly string[] = []): { s: SttStream; h: Heard } {
  const h: Heard = { finals: [], errors: [] };
  const s = stt.open({ language: 'en-US', vocabulary, signal: new AbortController().signal,
    onPartial: () => {}, onFinal: (t) => h.finals.push(t), onError: (e) => h.errors.push(e) });
  return { s, h };
}
const say = (s: SttStream, pcm: Int16Array) => {
  s.speechStarted();
  for (let i = 0; i < pcm.length; i += 160) s.write(pcm.subarray(i, i + 160));
  s.speechEnded();
};
const until = (check: () => void) => vi.waitFor(check, { timeout: 30_000, interval: 5 });

describe('speech workers', () => {
  it('synthesize on a worker thread while the main thread keeps turning', async () => {
    expect(pool.threadIds()).toHaveLength(1);
    expect(pool.threadIds()).not.toContain(threadId);
    // ~25 s of speech in one job: flite works for hundreds of ms on the worker. On the main thread
    // that would be one synchronous call; here the event loop goes round all the while.
    const text = Array.from({ length: 12 }, (_, i) => `Sentence number ${i + 1} is about opening hours and appointments`).join(', ');
    let turns = 0;
    let done = false;
    const spin = () => {
      if (done) return;
      turns++;
      setImmediate(spin);
    };
    setImmediate(spin);
    const audio = await synthesizeUlaw(text, 'kal', { pool });
    done = true;
    expect(audio.length).toBeGreaterThan(15 * 8000);
    expect(turns).toBeGreaterThan(100);
  });

  it('a worker crash fails its recognizer sessions and its synthesis, then the worker is replaced', async () => {
    const before = pool.threadIds();
    const a = open();
    const b = open();
    say(a.s, hours);
    await until(() => expect(a.h.finals).toEqual(['what are your hours']));
    b.s.speechStarted(); // mid-utterance when the worker dies
    b.s.write(hours.subarray(0, 1600));

    // The planted fault, then a synthesis queued behind it on the same worker: it is never run.
    const crash = open([CRASH_WORD]);
    await expect(synthesizeUlaw('Never rendered.', 'kal', { pool })).rejects.toThrow(/local speech worker stopped \(planted speech worker crash\)/);
    await until(() => expect([a.h.errors.length, b.h.errors.length, crash.h.errors.length]).toEqual([1, 1, 1]));
    expect(b.h.errors[0]!.message).toMatch(/local speech worker stopped/);
    // No more results after the error, even if the caller goes on.
    b.s.write(hours.subarray(1600));
    b.s.speechEnded();
    a.s.close();
    b.s.close();

    // A new thread took its place and does both jobs again.
    const c = open();
    say(c.s, hours);
    await until(() => expect(c.h.finals).toEqual(['what are your hours']));
    expect(c.h.errors).toEqual([]);
    expect(pool.threadIds()).toHaveLength(1);
    expect(pool.threadIds()).not.toEqual(before);
    const chunks: Uint8Array[] = [];
    for await (const chunk of createLocalTts({ pool }).synthesize('One moment.', { voice: 'kal', language: 'en-US', signal: new AbortController().signal })) chunks.push(chunk);
    expect(chunks.reduce((n, c) => n + c.length, 0)).toBeGreaterThan(4000);
    expect(b.h.finals).toEqual([]);
    c.s.close();
  }, 60_000);

  it('a synthesis aborted while it waits for a worker is dropped', async () => {
    const ac = new AbortController();
    const busy = synthesizeUlaw('A sentence that keeps the only worker busy for a little while.', 'kal', { pool });
    const queued = synthesizeUlaw('Never rendered.', 'kal', { pool, signal: ac.signal });
    ac.abort(new Error('caller hung up'));
    await expect(queued).rejects.toThrow('caller hung up');
    expect((await busy).length).toBeGreaterThan(8000);
  });
});
