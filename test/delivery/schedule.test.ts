import { describe, expect, it } from 'vitest';
import { nextRetryAt, retryDelayMs } from '../../src/delivery/schedule.js';

const S = 1_000;
const M = 60 * S;
const H = 60 * M;

describe('retry schedule', () => {
  it('waits 5 s, 30 s, 2 min, 10 min after attempts 1-4, then an hour', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 4, 5, 6, 30].map((n) => retryDelayMs(n, mid))).toEqual([5 * S, 30 * S, 2 * M, 10 * M, H, H, H]);
  });

  it('spreads each wait ±20 %', () => {
    expect(retryDelayMs(1, () => 0)).toBe(4 * S);
    expect(retryDelayMs(1, () => 0.999_999_9)).toBe(6 * S);
    expect(retryDelayMs(5, () => 0)).toBe(48 * M);
    expect(retryDelayMs(5, () => 0.999_999_9)).toBe(72 * M);
    for (let i = 0; i < 200; i++) {
      const d = retryDelayMs(3);
      expect(d).toBeGreaterThanOrEqual(96 * S);
      expect(d).toBeLessThanOrEqual(144 * S);
    }
  });

  it('schedules no retry past expiresAt', () => {
    const mid = () => 0.5;
    expect(nextRetryAt(1, 1_000, 6_000, mid)).toBe(6_000);
    expect(nextRetryAt(1, 1_001, 6_000, mid)).toBeNull();
    expect(nextRetryAt(5, 0, 24 * H, mid)).toBe(H);
  });
});
