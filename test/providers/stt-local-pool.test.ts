import alawmulaw from 'alawmulaw';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SpeechPool } from '../../src/providers/speech/pool.js';
import { createLocalStt } from '../../src/providers/stt/local.js';
import type { SttProvider, SttStream } from '../../src/providers/stt/types.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';

// One worker with one decoder: a second caller who starts talking while the first one holds the
// decoder is buffered in the worker and decoded when it frees up.
const pool = new SpeechPool({ workers: 1, maxDecoders: 1 });
let stt: SttProvider;
let front: Int16Array;
let hours: Int16Array;

beforeAll(async () => {
  stt = await createLocalStt({ pool, onWarning: () => {} });
  front = alawmulaw.mulaw.decode(await synthesizeUlaw('front desk', 'kal', { pool }));
  hours = alawmulaw.mulaw.decode(await synthesizeUlaw('what are your hours', 'kal', { pool }));
});

afterAll(() => pool.close());

const quiet = new Int16Array(2400); // 300 ms of digital silence
const feed = (s: SttStream, pcm: Int16Array) => {
  for (let i = 0; i < pcm.length; i += 160) s.write(pcm.subarray(i, i + 160));
};
/** A stream that has heard some line silence, as the VAD's pre-roll would hold. */
function open(finals: string[], order: string[] = []): SttStream {
  const s = stt.open({ language: 'en-US', vocabulary: [], signal: new AbortController().signal,
    onPartial: () => {}, onFinal: (t) => { finals.push(t); order.push(t); }, onError: (e) => { throw e; } });
  feed(s, quiet);
  return s;
}
const until = (check: () => void) => vi.waitFor(check, { timeout: 15_000, interval: 2 });

describe('local STT with every decoder busy', () => {
  it('buffers the second caller and catches up when the decoder is released', async () => {
    const order: string[] = [];
    const a: string[] = [];
    const b: string[] = [];
    const sa = open(a, order);
    const sb = open(b, order);
    sa.speechStarted();
    sb.speechStarted(); // waits: the only decoder is with A
    feed(sa, hours);
    feed(sb, front);
    feed(sb, quiet);
    sb.speechEnded(); // final deferred until a decoder is free
    await new Promise((r) => setTimeout(r, 300));
    expect(b).toEqual([]);
    feed(sa, quiet);
    sa.speechEnded(); // A's final, then the decoder goes to B, which catches up
    await until(() => expect(b).toHaveLength(1));
    expect(a).toEqual(['what are your hours']);
    expect(b).toEqual(['front desk']);
    expect(order).toEqual(['what are your hours', 'front desk']);
    sa.close();
    sb.close();
  });

  it('a closed stream gives up its place in the queue', async () => {
    const a: string[] = [];
    const b: string[] = [];
    const c: string[] = [];
    const [sa, sb, sc] = [open(a), open(b), open(c)];
    sa.speechStarted();
    sb.speechStarted();
    sc.speechStarted();
    sb.close();
    feed(sc, front);
    feed(sc, quiet);
    sc.speechEnded();
    feed(sa, front);
    feed(sa, quiet);
    sa.speechEnded();
    await until(() => expect(c).toHaveLength(1));
    expect([a, b, c]).toEqual([['front desk'], [], ['front desk']]);
    sa.close();
    sc.close();
  });
});
