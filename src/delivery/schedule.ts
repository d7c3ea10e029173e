/**
 * Retry schedule (docs/delivery.md "Retries"): after attempt 1, 2, 3, 4 wait 5 s, 30 s, 2 min,
 * 10 min; after that every hour. Each wait is spread ±20 % so receivers coming back up are not hit
 * by every instance at once. No retry is scheduled past the delivery's `expiresAt` (created + 24 h):
 * the attempt that would need one is the last, and the delivery fails with its error.
 */
export const RETRY_DELAYS_MS: readonly number[] = [5_000, 30_000, 120_000, 600_000];
export const RETRY_EVERY_MS = 3_600_000;
export const RETRY_JITTER = 0.2;

/** The wait after failed attempt `attempt` (1-based), jittered by `random()` ∈ [0, 1). */
export function retryDelayMs(attempt: number, random: () => number = Math.random): number {
  const base = RETRY_DELAYS_MS[Math.max(1, Math.floor(attempt)) - 1] ?? RETRY_EVERY_MS;
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * r));
}

/** When to try again after failed attempt `attempt` at `now`, or null when that is past `expiresAt`. */
export function nextRetryAt(attempt: number, now: number, expiresAt: number, random: () => number = Math.random): number | null {
  const at = now + retryDelayMs(attempt, random);
  return at > expiresAt ? null : at;
}
