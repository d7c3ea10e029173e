/**
 * src/redis against a real redis-server this file starts (test/support/redis.ts): stream-token
 * claims shared by two instances (`SET NX PX`), the call directory (durations brought forward,
 * a clean stop leaves at once), the live-update
 * bus (others hear, the publisher does not), call take-over between instances, and start-up and mid-run failures: VET_E_REDIS naming
 * where and what to do, never the password; a claim fails closed when Redis is gone.
 *
 * Without redis-server the suite is skipped and says so; under CI (CI set) it fails instead.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVetError } from '../../src/errors.js';
import { openSharedState, type DirectoryCall, type SharedState } from '../../src/redis/index.js';
import { freePort } from '../support/net.js';
import { REDIS_SKIP_REASON, findRedisServer, inCi, startRedis, type RedisServer } from '../support/redis.js';

const binary = findRedisServer();
const quiet = pino({ level: 'silent' });

if (!binary && inCi) {
  describe('Redis shared state (CI)', () => {
    it('has redis-server (.ci/run installs the redis-server package)', () => {
      expect.fail('CI is set but there is no /usr/bin/redis-server: test/redis/*.test.ts need it (.ci/run installs redis-server)');
    });
  });
}

const call = (callSid: string, durationMs = 1_000): DirectoryCall => ({
  callSid, tenantId: 'quick-vet', state: 'listening.waiting', startedAt: new Date(Date.now() - durationMs).toISOString(), durationMs, stateDurationMs: 100,
});

describe.skipIf(!binary)(binary ? 'Redis shared state' : `Redis shared state (${REDIS_SKIP_REASON})`, () => {
  let redis: RedisServer;
  const opened: SharedState[] = [];
  const open = async (heartbeatMs = 100) => {
    const s = await openSharedState({ url: redis.url, heartbeatMs, logger: quiet });
    opened.push(s);
    return s;
  };
  beforeAll(async () => {
    redis = await startRedis(binary!);
  }, 20_000);
  afterAll(async () => {
    await Promise.all(opened.map((s) => s.close()));
    await redis?.stop();
  });

  it('a stream-token nonce is claimed once across instances, and again only after its time-to-live', async () => {
    const [a, b] = await Promise.all([open(), open()]);
    expect(await a.tokenUses.claim('nonce-1', 60_000)).toBe(true);
    expect(await b.tokenUses.claim('nonce-1', 60_000)).toBe(false);
    expect(await a.tokenUses.claim('nonce-1', 60_000)).toBe(false);
    expect(await b.tokenUses.claim('nonce-2', 60_000)).toBe(true);
    // Ten instances racing for one nonce: exactly one wins.
    const racers = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).tokenUses.claim('raced', 60_000)));
    expect(racers.filter(Boolean)).toHaveLength(1);
    expect(await a.tokenUses.claim('short', 150)).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(await b.tokenUses.claim('short', 150)).toBe(true);
    // A key shape the engine never mints is refused without asking Redis.
    expect(await a.tokenUses.claim('a b*', 60_000)).toBe(false);
  });

  it('the directory lists the other instances\' calls, brought forward; and a clean stop leaves at once (a killed one: test/redis/instances.test.ts)', async () => {
    const [a, b, c] = await Promise.all([open(100), open(100), open(100)]);
    let aCalls = [call('CA1', 5_000), call('CA2')];
    const da = a.directory(() => aCalls);
    const db = b.directory(() => []);
    const dc = c.directory(() => [call('CA3')]);
    await Promise.all([da.beat(), db.beat(), dc.beat()]);
    const seen = await db.list();
    expect(seen.map((x) => `${x.instance === a.instanceId ? 'a' : x.instance === c.instanceId ? 'c' : '?'}:${x.callSid}`).sort()).toEqual(['a:CA1', 'a:CA2', 'c:CA3']);
    expect(seen.find((x) => x.callSid === 'CA1')!.durationMs).toBeGreaterThanOrEqual(5_000);
    expect((await da.list()).map((x) => x.callSid)).toEqual(['CA3']); // its own calls are not in it
    aCalls = [call('CA2')];
    await expect.poll(async () => (await db.list()).map((x) => x.callSid).sort(), { timeout: 2_000 }).toEqual(['CA2', 'CA3']);

    await c.close(); // clean: deleted now
    expect((await db.list()).map((x) => x.callSid)).toEqual(['CA2']);

  });

  it('a call starting or ending reaches the directory within a second (checked every 250 ms), not at the next 5 s heartbeat', async () => {
    const [a, b] = await Promise.all([open(5_000), open(5_000)]);
    let calls: DirectoryCall[] = [];
    a.directory(() => calls, () => calls.length);
    const db = b.directory(() => []);
    const seen = async () => (await db.list()).filter((x) => x.instance === a.instanceId).map((x) => x.callSid);
    await expect.poll(seen, { timeout: 1_000 }).toEqual([]);
    calls = [call('CA-new')];
    await expect.poll(seen, { timeout: 1_000, interval: 20 }).toEqual(['CA-new']);
    calls = [];
    await expect.poll(seen, { timeout: 1_000, interval: 20 }).toEqual([]);
  });

  it('live updates reach the other instances, not the publisher; on-demand topics only while someone listens', async () => {
    const [a, b, c] = await Promise.all([open(), open(), open()]);
    const heard: string[] = [];
    a.bus.on('desk', (p) => heard.push(`a:${String(p)}`));
    b.bus.on('desk', (p) => heard.push(`b:${String(p)}`));
    c.bus.on('inspector', (p) => heard.push(`c-inspector:${String(p)}`));
    a.bus.publish('desk', 'clinic-1');
    await expect.poll(() => heard.slice().sort(), { timeout: 2_000 }).toEqual(['b:clinic-1']);

    // Nobody listens to `inspector`: the first message finds no one, the next ones are not even sent.
    heard.length = 0;
    a.bus.publishWhenHeard('inspector', 'unheard-1');
    await new Promise((r) => setTimeout(r, 100));
    await c.bus.interest('inspector', true);
    a.bus.publishWhenHeard('inspector', 'dropped-within-the-probe-window');
    await new Promise((r) => setTimeout(r, 100));
    expect(heard).toEqual([]);
    a.bus.heard('inspector'); // a listener asked (inspector-sync): publish at once
    a.bus.publishWhenHeard('inspector', 'heard-1');
    await expect.poll(() => heard, { timeout: 2_000 }).toEqual(['c-inspector:heard-1']);
    await c.bus.interest('inspector', false);
    a.bus.publishWhenHeard('inspector', 'unheard-2');
    await new Promise((r) => setTimeout(r, 100));
    expect(heard).toEqual(['c-inspector:heard-1']);
  });

  it('a call is taken over from whichever instance holds it; "nobody" is known without waiting out the timeout', async () => {
    const [a, b, c] = await Promise.all([open(), open(), open()]);
    const held = new Map([['CA-held', { from: null, callerKey: 'k1' }]]);
    a.handoff.serve((callSid) => {
      const seed = held.get(callSid) ?? null;
      held.delete(callSid);
      return seed;
    });
    b.handoff.serve(() => null);
    c.handoff.serve(() => null);
    expect(await c.handoff.take('CA-held')).toEqual({ from: null, callerKey: 'k1' });
    const t0 = performance.now();
    expect(await b.handoff.take('CA-held')).toBeNull(); // released once: gone
    expect(await b.handoff.take('CA-nobody')).toBeNull();
    expect(performance.now() - t0).toBeLessThan(500); // every instance said "not here": no 1 s timeout
  });

  it('unreachable Redis at start: VET_E_REDIS naming where and what to do, never the password', async () => {
    const port = await freePort();
    const err: unknown = await openSharedState({ url: `redis://:hunter2-secret@127.0.0.1:${port}/0`, heartbeatMs: 100, logger: quiet }).catch((e: unknown) => e);
    expect(isVetError(err) && err.code).toBe('VET_E_REDIS');
    const message = (err as Error).message;
    expect(message).toContain(`redis://127.0.0.1:${port}/0`);
    expect(message).toMatch(/start Redis .*unset REDIS_URL/);
    expect(message).not.toContain('hunter2');
  }, 20_000);

  it('a wrong password at start: VET_E_REDIS without the password', async () => {
    const locked = await startRedis(binary!, { password: 'right-password-123' });
    try {
      const err: unknown = await openSharedState({ url: locked.url.replace('right-password-123', 'wrong-password-456'), heartbeatMs: 100, logger: quiet }).catch((e: unknown) => e);
      expect(isVetError(err) && err.code).toBe('VET_E_REDIS');
      expect((err as Error).message).not.toMatch(/password-(123|456)/);
      const ok = await openSharedState({ url: locked.url, heartbeatMs: 100, logger: quiet });
      expect(await ok.tokenUses.claim('n', 1_000)).toBe(true);
      await ok.close();
    } finally {
      await locked.stop();
    }
  }, 20_000);

  it('Redis gone mid-run: a claim rejects quickly (fails closed), the directory rejects, publishing does not throw', async () => {
    const own = await startRedis(binary!);
    const s = await openSharedState({ url: own.url, heartbeatMs: 100, logger: quiet });
    const d = s.directory(() => [call('CA1')]);
    await own.stop();
    const t0 = performance.now();
    await expect(s.tokenUses.claim('after-outage', 60_000)).rejects.toThrow();
    expect(performance.now() - t0).toBeLessThan(2_000);
    await expect(d.list()).rejects.toThrow();
    expect(() => s.bus.publish('desk', 'x')).not.toThrow();
    await s.close();
  }, 20_000);
});
