import { describe, expect, it } from 'vitest';
import { TenantSchema } from '../../src/config/tenant.schema.js';
import { FakeAgentProvider, deltas } from '../../src/providers/agent/fake.js';
import type { AgentOutput } from '../../src/providers/agent/types.js';
import { FakeSttProvider } from '../../src/providers/stt/fake.js';
import { FakeTtsProvider, fakeTtsBytes } from '../../src/providers/tts/fake.js';
import { CLIP_IDS, PromptCache, clipTexts, speakablePhone } from '../../src/providers/tts/prompt-cache.js';
import { FakeVadProvider } from '../../src/providers/vad/fake.js';
import { energyVadParams } from '../../src/providers/vad/energy.js';

const tenant = TenantSchema.parse({
  id: 'riverside', name: 'Riverside Vet Clinic', phoneNumbers: ['+15550100001'],
  greeting: 'Thanks for calling Riverside Vet Clinic.',
  transfer: { frontDesk: '+15550100002', emergency: '+15551230000' },
  emergency: { script: 'Stay on the line. If we get cut off, call the emergency hospital.' },
  info: { hours: '8 to 6', address: '12 River Road' },
});
const never = new AbortController().signal;
const params = energyVadParams(tenant.vad);

describe('fake VAD', () => {
  it('returns pushed, scripted and decided events and records everything', () => {
    const provider = new FakeVadProvider({
      script: [{ at: 100, event: { type: 'speechStart', atMs: 60 } }],
      decide: (_pcm, atMs) => (atMs === 500 ? { type: 'speechEnd', atMs: 300, speechMs: 240 } : null),
    });
    const vad = provider.create(params);
    const frame = new Int16Array(160);
    expect(vad.process(frame, 80)).toBeNull();
    expect(vad.process(frame, 100)).toEqual({ type: 'speechStart', atMs: 60 });
    expect(vad.speaking).toBe(true);
    vad.setMode('speaking');
    expect(vad.process(frame, 500)).toMatchObject({ type: 'speechEnd' });
    vad.push({ type: 'speechStart', atMs: 520 });
    expect(vad.process(frame, 520)).toEqual({ type: 'speechStart', atMs: 520 });
    expect(provider.last).toBe(vad);
    expect(vad).toMatchObject({ frames: 4, lastAtMs: 520, modes: ['speaking'], mode: 'speaking' });
    expect(vad.events).toHaveLength(3);
  });
});

describe('fake STT', () => {
  it('emits scripted partials and a final per speechEnded, then errors and empty finals', () => {
    const stt = new FakeSttProvider({ script: [{ partials: ['my dog', 'my dog is'], final: 'my dog is bleeding', confidence: 0.8 }, 'yes', { error: new Error('boom') }] });
    const log: string[] = [];
    const s = stt.open({ language: 'en-US', vocabulary: [], signal: never,
      onPartial: (t) => log.push(`partial:${t}`), onFinal: (t, c) => log.push(`final:${t}:${c}`), onError: (e) => log.push(`error:${e.message}`) });
    s.write(new Int16Array(160));
    s.speechStarted();
    s.speechEnded();
    s.speechEnded();
    s.speechEnded();
    s.speechEnded(); // closed by the error
    expect(log).toEqual(['partial:my dog', 'partial:my dog is', 'final:my dog is bleeding:0.8', 'final:yes:0.9', 'error:boom']);
    expect(stt.last).toMatchObject({ frames: 1, samples: 160, starts: 1, ends: 3, closed: true, finals: ['my dog is bleeding', 'yes'] });
    const t = stt.open({ language: 'en-US', vocabulary: [], signal: never, onPartial: () => {}, onFinal: (x, c) => log.push(`final:${x}:${c}`), onError: () => {} });
    t.speechEnded();
    expect(log[log.length - 1]).toBe('final::null');
  });

  it('a streaming recognizer: each partial only once its words were spoken, deferred by an injected scheduler; stops on abort', () => {
    const queue: Array<() => void> = [];
    const stt = new FakeSttProvider({
      partialsAt: 'spoken', wordMs: 300, partialSchedule: (f) => queue.push(f),
      script: [{ partials: ['he is', 'he is choking on', 'he is choking on a bone'], final: 'he is choking on a bone' }],
    });
    const ac = new AbortController();
    const log: string[] = [];
    const s = stt.open({ language: 'en-US', vocabulary: ['Bella'], signal: ac.signal, onPartial: (t) => log.push(t), onFinal: (t) => log.push(`final:${t}`), onError: () => {} });
    const speak = (ms: number) => { for (let t = 0; t < ms; t += 20) s.write(new Int16Array(160)); };
    speak(400); // before speech: nothing is due
    s.speechStarted();
    speak(580);
    expect(queue).toHaveLength(0); // two words need 600 ms of speech
    speak(20);
    expect(queue).toHaveLength(1);
    queue.shift()!();
    expect(log).toEqual(['he is']);
    speak(600); // four words at 1.2 s
    expect(queue).toHaveLength(1);
    s.speechEnded(); // the six-word partial was never due: only the final follows
    expect(log).toEqual(['he is', 'final:he is choking on a bone']);
    ac.abort();
    queue.shift()!();
    expect(log).toEqual(['he is', 'final:he is choking on a bone']);
    expect(stt.streams[0]!.options.vocabulary).toEqual(['Bella']);
  });

  it('a recognizer of committed audio: partials only after speechEnded, however long the caller talked', () => {
    const stt = new FakeSttProvider({ script: [{ partials: ['my dog'], final: 'my dog is bleeding' }] });
    const log: string[] = [];
    const s = stt.open({ language: 'en-US', vocabulary: [], signal: new AbortController().signal, onPartial: (t) => log.push(t), onFinal: (t) => log.push(`final:${t}`), onError: () => {} });
    s.speechStarted();
    for (let t = 0; t < 3000; t += 20) s.write(new Int16Array(160));
    expect(log).toEqual([]);
    s.speechEnded();
    expect(log).toEqual(['my dog', 'final:my dog is bleeding']);
  });
});

describe('fake TTS', () => {
  it('yields deterministic μ-law sized at 15 characters per second, in 200 ms chunks', async () => {
    const tts = new FakeTtsProvider();
    const text = 'Thanks for calling Riverside Vet Clinic, how can I help?'; // 56 chars ≈ 3.7 s
    const chunks: Uint8Array[] = [];
    for await (const c of tts.synthesize(text, { voice: 'kal', language: 'en-US', signal: never })) chunks.push(c);
    const total = chunks.reduce((n, c) => n + c.length, 0);
    expect(total).toBe(fakeTtsBytes(text));
    expect(total).toBe(Math.ceil(((56 / 15) * 8000) / 160) * 160);
    expect(chunks.slice(0, -1).every((c) => c.length === 1600)).toBe(true);
    expect(chunks[0]!.slice(0, 20)).toEqual(chunks[1]!.slice(0, 20)); // a steady 400 Hz tone
    expect(tts.last).toMatchObject({ text, voice: 'kal', chunks: chunks.length, bytes: total, done: true, aborted: false });
  });

  it('waits on the injected delay, stops on abort and fails on demand', async () => {
    const waits: number[] = [];
    const ac = new AbortController();
    const tts = new FakeTtsProvider({ fill: 'silence', delay: (i) => { waits.push(i); if (i === 2) ac.abort(); return Promise.resolve(); },
      fail: (t) => (t === 'bad' ? new Error('no voice') : null) });
    const chunks: Uint8Array[] = [];
    for await (const c of tts.synthesize('x'.repeat(60), { voice: 'v', language: 'en-US', signal: ac.signal })) chunks.push(c);
    expect(chunks).toHaveLength(2);
    expect(chunks[0]!.every((b) => b === 0xff)).toBe(true);
    expect(waits).toEqual([0, 1, 2]);
    expect(tts.last).toMatchObject({ aborted: true, done: false });
    await expect(async () => { for await (const _ of tts.synthesize('bad', { voice: 'v', language: 'en', signal: never })) void _; }).rejects.toThrow('no voice');
  });
});

describe('fake agent', () => {
  it('replays scripted turns, records them and stops on abort', async () => {
    const agent = new FakeAgentProvider({ script: ['Hello there.', [{ type: 'action', action: { type: 'end', reason: 'bye' } }], new Error('llm down'),
      (turn) => `You said ${turn.transcript}`] });
    const session = agent.startSession(tenant);
    const run = async (transcript: string, signal = never) => {
      const out: AgentOutput[] = [];
      for await (const o of session.respond({ transcript, history: [], signal })) out.push(o);
      return out;
    };
    expect(await run('hi')).toEqual(deltas('Hello there.'));
    expect(await run('bye')).toEqual([{ type: 'action', action: { type: 'end', reason: 'bye' } }]);
    await expect(run('?')).rejects.toThrow('llm down');
    const ac = new AbortController();
    ac.abort();
    expect(await run('echo', ac.signal)).toEqual([]);
    expect(await run('anything')).toEqual(deltas('Okay.'));
    expect(agent.turns.map((t) => t.transcript)).toEqual(['hi', 'bye', '?', 'echo', 'anything']);
    expect(session.tenant.id).toBe('riverside');
  });
});

describe('prompt cache', () => {
  it('builds the clip texts from the tenant', () => {
    const t = clipTexts(tenant);
    expect(t.greeting).toBe(tenant.greeting);
    expect(t.consent).toBe(tenant.consent.text);
    expect(t.goodbye).toBe('Thank you for calling Riverside Vet Clinic. Goodbye.');
    expect(t.stillThereHint).toBe("If you'd like, press 0 for the front desk.");
    expect(t.menu).toBe('Press 1 for appointments. Press 0 for the front desk. Press star to hear these options again. If this is an emergency, press 9.');
    expect(t.emergencyFallback).toMatch(/call 5 5 5, 1 2 3, 0 0 0 0 now\..*Stay on the line\. If we get cut off, call the emergency hospital\.$/);
    expect(t.transferFailed).toMatch(/^I'm sorry, nobody could take the call right now\./);
    expect(t.timeLimit).toMatch(/^We're near the end of the time I can spend on one call, so I'll put you through to the front desk/);
    expect(t.timeLimitClosed).toBe("We're near the end of the time I can spend on one call. If your pet needs urgent care, please call " +
      '5 5 5, 1 2 3, 0 0 0 0. If you still need help, please call us back. Thank you for calling Riverside Vet Clinic. Goodbye.');
    expect(speakablePhone('+447700900123')).toBe('4 4 7, 7 0 0, 9 0 0, 1 2 3');
  });

  it('renders every clip per tenant with a concurrency limit', async () => {
    let running = 0;
    let peak = 0;
    const tts = new FakeTtsProvider({
      delay: async () => {
        peak = Math.max(peak, ++running);
        await new Promise((r) => setImmediate(r));
        running--;
      },
    });
    const other = TenantSchema.parse({ ...tenant, id: 'hillside', name: 'Hillside Vets', voice: { local: 'slt' } });
    const cache = new PromptCache(tts, { concurrency: 3 });
    const result = await cache.warm([tenant, other]);
    expect(result.clips).toBe(2 * CLIP_IDS.length);
    expect(peak).toBe(3);
    expect(cache.get('hillside', 'goodbye').length).toBe(fakeTtsBytes('Thank you for calling Hillside Vets. Goodbye.'));
    expect(cache.text('riverside', 'filler')).toBe('One moment.');
    expect(tts.calls.find((c) => c.text.includes('Hillside'))?.voice).toBe('slt');
    expect(() => cache.get('nobody', 'greeting')).toThrow(/no pre-rendered clip/);
    expect(cache.has('riverside', 'menu')).toBe(true);
  });

  it('fails start-up with VET_E_PROVIDER when a clip cannot be rendered', async () => {
    const cache = new PromptCache(new FakeTtsProvider({ fail: (t) => (t === 'One moment.' ? new Error('voice missing') : null) }));
    await expect(cache.warm([tenant])).rejects.toMatchObject({ code: 'VET_E_PROVIDER', message: expect.stringContaining('"filler"') as string });
  });
});
