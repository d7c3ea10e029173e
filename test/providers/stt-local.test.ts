import alawmulaw from 'alawmulaw';
import { beforeAll, describe, expect, it } from 'vitest';
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

interface Heard { finals: Array<{ text: string; confidence: number | null }>; partials: string[]; endMs: number[]; frameMs: number[] }

/** Plays PCM through the energy VAD into a fresh STT stream, like a call would, 20 ms at a time. */
function listen(pcm: Int16Array, stream?: SttStream, heard?: Heard): Heard {
  const h: Heard = heard ?? { finals: [], partials: [], endMs: [], frameMs: [] };
  const s = stream ?? stt.open({
    language: 'en-US', vocabulary, signal: new AbortController().signal,
    onPartial: (t) => h.partials.push(t), onFinal: (text, confidence) => h.finals.push({ text, confidence }),
    onError: (e) => errors.push(e),
  });
  const vad = energyVad.create(energyVadParams(tenant.vad));
  for (let i = 0; i < pcm.length; i += 160) {
    const frame = pcm.subarray(i, i + 160);
    const t0 = performance.now();
    s.write(frame);
    if (vad.speaking) h.frameMs.push(performance.now() - t0); // decoding happens only in speech
    const e = vad.process(frame, i / 8);
    if (e?.type === 'speechStart') s.speechStarted();
    if (e?.type === 'speechEnd') {
      const t1 = performance.now();
      s.speechEnded();
      h.endMs.push(performance.now() - t1);
    }
  }
  if (!stream) s.close();
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
  it('recognises the clinic phrase set exactly', () => {
    const got = new Map<string, string>();
    const endMs: number[] = [];
    const frameMs: number[] = [];
    for (const [phrase, pcm] of audio) {
      const h = listen(pcm);
      expect(h.finals, phrase).toHaveLength(1);
      got.set(phrase, h.finals[0]!.text);
      endMs.push(...h.endMs);
      frameMs.push(...h.frameMs);
    }
    expect(errors).toEqual([]);
    if (process.env.STT_DEBUG) console.info([...got].map(([p, t]) => `${p} → ${t}`).join('\n'));
    const exact = [...got].filter(([p, t]) => p === t);
    expect(EXACT.filter((p) => got.get(p) !== p).map((p) => `${p} → ${got.get(p)}`)).toEqual([]);
    for (const [phrase, ok] of Object.entries(CLASSES)) expect(ok, phrase).toContain(got.get(phrase));
    const sorted = [...frameMs].sort((a, b) => a - b);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    console.info(`[figures] local STT: cold init ${initMs.toFixed(0)} ms; ${exact.length}/${audio.size} exact; ` +
      `final at speechEnded mean ${(sum(endMs) / endMs.length).toFixed(1)} ms; per 20 ms speech frame ` +
      `mean ${(sum(frameMs) / frameMs.length).toFixed(2)} ms, p99 ${sorted[Math.floor(sorted.length * 0.99)]!.toFixed(2)} ms ` +
      `(${((sum(frameMs) / (frameMs.length * 20)) * 1000).toFixed(0)} ms CPU per second of speech)`);
  });

  it('emits partials while the caller is still talking', () => {
    const h = listen(audio.get('i want to book an appointment for bella')!);
    const sorted = [...h.frameMs].sort((a, b) => b - a);
    console.info(`[figures] local STT partials: ${h.partials.length} for a 2.6 s utterance; slowest frames (a partial is read every 25th) ` +
      `${sorted.slice(0, 3).map((x) => x.toFixed(1)).join(', ')} ms; median frame ${sorted[sorted.length >> 1]!.toFixed(2)} ms`);
    expect(h.partials.length).toBeGreaterThanOrEqual(2);
    expect(h.partials[h.partials.length - 1]).toMatch(/^i want to book/);
    expect(new Set(h.partials).size).toBe(h.partials.length); // only when the text changes
    expect(h.finals).toEqual([{ text: 'i want to book an appointment for bella', confidence: expect.any(Number) as number }]);
  });

  it('decodes nothing without speech, and keeps one stream across utterances', () => {
    const h: Heard = { finals: [], partials: [], endMs: [], frameMs: [] };
    const s = stt.open({ language: 'en-US', vocabulary, signal: new AbortController().signal,
      onPartial: (t) => h.partials.push(t), onFinal: (text, confidence) => h.finals.push({ text, confidence }), onError: (e) => errors.push(e) });
    listen(new Int16Array(16000), s, h); // two seconds of digital silence: the VAD never opens
    s.speechEnded(); // a stray end: an empty final, nothing decoded
    expect(h.finals).toEqual([{ text: '', confidence: null }]);
    listen(audio.get('front desk')!, s, h);
    listen(audio.get('goodbye')!, s, h);
    expect(h.finals.map((f) => f.text)).toEqual(['', 'front desk', 'goodbye']);
    s.close();
  });

  it('caps an utterance at 15 s and ignores the speechEnded that follows', () => {
    const h: Heard = { finals: [], partials: [], endMs: [], frameMs: [] };
    const s = stt.open({ language: 'en-US', vocabulary, signal: new AbortController().signal,
      onPartial: (t) => h.partials.push(t), onFinal: (text, confidence) => h.finals.push({ text, confidence }), onError: (e) => errors.push(e) });
    const phrase = alawmulaw.mulaw.decode(alawmulaw.mulaw.encode(audio.get('what are your hours')!.subarray(4000, -4000)));
    s.speechStarted();
    for (let written = 0; written < 16 * 8000; written += phrase.length) {
      for (let i = 0; i < phrase.length; i += 160) s.write(phrase.subarray(i, i + 160));
    }
    expect(h.finals).toHaveLength(1);
    s.speechEnded();
    expect(h.finals).toHaveLength(1);
    s.close();
  });

  it('stops on abort and releases its decoder', () => {
    const ac = new AbortController();
    const finals: string[] = [];
    const s = stt.open({ language: 'en-US', vocabulary, signal: ac.signal, onPartial: () => {}, onFinal: (t) => finals.push(t), onError: (e) => errors.push(e) });
    s.speechStarted();
    s.write(audio.get('yes')!.subarray(4000, 8000));
    ac.abort();
    s.speechEnded();
    expect(finals).toEqual([]);
    expect(listen(audio.get('yes')!).finals[0]?.text).toBe('yes');
  });

  it('builds tenant vocabulary from staff names and services', () => {
    expect(vocabulary).toEqual(expect.arrayContaining(['Priya', 'doctor Patel', 'Emily', 'vaccinations', 'dental care', "can't breathe"]));
  });
});
