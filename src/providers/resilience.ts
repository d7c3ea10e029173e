/**
 * Provider resilience: one circuit breaker and health record per provider, and a guarded stream
 * that puts budgets on every provider call (first item, then each next item) instead of the SDKs'
 * minute-long defaults. Built on cockatiel (circuit breaker, retry with jittered backoff); the
 * fallback composites in ./fallback.ts use it to switch a call to the embedded providers before
 * the caller notices (docs/design/reliability.md §2: rungs 2–3).
 *
 * Cancellation is not failure: when the call aborts a request (barge-in, hang-up) nothing is
 * counted against the provider and nothing is retried.
 */
import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  circuitBreaker,
  handleWhen,
  retry,
  wrap,
  type CircuitBreakerPolicy,
  type IPolicy,
} from 'cockatiel';
import { AsyncQueue } from './async-queue.js';
import { ProviderError, type ProviderFailure } from './errors.js';

export type ProviderKind = 'stt' | 'agent' | 'tts';
export type BreakerState = 'closed' | 'open' | 'halfOpen';

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  failures: number;
  /** How long it stays open before one probe request is let through. */
  halfOpenAfterMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { failures: 5, halfOpenAfterMs: 30_000 };

/** What the health endpoint and metrics show for one provider. */
export interface ProviderHealthSnapshot {
  kind: ProviderKind;
  provider: string;
  breaker: BreakerState;
  /** Requests in the recent window (last 100). */
  recent: number;
  /** Share of them that failed, 0..1. */
  errorRate: number;
  /** Time to first result of the recent successful requests, ms (null before any). */
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  /** Failure kind of the most recent failure. */
  lastFailure: ProviderFailure | null;
}

export interface ProviderHealthListener {
  result?(health: ProviderHealth, ok: boolean, latencyMs: number | null, failure: ProviderFailure | null): void;
  breaker?(health: ProviderHealth, state: BreakerState): void;
}

const WINDOW = 100;

/** Raised inside a guarded call when the *caller* cancelled it; never counted as a provider failure. */
export class ProviderCancelled extends Error {
  override readonly name = 'ProviderCancelled';
}

/** One provider of one kind (e.g. the OpenAI agent): its breaker and its recent record. */
export class ProviderHealth {
  readonly breaker: CircuitBreakerPolicy;
  /** Breaker + one quick retry for transient failures before any output (see `guardedStream`). */
  readonly policy: IPolicy;
  private readonly results: { ok: boolean; ms: number | null }[] = [];
  private lastFailure: ProviderFailure | null = null;
  private readonly listeners = new Set<ProviderHealthListener>();
  /** When the breaker last opened (cockatiel measures with Date.now() too); null while closed. */
  private openedAt: number | null = null;
  private readonly halfOpenAfterMs: number;

  constructor(
    readonly kind: ProviderKind,
    readonly provider: string,
    options: BreakerOptions = DEFAULT_BREAKER,
  ) {
    this.halfOpenAfterMs = options.halfOpenAfterMs;
    this.breaker = circuitBreaker(handleWhen((e) => e instanceof ProviderError), {
      halfOpenAfter: options.halfOpenAfterMs,
      breaker: new ConsecutiveBreaker(options.failures),
    });
    this.breaker.onStateChange((state) => {
      this.openedAt = state === CircuitState.Open ? Date.now() : state === CircuitState.Closed ? null : this.openedAt;
      for (const l of this.listeners) l.breaker?.(this, breakerState(state));
    });
    // Retry is decided per error by `retryable` (set on the error by guardedStream): transient, fast,
    // and before anything reached the caller. Decorrelated-jitter backoff, 80–250 ms.
    const again = retry(handleWhen((e) => e instanceof ProviderError && retryable.has(e)), {
      maxAttempts: 1,
      backoff: new ExponentialBackoff({ initialDelay: 80, maxDelay: 250 }),
    });
    this.policy = wrap(again, this.breaker);
  }

  get state(): BreakerState {
    return breakerState(this.breaker.state);
  }

  /**
   * Closed: requests go through. Open: refused until `halfOpenAfterMs`, then the next request is
   * the probe. Half-open (the probe is in flight): refused, so no caller waits on the probe.
   */
  get available(): boolean {
    const state = this.breaker.state;
    return state === CircuitState.Closed || (state === CircuitState.Open && this.probeDue());
  }

  listen(listener: ProviderHealthListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  record(ok: boolean, latencyMs: number | null, failure: ProviderFailure | null = null): void {
    this.results.push({ ok, ms: latencyMs });
    if (this.results.length > WINDOW) this.results.shift();
    if (!ok) this.lastFailure = failure;
    for (const l of this.listeners) l.result?.(this, ok, latencyMs, failure);
  }

  snapshot(): ProviderHealthSnapshot {
    const latencies = this.results.filter((r) => r.ok && r.ms !== null).map((r) => r.ms!).sort((a, b) => a - b);
    const failed = this.results.filter((r) => !r.ok).length;
    return {
      kind: this.kind,
      provider: this.provider,
      breaker: this.state,
      recent: this.results.length,
      errorRate: this.results.length === 0 ? 0 : round3(failed / this.results.length),
      latencyP50Ms: quantile(latencies, 0.5),
      latencyP95Ms: quantile(latencies, 0.95),
      lastFailure: this.lastFailure,
    };
  }

  private probeDue(): boolean {
    return this.openedAt !== null && Date.now() - this.openedAt >= this.halfOpenAfterMs;
  }
}

const retryable = new WeakSet<ProviderError>();

function breakerState(state: CircuitState): BreakerState {
  if (state === CircuitState.Closed) return 'closed';
  if (state === CircuitState.HalfOpen) return 'halfOpen';
  return 'open'; // Open or Isolated
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
}

export interface StreamBudget {
  /** The first item must arrive within this, from the start of the first attempt. */
  firstMs: number;
  /** Then each next item within this. */
  idleMs: number;
}

/**
 * Runs `open` under the provider's breaker with the budget, yielding its items as they arrive.
 * - Failures (ProviderError, or anything else, wrapped as `protocol`) count against the breaker;
 *   a missed budget is a `timeout`. Aborting `signal` ends the stream quietly (ProviderCancelled
 *   is thrown only if the consumer keeps iterating), and is not counted.
 * - A transient failure (429, 5xx, network) that comes back before any item, with at least half of
 *   the first-item budget left, is retried once after a short jittered pause.
 * - The breaker being open throws ProviderError `unavailable` without calling the provider.
 */
export async function* guardedStream<T>(
  health: ProviderHealth,
  open: (signal: AbortSignal) => AsyncIterable<T>,
  options: StreamBudget & { signal: AbortSignal; now?: () => number },
): AsyncGenerator<T> {
  const now = options.now ?? (() => performance.now());
  const outer = options.signal;
  if (outer.aborted) return;
  if (!health.available) throw new ProviderError(health.provider, 'unavailable', `${health.kind} provider ${health.provider} is paused after repeated failures`);

  const queue = new AsyncQueue<T>();
  const started = now();
  let attempt: AbortController | null = null;
  let emitted = false;

  const run = async (): Promise<void> => {
    const ac = new AbortController();
    attempt = ac;
    const cancel = () => ac.abort(new ProviderCancelled('cancelled by the call'));
    outer.addEventListener('abort', cancel, { once: true });
    const deadline = (ms: number, what: string) =>
      setTimeout(() => ac.abort(new ProviderError(health.provider, 'timeout', `${health.kind}: no ${what} within ${ms} ms`)), ms);
    let timer = deadline(Math.max(0, options.firstMs - (now() - started)), 'first result');
    const aborted = abortPromise(ac.signal);
    const iterator = open(ac.signal)[Symbol.asyncIterator]();
    try {
      for (;;) {
        // Raced with the abort: a provider that ignores its signal still cannot hold the call.
        const next = await Promise.race([iterator.next(), aborted]);
        if (next.done || ac.signal.aborted) break;
        const item = next.value;
        clearTimeout(timer);
        if (!emitted) health.record(true, now() - started);
        emitted = true;
        queue.push(item);
        timer = deadline(options.idleMs, 'next result');
      }
      if (ac.signal.aborted) throw ac.signal.reason;
    } catch (err) {
      const error = classify(err, ac.signal, health.provider);
      if (error instanceof ProviderError) {
        if (!emitted) health.record(false, null, error.failure);
        if (!emitted && error.transient && error.failure !== 'timeout' && now() - started < options.firstMs / 2) retryable.add(error);
      }
      throw error;
    } finally {
      clearTimeout(timer);
      outer.removeEventListener('abort', cancel);
      if (ac.signal.aborted) void iterator.return?.().catch(() => undefined);
    }
  };

  health.policy.execute(run).then(
    () => queue.end(),
    (err: unknown) => queue.fail(err instanceof BrokenCircuitError ? new ProviderError(health.provider, 'unavailable', `${health.kind} provider ${health.provider} is paused after repeated failures`) : err),
  );
  try {
    yield* queue;
  } catch (err) {
    if (err instanceof ProviderCancelled || outer.aborted) return;
    throw err;
  } finally {
    // The consumer stopped early (return/throw): cancel the request in flight.
    (attempt as AbortController | null)?.abort(new ProviderCancelled('consumer stopped'));
  }
}

/** Settles (as "done") when the signal aborts; never rejects. */
function abortPromise(signal: AbortSignal): Promise<IteratorReturnResult<undefined>> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve({ done: true, value: undefined });
    else signal.addEventListener('abort', () => resolve({ done: true, value: undefined }), { once: true });
  });
}

/** Turns whatever the adapter threw into ProviderError / ProviderCancelled. */
function classify(err: unknown, signal: AbortSignal, provider: string): Error {
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof ProviderError || reason instanceof ProviderCancelled) return reason;
    return new ProviderCancelled('cancelled');
  }
  if (err instanceof ProviderError || err instanceof ProviderCancelled) return err;
  return new ProviderError(provider, 'protocol', err instanceof Error ? err.message : String(err));
}
