import alawmulaw from 'alawmulaw';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLocalStt } from '../../src/providers/stt/local.js';
import type { SttProvider, SttStream } from '../../src/providers/stt/types.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';

// A pool of one decoder (this file runs in its own process): a second caller who starts talking
// while the first one holds the decoder is buffered and decoded when it frees up.
let stt: SttProvider;
let front: Int16Array;
let hours: Int16Array;

beforeAll(async () => {
  stt = await createLocalStt({ maxDecoders: 1, onWarning: () => {} });
  front = alawmulaw.mulaw.decode(await synthesizeUlaw('front desk'));
  hours = alawmulaw.mulaw.decode(await synthesizeUlaw('what are your hours'));
});

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

describe('local STT with every decoder busy', () => {
  it('buffers the second caller and catches up when the decoder is released', () => {
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
    expect(b).toEqual([]);
    feed(sa, quiet);
    sa.speechEnded(); // A's final, then the decoder goes to B, which catches up at once
    expect(a).toEqual(['what are your hours']);
    expect(b).toEqual(['front desk']);
    expect(order).toEqual(['what are your hours', 'front desk']);
    sa.close();
    sb.close();
  });

  it('a closed stream gives up its place in the queue', () => {
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
    expect([a, b, c]).toEqual([['front desk'], [], ['front desk']]);
    sa.close();
    sc.close();
  });
});
