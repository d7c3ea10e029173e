/**
 * `npm start`'s command with REDIS_URL (src/main.ts): a malformed URL stops start-up with
 * VET_E_CONFIG, an unreachable Redis with VET_E_REDIS saying what to do, neither showing the
 * password; with a real Redis the instance starts, says where its shared state is (without the
 * password) with WORKERS=2, each worker an instance of its own, serves the shared call listing and
 * drains to exit 0 on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/net.js';
import { REDIS_SKIP_REASON, findRedisServer, startRedis } from '../support/redis.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const binary = findRedisServer();
const PASSWORD = 'pa55-w0rd-never-shown';
/** REDIS_URL requires it (instances verify each other's stream tokens). */
const SECRET = { STREAM_TOKEN_SECRET: '5f0c2e9a7b41d83c6e2f9a0b4d7c1e85' };

function start(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', STT_PROVIDER: 'fake', TTS_PROVIDER: 'fake', AGENT_PROVIDER: 'fake', VAD_PROVIDER: 'fake', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

describe('npm start with REDIS_URL', () => {
  it('a malformed REDIS_URL stops start-up with VET_E_CONFIG, without echoing it', async () => {
    const run = start({ REDIS_URL: `http://:${PASSWORD}@127.0.0.1:6379` });
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('VET_E_CONFIG');
    expect(run.output()).toContain('REDIS_URL: must be a redis:// or rediss:// URL');
    expect(run.output()).not.toContain(PASSWORD);
  }, 30_000);

  it('an unreachable Redis stops start-up with VET_E_REDIS naming where and what to do, never the password', async () => {
    const port = await freePort();
    const run = start({ ...SECRET, REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${port}/0` });
    expect(await run.exited).toBe(1);
    expect(run.output()).toContain('VET_E_REDIS');
    expect(run.output()).toContain(`redis://127.0.0.1:${port}/0`);
    expect(run.output()).toContain('ECONNREFUSED'); // the socket's reason, not "Connection is closed"
    expect(run.output()).toContain('unset REDIS_URL');
    expect(run.output()).not.toContain(PASSWORD);
    expect(run.output()).not.toContain('Redis connection lost'); // not an outage: it never started
  }, 30_000);

  it('with WORKERS=2 the primary checks Redis first: one VET_E_REDIS and exit 1, not workers restarted in a loop', async () => {
    const port = await freePort();
    const run = start({ ...SECRET, WORKERS: '2', REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${port}/0` });
    expect(await run.exited).toBe(1);
    expect(run.output().match(/VET_E_REDIS\n/g)).toHaveLength(1);
    expect(run.output()).not.toContain('worker died');
    expect(run.output()).not.toContain(PASSWORD);
  }, 30_000);

  describe.skipIf(!binary)(binary ? 'with a real Redis' : `with a real Redis (${REDIS_SKIP_REASON})`, () => {
    it('WORKERS=2: each worker starts sharing state as an instance of its own (logged without the password), serves the shared call listing, and all drain to exit 0 on SIGTERM', async () => {
      const redis = await startRedis(binary!, { password: PASSWORD });
      const port = await freePort();
      const run = start({ ...SECRET, WORKERS: '2', PORT: String(port), REDIS_URL: redis.url, REDIS_HEARTBEAT_MS: '200' });
      try {
        const deadline = Date.now() + 45_000;
        while (!run.output().includes('vetline ready')) {
          if (Date.now() > deadline || run.child.exitCode !== null) throw new Error(`engine did not start:\n${run.output()}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        const ready = run.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'vetline ready');
        expect(ready?.shared).toMatchObject({ redis: `redis://127.0.0.1:${redis.port}/0` });
        expect(run.output()).not.toContain(PASSWORD);
        const sessions = await fetch(`http://127.0.0.1:${port}/twilio/sessions`);
        expect(await sessions.json()).toEqual({ calls: [] });
        // Each of the two workers is an instance of its own in Redis, behind the one port.
        const health = async () => ((await (await fetch(`http://127.0.0.1:${port}/twilio/health`)).json()) as { workers?: number }).workers;
        await expect.poll(health, { timeout: 30_000 }).toBe(2);
        await expect.poll(() => run.output().match(/"msg":"vetline ready"/g)?.length, { timeout: 30_000 }).toBe(2);
        const instances = new Set(run.output().split('\n').filter((l) => l.includes('"vetline ready"')).map((l) => (JSON.parse(l) as { shared: { instance: string } }).shared.instance));
        expect(instances.size).toBe(2);
      } finally {
        run.child.kill('SIGTERM');
      }
      expect(await run.exited).toBe(0);
      await redis.stop();
    }, 90_000);
  });
});
