/**
 * Fallback composites: a cloud provider first, the embedded one when it fails, each behind the
 * interface the call already uses. The switch happens before the caller hears anything of the
 * failed attempt, so a failing cloud costs a pause, never a broken sentence (docs/design/reliability.md §2):
 *
 * - agent: per turn. Primary fails, stalls or is paused before its first output → the same turn
 *   goes to the local receptionist. After output has started, the error goes to the call (apology).
 * - tts: per sentence, the same rule with the clinic's local voice.
 * - stt: per call. The recognizer is a stream: when the cloud stream breaks, or a final transcript
 *   misses its budget, the call moves to the local recognizer for good, and the utterance in
 *   flight is replayed into it from a buffer, so the caller does not have to repeat it.
 *
 * Every switch is reported through the options' `onFallback` (the call journals it as a
 * `provider.fallback` event) and counts in the provider's health.
 */
import { BUDGETS } from '../../machines/call/budgets.js';
import { ProviderError } from './errors.js';
import { guardedStream, type ProviderHealth, type StreamBudget } from './resilience.js';
import type { AgentCallInfo, AgentOutput, AgentProvider, AgentSession, AgentTurn } from './agent/types.js';
import type { SttOptions, SttProvider, SttStream } from './stt/types.js';
import type { TtsOptions, TtsProvider } from './tts/types.js';
import type { Tenant } from '../config/tenant.schema.js';

/** Budgets per kind (docs/design/reliability.md F9/F10, tightened so the caller never waits past the 3 s silence rule). */
export interface ProviderBudgets {
  agent: StreamBudget;
  tts: StreamBudget;
  /** From the end of an utterance to its final transcript. */
  sttFinalMs: number;
}

export const DEFAULT_BUDGETS: ProviderBudgets = {
  // The filler clip covers 1.5 s; the local receptionist answers in a few ms after a switch.
  agent: { firstMs: BUDGETS.agentFirstOutputMs, idleMs: BUDGETS.agentIdleMs },
  tts: { firstMs: BUDGETS.ttsFirstAudioMs, idleMs: BUDGETS.ttsIdleMs },
  // The call gives up on a transcript after 2 s; leave the local recognizer time to decode.
  sttFinalMs: BUDGETS.sttFallbackFinalMs,
};

const reasonOf = (err: unknown) =>
  err instanceof ProviderError ? `${err.failure}: ${err.message}` : err instanceof Error ? err.message : String(err);

/** Errors worth a fallback; anything else (a bug in our code) surfaces. */
const isProviderFailure = (err: unknown): err is ProviderError => err instanceof ProviderError;

export function fallbackAgent(primary: AgentProvider, health: ProviderHealth, fallback: AgentProvider, budget: StreamBudget = DEFAULT_BUDGETS.agent): AgentProvider {
  return {
    name: primary.name,
    startSession(tenant: Tenant, call?: AgentCallInfo): AgentSession {
      const main = primary.startSession(tenant, call);
      let spare: AgentSession | null = null;
      return {
        async *respond(turn: AgentTurn): AsyncIterable<AgentOutput> {
          let spoke = false;
          try {
            for await (const out of guardedStream(health, (signal) => main.respond({ ...turn, signal }), { ...budget, signal: turn.signal })) {
              if (out.type === 'delta' || out.type === 'request') spoke = true; // never run a committed request twice
              yield out;
            }
            return;
          } catch (err) {
            if (spoke || !isProviderFailure(err)) throw err;
            turn.onFallback?.({ kind: 'agent', from: primary.name, to: fallback.name, reason: reasonOf(err) });
          }
          spare ??= fallback.startSession(tenant, call);
          yield* spare.respond(turn);
        },
      };
    },
  };
}

export function fallbackTts(
  primary: TtsProvider,
  health: ProviderHealth,
  fallback: TtsProvider,
  options: { defaultVoice: string; budget?: StreamBudget },
): TtsProvider {
  const budget = options.budget ?? DEFAULT_BUDGETS.tts;
  return {
    name: primary.name,
    async *synthesize(text: string, opts: TtsOptions): AsyncIterable<Uint8Array> {
      let played = false;
      try {
        const voice = opts.cloudVoice ?? options.defaultVoice;
        for await (const chunk of guardedStream(health, (signal) => primary.synthesize(text, { ...opts, voice, signal }), { ...budget, signal: opts.signal })) {
          played = true;
          yield chunk;
        }
        return;
      } catch (err) {
        if (played || !isProviderFailure(err)) throw err;
        opts.onFallback?.({ kind: 'tts', from: primary.name, to: fallback.name, reason: reasonOf(err) });
      }
      yield* fallback.synthesize(text, opts);
    },
  };
}

/** Frames of 20 ms kept from before speechStarted, for a replay into the fallback recognizer. */
const PRE_ROLL_FRAMES = 20;
/** An utterance longer than this is not replayed whole (60 s, docs/design/reliability.md F13). */
const MAX_UTTERANCE_FRAMES = 3_000;

export function fallbackStt(primary: SttProvider, health: ProviderHealth, fallback: SttProvider, budget = DEFAULT_BUDGETS.sttFinalMs): SttProvider {
  return {
    name: primary.name,
    open(options: SttOptions): SttStream {
      return new FallbackSttStream(primary, health, fallback, budget, options);
    },
  };
}

type Utterance = 'idle' | 'speaking' | 'awaitingFinal';

class FallbackSttStream implements SttStream {
  private active: SttStream;
  private usingFallback = false;
  private closed = false;
  private utterance: Utterance = 'idle';
  /** Pre-roll ring (idle) and the utterance so far (speaking / awaiting its final). */
  private frames: Int16Array[] = [];
  private finalTimer: ReturnType<typeof setTimeout> | null = null;
  private endedAt = 0;
  /** Settles the primary's breaker record for the utterance in flight. */
  private settle: ((error: ProviderError | null) => void) | null = null;

  constructor(
    private readonly primary: SttProvider,
    private readonly health: ProviderHealth,
    private readonly fallback: SttProvider,
    private readonly budgetMs: number,
    private readonly options: SttOptions,
  ) {
    if (health.available) {
      this.active = primary.open({
        ...options,
        onPartial: (text) => {
          if (!this.usingFallback) options.onPartial(text);
        },
        onFinal: (text, confidence) => this.primaryFinal(text, confidence),
        onError: (error) => this.primaryFailed(error instanceof ProviderError ? error : new ProviderError(primary.name, 'protocol', error.message)),
      });
    } else {
      this.active = this.openFallback(`unavailable: ${primary.name} is paused after repeated failures`);
    }
  }

  write(pcm: Int16Array): void {
    if (this.closed) return;
    if (!this.usingFallback) this.keep(pcm);
    this.active.write(pcm);
  }

  speechStarted(): void {
    if (this.closed) return;
    this.utterance = 'speaking';
    if (!this.usingFallback) this.startRecord();
    this.active.speechStarted();
  }

  speechEnded(): void {
    if (this.closed) return;
    this.utterance = 'awaitingFinal';
    this.active.speechEnded();
    if (this.usingFallback) return;
    this.endedAt = performance.now();
    this.finalTimer = setTimeout(() => this.primaryFailed(new ProviderError(this.primary.name, 'timeout', `stt: no final transcript within ${this.budgetMs} ms`)), this.budgetMs);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearTimer();
    this.settle?.(null);
    this.settle = null;
    this.active.close();
    this.frames = [];
  }

  private keep(pcm: Int16Array): void {
    // The stream's frames may be reused by the caller: keep a copy. While idle (most of a call) the
    // oldest pre-roll frame's buffer is recycled, so the per-frame path allocates nothing.
    const full = this.utterance === 'idle' ? PRE_ROLL_FRAMES : MAX_UTTERANCE_FRAMES;
    const oldest = this.frames.length >= full ? this.frames.shift()! : null;
    if (oldest && oldest.length === pcm.length) {
      oldest.set(pcm);
      this.frames.push(oldest);
    } else this.frames.push(pcm.slice());
  }

  /** One breaker record per utterance: success when its final arrives, failure when it does not. */
  private startRecord(): void {
    this.settle?.(null);
    let settle!: (error: ProviderError | null) => void;
    const outcome = new Promise<ProviderError | null>((resolve) => (settle = resolve));
    this.settle = settle;
    void this.health.breaker
      .execute(async () => {
        const error = await outcome;
        if (error) throw error;
      })
      .catch(() => undefined);
  }

  private primaryFinal(text: string, confidence: number | null): void {
    if (this.usingFallback || this.closed) return;
    if (this.utterance === 'awaitingFinal') this.health.record(true, performance.now() - this.endedAt);
    this.clearTimer();
    this.settle?.(null);
    this.settle = null;
    this.utterance = 'idle';
    this.frames = this.frames.slice(-PRE_ROLL_FRAMES);
    this.options.onFinal(text, confidence);
  }

  private primaryFailed(error: ProviderError): void {
    if (this.usingFallback || this.closed) return;
    this.clearTimer();
    this.health.record(false, null, error.failure);
    // Count it against the breaker: through the utterance in flight, or on its own (a socket that
    // failed before the caller spoke, e.g. a bad key at connect).
    if (this.settle) this.settle(error);
    else void this.health.breaker.execute(() => Promise.reject(error)).catch(() => undefined);
    this.settle = null;
    const failed = this.active;
    const replay = this.frames;
    this.frames = [];
    this.active = this.openFallback(`${error.failure}: ${error.message}`);
    failed.close();
    // Replay what the caller said so far into the fallback, then catch it up with the VAD state.
    const spoken = this.utterance !== 'idle';
    const preRoll = spoken ? replay.slice(0, PRE_ROLL_FRAMES) : replay;
    for (const pcm of preRoll) this.active.write(pcm);
    if (spoken) {
      this.active.speechStarted();
      for (const pcm of replay.slice(PRE_ROLL_FRAMES)) this.active.write(pcm);
      if (this.utterance === 'awaitingFinal') this.active.speechEnded();
    }
  }

  private openFallback(reason: string): SttStream {
    this.usingFallback = true;
    this.options.onFallback?.({ kind: 'stt', from: this.primary.name, to: this.fallback.name, reason });
    return this.fallback.open({
      ...this.options,
      onFinal: (text, confidence) => {
        this.utterance = 'idle';
        this.options.onFinal(text, confidence);
      },
    });
  }

  private clearTimer(): void {
    if (this.finalTimer) clearTimeout(this.finalTimer);
    this.finalTimer = null;
  }
}
