/**
 * How a provider failed, independent of the vendor. Adapters translate their SDK's errors into a
 * ProviderError so the resilience layer (src/providers/resilience.ts) can decide: retry, fall back,
 * open the breaker. Messages never carry keys, request bodies or transcripts.
 */
export type ProviderFailure =
  /** No first byte, or no next chunk, within the budget (the stream was cancelled). */
  | 'timeout'
  /** The server answered 401/403: a bad key. Not retried; trips the breaker at once. */
  | 'auth'
  /** 429: rate or concurrency limit. */
  | 'quota'
  /** 5xx or a 4xx other than the above. */
  | 'http'
  /** Connection refused, reset, DNS, TLS, socket closed mid-stream. */
  | 'network'
  /** The server sent something the adapter cannot read (malformed JSON/SSE, wrong audio). */
  | 'protocol'
  /** The circuit breaker is open: the provider was not called. */
  | 'unavailable';

export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  constructor(
    /** Provider name, e.g. `openai`, `elevenlabs`. */
    readonly provider: string,
    readonly failure: ProviderFailure,
    message: string,
    readonly status: number | null = null,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** Worth another attempt (before any output reached the caller). */
  get transient(): boolean {
    return this.failure === 'timeout' || this.failure === 'quota' || this.failure === 'http' || this.failure === 'network';
  }
}

/** Maps an HTTP status to a failure kind. */
export function failureForStatus(status: number): ProviderFailure {
  if (status === 401 || status === 403) return 'auth';
  if (status === 429) return 'quota';
  return 'http';
}
