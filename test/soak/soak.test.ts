/**
 * Short soak (docs/design/reliability.md §4 recipe 3; the full one is `npm run soak`, docs/performance.md):
 * a few hundred short calls over the real protocol against one in-process engine must leave
 * nothing behind (registry, sockets, HTTP connections, open journals, call sessions/actors, timers
 * and handles back to the baseline) and memory flat after warm-up. The detector itself is checked:
 * a leak planted in the engine through its session tap must be measured and fail the run.
 */
import { describe, expect, it } from 'vitest';
import { runSoak } from '../../scripts/soak.js';
import { sized } from '../support/long.js';

/** Generous for a short run on a shared machine: the full soak's bound is 200 B/call. */
const CI_MAX_SLOPE = 8 * 1024;
/** `npm run test:long`: 2,000 calls, 5 samples after 1,000 of warm-up. */
const RUN = sized({ calls: 400, warmup: 200, sampleEvery: 100 }, { calls: 2_000, warmup: 1_000, sampleEvery: 250 });
const SAMPLES = (RUN.calls - RUN.warmup) / RUN.sampleEvery + 1;

describe('soak', () => {
  it(`${RUN.calls} short calls, 100 at a time: no leaked resources, heap and array buffers flat`, async () => {
    const r = await runSoak({ ...RUN, concurrency: 100, frames: 20, maxSlope: CI_MAX_SLOPE });
    expect(r.failures).toEqual([]);
    expect(r.callsCompleted).toBe(RUN.calls);
    expect(r.leaks).toEqual({
      registryActive: 0, websocketClients: 0, httpConnections: 0, journalsOpen: 0, liveSessions: 0, liveCallers: 0, resourcesOverBaseline: {},
    });
    expect(r.slopes.samplesUsed).toBe(SAMPLES);
    expect(r.slopes.heapUsed).toBeLessThan(CI_MAX_SLOPE);
    expect(r.slopes.arrayBuffers).toBeLessThan(CI_MAX_SLOPE);
    expect(r.recentOutcomes).toEqual({ callerHungUp: 200 }); // the registry keeps the last 200
    expect(r.engineLog.errors).toBe(0);
    expect(r.pass).toBe(true);
  }, sized(50_000, 900_000));

  it('a planted leak of 64 KiB per call is measured and fails the run', async () => {
    const planted = 64 * 1024;
    const r = await runSoak({ calls: 200, concurrency: 100, frames: 20, sampleEvery: 100, warmup: 100, maxSlope: CI_MAX_SLOPE, plantLeakBytes: planted, journal: false });
    expect(r.pass).toBe(false);
    expect(r.failures.some((f) => f.startsWith('heapUsed grows'))).toBe(true);
    expect(r.slopes.heapUsed).toBeGreaterThan(planted / 2);
    expect(r.slopes.heapUsed).toBeLessThan(planted * 2);
    // It is retained memory, not a leaked resource: everything else is clean.
    expect(r.leaks.liveSessions).toBe(0);
    expect(r.leaks.registryActive).toBe(0);
  }, 40_000);
});
