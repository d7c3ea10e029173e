/**
 * The cloud recognizers' audio buffer (src/providers/stt/utterance-buffer.ts) against a plain model:
 * the pre-roll is the last `preRoll` μ-law bytes heard while idle, an utterance is that pre-roll
 * then every frame added, up to the cap. Frames of any size, rings smaller than a frame included.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeUlaw } from '../../src/audio/ulaw.js';
import { UtteranceBuffer } from '../../src/providers/stt/utterance-buffer.js';

type Op = { kind: 'remember' | 'add'; pcm: Int16Array } | { kind: 'start' } | { kind: 'reset' };

// Twilio's 160-sample frames mostly, and the edges: empty, one sample, larger than the ring.
const frame = fc.oneof(fc.constantFrom(160, 160, 0, 1, 80), fc.integer({ min: 0, max: 400 })).chain((n) => fc.array(fc.integer({ min: -32768, max: 32767 }), { minLength: n, maxLength: n }).map((a) => Int16Array.from(a)));
const op: fc.Arbitrary<Op> = fc.oneof(
  frame.map((pcm) => ({ kind: 'remember' as const, pcm })),
  frame.map((pcm) => ({ kind: 'add' as const, pcm })),
  fc.constant({ kind: 'start' as const }),
  fc.constant({ kind: 'reset' as const }),
);

describe('UtteranceBuffer', () => {
  it('keeps the newest pre-roll while idle and the utterance up to its cap, as a plain list of bytes would', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(0, 1, 100, 160, 1_600), fc.integer({ min: 0, max: 2_000 })), fc.integer({ min: 1, max: 3_000 }), fc.array(op, { maxLength: 60 }), (preRoll, max, ops) => {
        const buffer = new UtteranceBuffer(preRoll, max);
        let heard: number[] = []; // μ-law remembered since the last start
        let utterance: number[] = [];
        for (const o of ops) {
          if (o.kind === 'remember') {
            buffer.remember(o.pcm);
            heard.push(...encodeUlaw(o.pcm));
          } else if (o.kind === 'start') {
            utterance = (preRoll === 0 ? [] : heard.slice(-preRoll)).slice(0, max);
            heard = [];
            expect([...buffer.start()]).toEqual(utterance);
          } else if (o.kind === 'add') {
            const taken = [...encodeUlaw(o.pcm)].slice(0, max - utterance.length);
            utterance.push(...taken);
            expect([...buffer.add(o.pcm)]).toEqual(taken);
          } else {
            buffer.reset();
            utterance = [];
          }
          expect([...buffer.current()]).toEqual(utterance);
          expect(buffer.capped).toBe(utterance.length >= max);
        }
      }),
      { numRuns: 300 },
    );
  });
});
