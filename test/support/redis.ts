/**
 * A throwaway Redis for tests (test/redis/*.test.ts): Debian's `redis-server` (`/usr/bin/redis-server`,
 * or REDIS_SERVER), on a free loopback port, persistence off (`--save '' --appendonly no`) with its
 * working directory in a temporary directory removed on stop. Without the binary the suites skip
 * with a reason; under CI (CI set) they fail instead, since .ci/run installs the redis-server package.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnServer } from './child-server.js';
import { freePort } from './net.js';

/** The redis-server binary, or null when there is none. */
export function findRedisServer(): string | null {
  const candidates = [process.env.REDIS_SERVER, '/usr/bin/redis-server', '/usr/local/bin/redis-server'];
  return candidates.find((p): p is string => p !== undefined && p !== '' && existsSync(p)) ?? null;
}

export const REDIS_SKIP_REASON = 'skipped: no redis-server; .ci/run installs the redis-server package';
export const inCi = Boolean(process.env.CI);

export interface RedisServer {
  port: number;
  pid: number | undefined;
  url: string;
  /** Shutdown without saving, then the directory is removed. */
  stop(): Promise<void>;
}

/** True once Redis answers a PING on the port (`+PONG`, or `-NOAUTH` when it wants a password). */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d: Buffer) => done(/^(\+PONG|-NOAUTH)/.test(d.toString())));
  });
}

/** `port`: a given one (to bring a stopped server back where its clients reconnect); default a free one. */
export async function startRedis(binary: string, opts: { password?: string; port?: number } = {}): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'vetline-redis-'));
  const port = opts.port ?? (await freePort());
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'];
  if (opts.password) args.push('--requirepass', opts.password);
  // SIGTERM: redis-server shuts down without saving (persistence is off).
  const { child, log, exited, stop } = spawnServer(binary, args, { dir, stopSignal: 'SIGTERM', killAfterMs: 5_000 });
  const deadline = Date.now() + 10_000;
  while (!(await pings(port))) {
    if (exited() || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server did not start on port ${port}:\n${log.join('')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  return { port, pid: child.pid, url: `redis://${auth}127.0.0.1:${port}/0`, stop };
}
