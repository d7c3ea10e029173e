import alawmulaw from 'alawmulaw';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { TenantSchema } from '../../src/config/tenant.schema.js';
import { createLocalStt, sttVocabularyFor } from '../../src/providers/stt/local.js';
import type { SttProvider, SttStream } from '../../src/providers/stt/types.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';
import { energyVad, energyVadParams } from '../../src/providers/vad/energy.js';

const tenant = TenantSchema.parse({
  id: 'riverside', name: 'Riverside Vet Clinic', phoneNumbers: ['+15550100001'], greeting: 'Hello.',
  transfer: { frontDesk: '+15550100002' }, emergency: { script: 'Stay on the line.' },
  info: { hours: '8 to 6', address: '12 River Road', services: ['vaccinations', 'dental care'], staff: ['Dr. Priya Patel', 'Emily Stone'] },
});
const vocabulary = sttVocabularyFor(tenant);

/** Recognised exactly by the default (kal) voice through TTS → μ-law → VAD → STT. */
const EXACT = [
  'what are your hours', 'when are you open', 'my dog is bleeding', 'i want to book an appointment',
  'front desk', 'operator', 'goodbye', 'thank you', 'where are you located', 'i need a refill', 'tomorrow morning',
  'monday afternoon', 'at ten', 'bella', "he can't breathe", 'my cat ate poison', "it's an emergency", 'not an emergency', 'she is having a seizure', 'zero',
  'two', 'my name is sarah', 'a checkup', 'what services do you offer', 'i want to speak to a person',
  'yes tomorrow morning', 'okay', 'doctor patel', 'friday at three p.m.', 'i want to book an appointment for bella',
];
/**
 * Short answers: which variant comes back depends on the decoder's live CMN, i.e. on what it heard
 * before (in runs during development: yeah→yes or yep, no→nope, once "yes" plus a name). Asserted
 * as a class; the agent treats every member of a class alike.
 */
const CLASSES: Record<string, readonly string[]> = {
  yes: ['yes', 'yeah', 'yep'],
  yeah: ['yes', 'yeah', 'yep'],
  no: ['no', 'nope'],
};

let stt: SttProvider;
let initMs = 0;
const errors: Error[] = [];
const audio = new Map<string, Int16Array>();

interface Heard { finals: Array<{ text: string; confidence: number | null }>; partials: string[]; finalMs: number[]; frameMs: number[]; ends: number }

const heard = (): Heard => ({ finals: [], partials: [], finalMs: [], frameMs: [], ends: 0 });

interface Listening { s: SttStream; h: Heard; endedAt: number[]; end(): void }

/** A stream whose results go to `h`; `finalMs` times each final from its speechEnded. */
function openInto(h: Heard, signal = new AbortController().signal): Listening {
  const endedAt: number[] = [];
  const s = stt.open({
    language: 'en-US', vocabulary, signal,
    onPartial: (t) => h.partials.push(t),
    onFinal: (text, confidence) => {
      const at = endedAt[h.finals.length];
      if (at !== undefined) h.finalMs.push(performance.now() - at);
      h.finals.push({ text, confidence });
    },
    onError: (e) => errors.push(e),
  });
  const end = () => {
    endedAt[h.ends++] = performance.now();
    s.speechEnded();
  };
  return { s, h, endedAt, end };
}

/**
 * Plays PCM through the energy VAD into a stream (a fresh one unless given), like a call would,
 * 20 ms at a time (`paceMs`: waits that long every 100 ms of audio; 0: all at once), then waits
 * for every final it asked for.
 */
async function listen(pcm: Int16Array, into?: Listening, paceMs = 0): Promise<Heard> {
  const { s, h, end } = into ?? openInto(heard());
  const vad = energyVad.create(energyVadParams(tenant.vad));
  for (let i = 0; i < pcm.length; i += 160) {
    const frame = pcm.subarray(i, i + 160);
    const t0 = performance.now();
    s.write(frame);
    if (vad.speaking) h.frameMs.push(performance.now() - t0); // audio goes to the worker only in speech
    const e = vad.process(frame, i / 8);
    if (e?.type === 'speechStart') s.speechStarted();
    if (e?.type === 'speechEnd') end();
    if (paceMs > 0 && i % 800 === 0) await new Promise((r) => setTimeout(r, paceMs));
  }
  await vi.waitFor(() => expect(h.finals.length).toBeGreaterThanOrEqual(h.ends), { timeout: 15_000, interval: 2 });
  if (!into) s.close();
  return h;
}

/** Digital silence (zeros) around the phrase, as on a real line between words. */
const padded = (pcm: Int16Array) => {
  const out = new Int16Array(pcm.length + 8000);
  out.set(pcm, 4000);
  return out;
};

beforeAll(async () => {
  const before = process.listeners('uncaughtException').length;
  const t0 = performance.now();
  stt = await createLocalStt({ onWarning: () => {} });
  initMs = performance.now() - t0;
  expect(process.listeners('uncaughtException')).toHaveLength(before);
  for (const p of [...EXACT, ...Object.keys(CLASSES)]) audio.set(p, padded(alawmulaw.mulaw.decode(await synthesizeUlaw(p, 'kal'))));
});

describe('local STT (soundswallower) round trip', () => {
  it('recognises the clinic phrase set exactly', async () => {
    const got = new Map<string, string>();
    const finalMs: number[] = [];
    const frameMs: number[] = [];
    for (const [phrase, pcm] of audio) {
      const h = await listen(pcm);
      expect(h.finals, phrase).toHaveLength(1);
      got.set(phrase, h.finals[0]!.text);
      finalMs.push(...h.finalMs);
      frameMs.push(...h.frameMs);
    }
    expect(errors).toEqual([]);
    if (process.env.STT_DEBUG) console.info([...got].map(([p, t]) => `${p} → ${t}`).join('\n'));
    const exact = [...got].filter(([p, t]) => p === t);
    expect(EXACT.filter((p) => got.get(p) !== p).map((p) => `${p} → ${got.get(p)}`)).toEqual([]);
    for (const [phrase, ok] of Object.entries(CLASSES)) expect(ok, phrase).toContain(got.get(phrase));
    const sorted = [...frameMs].sort((a, b) => a - b);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    // The whole utterance is handed over at once here, so "final after speechEnded" includes decoding all of it.
    console.info(`[figures] local STT: cold init ${initMs.toFixed(0)} ms; ${exact.length}/${audio.size} exact; ` +
      `final after speechEnded (whole utterance decoded in the worker) mean ${(sum(finalMs) / finalMs.length).toFixed(1)} ms; ` +
      `main thread per 20 ms speech frame mean ${(sum(frameMs) / frameMs.length * 1000).toFixed(1)} µs, ` +
      `p99 ${(sorted[Math.floor(sorted.length * 0.99)]! * 1000).toFixed(1)} µs`);
  });

  it('emits partials while the caller is still talking', async () => {
    // In real time, as in a call.
    const h = await listen(audio.get('i want to book an appointment for bella')!, undefined, 100);
    console.info(`[figures] local STT partials: ${h.partials.length} for a 2.6 s utterance; final ${h.finalMs[0]?.toFixed(1)} ms after speechEnded`);
    expect(h.partials.length).toBeGreaterThanOrEqual(2);
    expect(h.partials[h.partials.length - 1]).toMatch(/^i want to book/);
    expect(new Set(h.partials).size).toBe(h.partials.length); // only when the text changes
    expect(h.finals).toEqual([{ text: 'i want to book an appointment for bella', confidence: expect.any(Number) as number }]);
  });

  it('decodes nothing without speech, and keeps one stream across utterances', async () => {
    const l = openInto(heard());
    await listen(new Int16Array(16000), l); // two seconds of digital silence: the VAD never opens
    l.end(); // a stray end: an empty final at once, nothing decoded
    expect(l.h.finals).toEqual([{ text: '', confidence: null }]);
    await listen(audio.get('front desk')!, l);
    await listen(audio.get('goodbye')!, l);
    expect(l.h.finals.map((f) => f.text)).toEqual(['', 'front desk', 'goodbye']);
    l.s.close();
  });

  it('keeps finals in order when the caller speaks again before the last one is out', async () => {
    const l = openInto(heard());
    const vadLess = (pcm: Int16Array) => {
      l.s.speechStarted();
      for (let i = 0; i < pcm.length; i += 160) l.s.write(pcm.subarray(i, i + 160));
      l.s.speechEnded();
    };
    // Back to back, with no wait: the second utterance starts while the first is still being decoded.
    vadLess(audio.get('front desk')!);
    vadLess(audio.get('goodbye')!);
    vadLess(audio.get('what are your hours')!);
    await vi.waitFor(() => expect(l.h.finals).toHaveLength(3), { timeout: 15_000, interval: 2 });
    expect(l.h.finals.map((f) => f.text)).toEqual(['front desk', 'goodbye', 'what are your hours']);
    l.s.close();
  });

  it('caps an utterance at 15 s and ignores the speechEnded that follows', async () => {
    const l = openInto(heard());
    const phrase = alawmulaw.mulaw.decode(alawmulaw.mulaw.encode(audio.get('what are your hours')!.subarray(4000, -4000)));
    l.s.speechStarted();
    for (let written = 0; written < 16 * 8000; written += phrase.length) {
      for (let i = 0; i < phrase.length; i += 160) l.s.write(phrase.subarray(i, i + 160));
    }
    await vi.waitFor(() => expect(l.h.finals).toHaveLength(1), { timeout: 15_000, interval: 2 });
    l.s.speechEnded();
    l.h.ends = 1;
    // The next utterance's final is the second one: the end after the cap produced none.
    await listen(audio.get('goodbye')!, l);
    expect(l.h.finals.map((f) => f.text).slice(1)).toEqual(['goodbye']);
    l.s.close();
  });

  it('stops on abort and releases its decoder', async () => {
    const ac = new AbortController();
    const l = openInto(heard(), ac.signal);
    l.s.speechStarted();
    l.s.write(audio.get('yes')!.subarray(4000, 8000));
    ac.abort();
    l.s.speechEnded();
    // Every decoder of the worker is free again: a later caller is heard, and the aborted one never.
    for (let i = 0; i < 5; i++) expect((await listen(audio.get('yes')!)).finals[0]?.text).toBe('yes');
    expect(l.h.finals).toEqual([]);
  });

  it('builds tenant vocabulary from staff names and services', () => {
    expect(vocabulary).toEqual(expect.arrayContaining(['Priya', 'doctor Patel', 'Emily', 'vaccinations', 'dental care', "can't breathe"]));
  });
});
