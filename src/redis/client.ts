/**
 * The Redis connections of one instance (REDIS_URL; Redis 7 or Valkey, via ioredis). This directory
 * (src/redis) is the only code that knows Redis: its key names, its commands and ioredis (eslint
 * fence). Two connections: one for commands (stream-token claims, the failure rate limiter, the
 * call directory, publishing) and one in subscriber mode for the live updates.
 *
 * Failure policy (docs/operations.md "Several instances"): commands never queue while the
 * connection is down (`enableOfflineQueue: false`) and time out after COMMAND_TIMEOUT_MS, so a
 * missing Redis costs a request a fast error, never a hang; ioredis reconnects on its own.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { VetError } from '../errors.js';

/** A command that has not answered by then fails (a stream upgrade must not wait on Redis). */
export const COMMAND_TIMEOUT_MS = 1_000;
/** Start-up gives Redis this long to answer PING. */
export const CONNECT_TIMEOUT_MS = 5_000;
/** Every key this engine writes starts with this. */
export const KEY_PREFIX = 'vetline:';

/** `redis://:secret@host:6379/2` → `redis://host:6379/2`: where, never the password. */
export function redisTarget(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return '(unparsable REDIS_URL)';
  }
}

/** An instance's name in the directory and on the bus: host, process and a random part (restarts differ). */
export function newInstanceId(): string {
  return `${hostname().replace(/[^\w.-]/g, '_').slice(0, 40)}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export interface RedisLinks {
  /** Commands (and publishing). */
  readonly commands: Redis;
  /** Subscriber mode only. */
  readonly subscriber: Redis;
  readonly target: string;
  close(): Promise<void>;
}

const options = (name: string) => ({
  lazyConnect: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: COMMAND_TIMEOUT_MS,
  connectTimeout: CONNECT_TIMEOUT_MS,
  connectionName: name,
  // Reconnect forever, at most every 2 s: Redis coming back must heal the instance without a restart.
  retryStrategy: (times: number) => Math.min(100 * times, 2_000),
});

/**
 * Connects both links and checks that Redis answers. Unreachable, refusing or rejecting the
 * password: VET_E_REDIS naming the target (never the password) and what to do.
 */
export async function connectRedis(url: string, logger: Logger): Promise<RedisLinks> {
  const target = redisTarget(url);
  const commands = new Redis(url, options('vetline'));
  const subscriber = new Redis(url, options('vetline-sub'));
  let warned = false;
  let started = false;
  let firstError: Error | null = null;
  const onError = (link: string) => (err: Error) => {
    // Before start-up succeeded, the error is the reason start-up gives (not an outage to log).
    if (!started) return void (firstError ??= err);
    // ioredis emits an error per failed reconnect attempt: one warning per outage is enough.
    if (warned) return;
    warned = true;
    logger.warn({ code: 'VET_E_REDIS', link, target, err: { message: err.message } }, 'Redis connection lost; shared state degraded until it returns');
  };
  commands.on('error', onError('commands'));
  subscriber.on('error', onError('subscriber'));
  commands.on('ready', () => {
    if (warned) logger.info({ target }, 'Redis connection back');
    warned = false;
  });
  const close = async () => {
    await Promise.all([commands, subscriber].map((c) => c.quit().catch(() => c.disconnect())));
  };
  try {
    await Promise.all([commands.connect(), subscriber.connect()]);
    const pong = await commands.ping();
    if (pong !== 'PONG') throw new Error(`PING answered ${JSON.stringify(pong)}`);
    started = true;
  } catch (err) {
    commands.disconnect();
    subscriber.disconnect();
    // "Connection is closed." says less than the socket error that closed it (ECONNREFUSED, WRONGPASS …).
    const cause = firstError ?? err;
    const reason = cause instanceof Error ? cause.message.split(url).join(target) : String(cause);
    throw new VetError(
      'VET_E_REDIS',
      `REDIS_URL: Redis at ${target} did not answer (${reason}); start Redis (or Valkey) there, check host, port, password and TLS ` +
        '(rediss://) in REDIS_URL, or unset REDIS_URL to run a single instance without shared state',
      { cause: err },
    );
  }
  return { commands, subscriber, target, close };
}
