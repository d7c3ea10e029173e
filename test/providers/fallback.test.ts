/**
 * The resilience layer and the cloud → local fallback composites, with scripted in-memory
 * providers (the adapters themselves are tested against fake vendor servers elsewhere). Budgets are
 * small real-time values; assertions are about order and counts, with generous time margins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TenantSchema } from '../../src/config/tenant.schema.js';
import { ProviderError } from '../../src/providers/errors.js';
import { fallbackAgent, fallbackStt, fallbackTts } from '../../src/providers/fallback.js';
import { ProviderHealth } from '../../src/providers/resilience.js';
import type { AgentOutput, AgentProvider, AgentTurn, FallbackReport } from '../../src/providers/agent/types.js';
import type { SttOptions, SttProvider, SttStream } from '../../src/providers/stt/types.js';
import type { TtsOptions, TtsProvider } from '../../src/providers/tts/types.js';

const tenant = TenantSchema.parse({
  id: 'riverside', name: 'Riverside Vet Clinic', phoneNumbers: ['+15550100001'],
  greeting: 'Thanks for calling.', info: { hours: '8 to 6', address: '12 River Road' },
  transfer: { frontDesk: '+15550100002' }, emergency: { script: 'Go to the emergency hospital now.' },
});
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const budget = { firstMs: 150, idleMs: 150 };

/** What a scripted primary does on one request. */
type Script = 'ok' | 'fail429' | 'fail500' | 'auth' | 'stall' | 'partThenFail' | 'partThenStall';

function scriptedAgent(name: string, scripts: Script[]) {
  const seen = { requests: 0, aborted: 0 };
  const provider: AgentProvider = {
    name,
    startSession: () => ({
      async *respond(turn: AgentTurn): AsyncIterable<AgentOutput> {
        seen.requests++;
        turn.signal.addEventListener('abort', () => seen.aborted++, { once: true });
        const script = scripts.shift() ?? 'ok';
        if (script === 'fail429') throw new ProviderError(name, 'quota', 'rate limited', 429);
        if (script === 'fail500') throw new ProviderError(name, 'http', 'server error', 500);
        if (script === 'auth') throw new ProviderError(name, 'auth', 'bad key', 401);
        if (script === 'stall') return await new Promise<never>(() => undefined);
        yield { type: 'delta', text: `${name} says ` };
        if (script === 'partThenFail') throw new ProviderError(name, 'network', 'reset', null);
        if (script === 'partThenStall') await new Promise<never>(() => undefined);
        yield { type: 'delta', text: 'hello.' };
      },
    }),
  };
  return { provider, seen };
}

const local: AgentProvider = {
  name: 'local',
  startSession: () => ({
    async *respond(): AsyncIterable<AgentOutput> {
      await sleep(1);
      yield { type: 'delta', text: 'local says hello.' };
    },
  }),
};

async function collect(iterable: AsyncIterable<AgentOutput>): Promise<string> {
  let text = '';
  for await (const out of iterable) if (out.type === 'delta') text += out.text;
  return text;
}

function turn(signal = new AbortController().signal) {
  const reports: FallbackReport[] = [];
  return { reports, turn: { transcript: 'hi', history: [], signal, onFallback: (r: FallbackReport) => reports.push(r) } };
}

describe('agent fallback', () => {
  it('serves the turn from the primary when it answers', async () => {
    const { provider } = scriptedAgent('openai', ['ok']);
    const health = new ProviderHealth('agent', 'openai');
    const t = turn();
    expect(await collect(fallbackAgent(provider, health, local, budget).startSession(tenant).respond(t.turn))).toBe('openai says hello.');
    expect(t.reports).toEqual([]);
    expect(health.snapshot()).toMatchObject({ breaker: 'closed', recent: 1, errorRate: 0 });
  });

  it('answers the same turn locally when the primary fails before speaking, and reports it', async () => {
    const { provider, seen } = scriptedAgent('openai', ['auth']);
    const health = new ProviderHealth('agent', 'openai');
    const t = turn();
    expect(await collect(fallbackAgent(provider, health, local, budget).startSession(tenant).respond(t.turn))).toBe('local says hello.');
    expect(seen.requests).toBe(1); // auth is not transient: no retry
    expect(t.reports).toEqual([{ kind: 'agent', from: 'openai', to: 'local', reason: 'auth: bad key' }]);
    expect(health.snapshot()).toMatchObject({ errorRate: 1, lastFailure: 'auth' });
  });

  it('retries a quick transient failure once before falling back', async () => {
    const { provider, seen } = scriptedAgent('openai', ['fail429', 'ok']);
    const t = turn();
    const text = await collect(fallbackAgent(provider, new ProviderHealth('agent', 'openai'), local, budget).startSession(tenant).respond(t.turn));
    expect(text).toBe('openai says hello.');
    expect(seen.requests).toBe(2);
    expect(t.reports).toEqual([]);
  });

  it('falls back when the first token misses its budget, and cancels the stalled request', async () => {
    const { provider, seen } = scriptedAgent('openai', ['stall']);
    const t = turn();
    const started = performance.now();
    const text = await collect(fallbackAgent(provider, new ProviderHealth('agent', 'openai'), local, budget).startSession(tenant).respond(t.turn));
    expect(text).toBe('local says hello.');
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(seen.aborted).toBe(1);
    expect(t.reports[0]?.reason).toMatch(/^timeout: /);
  });

  it('never restarts a reply that has begun: a failure mid-reply goes to the call', async () => {
    for (const script of ['partThenFail', 'partThenStall'] as const) {
      const { provider } = scriptedAgent('openai', [script]);
      const t = turn();
      const seenText: string[] = [];
      const run = async () => {
        for await (const out of fallbackAgent(provider, new ProviderHealth('agent', 'openai'), local, budget).startSession(tenant).respond(t.turn)) {
          if (out.type === 'delta') seenText.push(out.text);
        }
      };
      await expect(run()).rejects.toBeInstanceOf(ProviderError);
      expect(seenText).toEqual(['openai says ']);
      expect(t.reports).toEqual([]);
    }
  });

  it('ends quietly when the call cancels the turn, without counting a failure', async () => {
    const { provider, seen } = scriptedAgent('openai', ['stall']);
    const health = new ProviderHealth('agent', 'openai');
    const ac = new AbortController();
    const t = turn(ac.signal);
    setTimeout(() => ac.abort(), 30);
    expect(await collect(fallbackAgent(provider, health, local, { firstMs: 5_000, idleMs: 5_000 }).startSession(tenant).respond(t.turn))).toBe('');
    expect(seen.aborted).toBe(1);
    expect(t.reports).toEqual([]);
    expect(health.snapshot()).toMatchObject({ recent: 0, breaker: 'closed' });
  });

  it('opens the breaker after consecutive failures, stops calling the primary, and probes it later', async () => {
    const { provider, seen } = scriptedAgent('openai', Array<Script>(5).fill('auth'));
    const health = new ProviderHealth('agent', 'openai', { failures: 5, halfOpenAfterMs: 200 });
    const transitions: string[] = [];
    health.listen({ breaker: (_h, to) => transitions.push(to) });
    const agent = fallbackAgent(provider, health, local, budget).startSession(tenant);
    for (let i = 0; i < 5; i++) await collect(agent.respond(turn().turn));
    expect(seen.requests).toBe(5);
    expect(health.state).toBe('open');

    const t = turn();
    expect(await collect(agent.respond(t.turn))).toBe('local says hello.');
    expect(seen.requests).toBe(5); // refused without a request
    expect(t.reports[0]?.reason).toMatch(/^unavailable: /);

    await sleep(250);
    expect(await collect(agent.respond(turn().turn))).toBe('openai says hello.'); // the probe succeeds
    expect(seen.requests).toBe(6);
    expect(health.state).toBe('closed');
    expect(transitions).toEqual(['open', 'halfOpen', 'closed']);
  });
});

describe('tts fallback', () => {
  const tone = (n: number) => new Uint8Array(n).fill(0x7f);
  function scriptedTts(scripts: Script[]) {
    const voices: string[] = [];
    const provider: TtsProvider = {
      name: 'elevenlabs',
      async *synthesize(_text: string, o: TtsOptions) {
        voices.push(o.voice);
        const script = scripts.shift() ?? 'ok';
        if (script === 'fail500') throw new ProviderError('elevenlabs', 'http', 'boom', 500);
        if (script === 'stall') return await new Promise<never>(() => undefined);
        yield tone(160);
        if (script === 'partThenStall') await new Promise<never>(() => undefined);
        yield tone(160);
      },
    };
    return { provider, voices };
  }
  const localTts: TtsProvider = {
    name: 'local',
    async *synthesize(_t: string, o: TtsOptions) {
      await sleep(1);
      yield new Uint8Array(80).fill(o.voice === 'kal' ? 1 : 2);
    },
  };
  const options = (reports: FallbackReport[], cloudVoice?: string): TtsOptions => ({
    voice: 'kal', ...(cloudVoice ? { cloudVoice } : {}), language: 'en-US', signal: new AbortController().signal, onFallback: (r) => reports.push(r),
  });
  const bytes = async (it: AsyncIterable<Uint8Array>) => {
    const chunks: Uint8Array[] = [];
    for await (const c of it) chunks.push(c);
    return chunks;
  };

  it('speaks with the clinic cloud voice, or the default voice', async () => {
    const { provider, voices } = scriptedTts(['ok', 'ok']);
    const tts = fallbackTts(provider, new ProviderHealth('tts', 'elevenlabs'), localTts, { defaultVoice: 'default-voice', budget });
    expect(await bytes(tts.synthesize('Hello.', options([], 'clinic-voice')))).toHaveLength(2);
    await bytes(tts.synthesize('Hello.', options([])));
    expect(voices).toEqual(['clinic-voice', 'default-voice']);
  });

  it('switches the sentence to the local voice when the first audio is late', async () => {
    const { provider } = scriptedTts(['stall']);
    const reports: FallbackReport[] = [];
    const chunks = await bytes(fallbackTts(provider, new ProviderHealth('tts', 'elevenlabs'), localTts, { defaultVoice: 'v', budget }).synthesize('Hello.', options(reports)));
    expect(chunks).toEqual([new Uint8Array(80).fill(1)]);
    expect(reports).toMatchObject([{ kind: 'tts', from: 'elevenlabs', to: 'local' }]);
  });

  it('ends a sentence whose audio stalls mid-way with a timeout, never a second voice', async () => {
    const { provider } = scriptedTts(['partThenStall']);
    const reports: FallbackReport[] = [];
    const tts = fallbackTts(provider, new ProviderHealth('tts', 'elevenlabs'), localTts, { defaultVoice: 'v', budget });
    const got: Uint8Array[] = [];
    const run = async () => {
      for await (const c of tts.synthesize('Hello.', options(reports))) got.push(c);
    };
    await expect(run()).rejects.toMatchObject({ failure: 'timeout' });
    expect(got).toHaveLength(1);
    expect(reports).toEqual([]);
  });
});

describe('stt fallback', () => {
  /** A recognizer that records what it was fed and answers on demand. */
  class Recorder implements SttStream {
    frames = 0;
    events: string[] = [];
    closed = false;
    constructor(readonly options: SttOptions) {}
    write(): void {
      this.frames++;
    }
    speechStarted(): void {
      this.events.push(`start@${this.frames}`);
    }
    speechEnded(): void {
      this.events.push(`end@${this.frames}`);
    }
    close(): void {
      this.closed = true;
    }
  }
  function provider(name: string, opened: Recorder[], onEnd?: (r: Recorder) => void): SttProvider {
    return {
      name,
      open(options) {
        const r = new Recorder(options);
        if (onEnd) {
          const ended = r.speechEnded.bind(r);
          r.speechEnded = () => (ended(), onEnd(r));
        }
        opened.push(r);
        return r;
      },
    };
  }
  const streams: SttStream[] = [];
  afterEach(() => {
    for (const s of streams.splice(0)) s.close();
  });
  function open(primary: SttProvider, fallback: SttProvider, health = new ProviderHealth('stt', 'openai')) {
    const finals: string[] = [];
    const errors: Error[] = [];
    const reports: FallbackReport[] = [];
    const stream = fallbackStt(primary, health, fallback, 150).open({
      language: 'en-US', vocabulary: [], signal: new AbortController().signal,
      onPartial: () => undefined, onFinal: (t) => finals.push(t), onError: (e) => errors.push(e), onFallback: (r) => reports.push(r),
    });
    streams.push(stream);
    return { stream, finals, errors, reports };
  }
  const frame = new Int16Array(160);
  const feed = (s: SttStream, n: number) => {
    for (let i = 0; i < n; i++) s.write(frame);
  };

  it('passes finals through from a healthy primary', () => {
    const primaries: Recorder[] = [];
    const { stream, finals } = open(provider('openai', primaries, (r) => r.options.onFinal('what are your hours', 0.9)), provider('local', []));
    feed(stream, 30);
    stream.speechStarted();
    feed(stream, 50);
    stream.speechEnded();
    expect(finals).toEqual(['what are your hours']);
    expect(primaries[0]?.events).toEqual(['start@30', 'end@80']);
  });

  it('replays the utterance into the local recognizer when the cloud stream breaks mid-speech', () => {
    const primaries: Recorder[] = [];
    const locals: Recorder[] = [];
    const { stream, finals, errors, reports } = open(provider('openai', primaries), provider('local', locals, (r) => r.options.onFinal('bleeding', null)));
    feed(stream, 30); // 20 of them are kept as pre-roll
    stream.speechStarted();
    feed(stream, 40);
    primaries[0]!.options.onError(new ProviderError('openai', 'network', 'socket closed'));
    expect(primaries[0]!.closed).toBe(true);
    expect(locals[0]?.events).toEqual(['start@20']); // pre-roll first, then the utterance so far
    expect(locals[0]?.frames).toBe(60);
    feed(stream, 10);
    stream.speechEnded();
    expect(finals).toEqual(['bleeding']);
    expect(errors).toEqual([]);
    expect(reports).toEqual([{ kind: 'stt', from: 'openai', to: 'local', reason: 'network: socket closed' }]);
    expect(locals[0]?.events).toEqual(['start@20', 'end@70']);
  });

  it('asks the local recognizer when the final transcript is late, once', async () => {
    const primaries: Recorder[] = [];
    const locals: Recorder[] = [];
    const { stream, finals, reports } = open(provider('openai', primaries), provider('local', locals, (r) => r.options.onFinal('yes', null)));
    stream.speechStarted();
    feed(stream, 25);
    stream.speechEnded();
    await sleep(250);
    expect(finals).toEqual(['yes']);
    expect(reports[0]?.reason).toMatch(/^timeout: /);
    primaries[0]!.options.onFinal('too late', 0.5); // ignored: the call moved on
    expect(finals).toEqual(['yes']);
  });

  it('starts on the local recognizer while the cloud breaker is open', () => {
    const health = new ProviderHealth('stt', 'openai', { failures: 1, halfOpenAfterMs: 60_000 });
    const primaries: Recorder[] = [];
    open(provider('openai', primaries), provider('local', []), health);
    // A bad key fails the socket before the caller says anything: it still counts.
    primaries[0]!.options.onError(new ProviderError('openai', 'auth', 'bad key', 401));
    return sleep(10).then(() => {
      expect(health.state).toBe('open');
      const second = open(provider('openai', primaries), provider('local', []), health);
      expect(primaries).toHaveLength(1);
      expect(second.reports[0]?.reason).toMatch(/^unavailable: /);
    });
  });
});
