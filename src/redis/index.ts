/**
 * What several instances share through Redis when REDIS_URL is set (issue #14 part 4,
 * docs/operations.md "Several instances"): stream-token single use, the failed-signature rate
 * limiter's counters, the live call directory, live updates for the inspector and the desk, and the
 * take-over of a call whose stream reached another instance than its webhook.
 * main.ts (and the test engine) opens it; src/server.ts plugs each part in. Without REDIS_URL none
 * of this exists and the engine keeps all of it in its own memory.
 */
import type { Logger } from 'pino';
import { LiveBus } from './bus.js';
import { connectRedis, newInstanceId, redisTarget } from './client.js';
import { CallDirectory, type DirectoryCall } from './directory.js';
import { RedisHandoff } from './handoff.js';
import { RedisTokenUses } from './token-uses.js';

export type { LiveTopic } from './bus.js';
export type { DirectoryCall, RemoteCall } from './directory.js';
export { HEARTBEATS_TO_EXPIRE } from './directory.js';
export { registerSharedMetrics } from './metrics.js';
export { redisTarget };

/** Key prefix of @fastify/rate-limit's Redis store (its own keys, counted by its own script). */
export const RATE_LIMIT_NAMESPACE = 'vetline:rate-limit:';

export interface SharedState {
  readonly instanceId: string;
  /** `redis://host:port/db`, for logs. */
  readonly target: string;
  /** A `TokenUseStore` (src/calls/stream-token.ts). */
  readonly tokenUses: RedisTokenUses;
  /** The client handed to @fastify/rate-limit's `redis` option (its Redis store). */
  readonly rateLimitClient: object;
  readonly bus: LiveBus;
  /** Call take-over between instances (a `CallHandoff`, src/calls/handoff.ts); `serve` binds the registry. */
  readonly handoff: RedisHandoff;
  /** Bound to this instance's calls (and their number, cheap) by `directory(local, count)`; started there. */
  directory(local: () => DirectoryCall[], count?: () => number): CallDirectory;
  /** Whether both connections are up (commands and subscriber). */
  connected(): boolean;
  /** Stops the heartbeat (removing this instance's calls) and closes both connections. */
  close(): Promise<void>;
}

/** Connects, PINGs and disconnects (the cluster primary's start-up check): VET_E_REDIS when Redis does not answer. */
export async function checkRedis(url: string, logger: Logger): Promise<void> {
  const links = await connectRedis(url, logger);
  await links.close();
}

export async function openSharedState(opts: { url: string; heartbeatMs: number; logger: Logger; instanceId?: string }): Promise<SharedState> {
  const links = await connectRedis(opts.url, opts.logger);
  const instanceId = opts.instanceId ?? newInstanceId();
  let bus: LiveBus;
  let handoff: RedisHandoff;
  try {
    bus = await LiveBus.open(links.commands, links.subscriber, instanceId, opts.logger);
    handoff = await RedisHandoff.open(links.commands, links.subscriber, instanceId, opts.logger);
  } catch (err) {
    await links.close();
    throw err;
  }
  let directory: CallDirectory | null = null;
  return {
    instanceId,
    target: links.target,
    tokenUses: new RedisTokenUses(links.commands),
    rateLimitClient: links.commands,
    bus,
    handoff,
    directory(local, count) {
      directory ??= new CallDirectory(links.commands, { instanceId, heartbeatMs: opts.heartbeatMs, local, ...(count ? { count } : {}), logger: opts.logger });
      directory.start();
      return directory;
    },
    connected: () => links.commands.status === 'ready' && links.subscriber.status === 'ready',
    async close() {
      await directory?.stop();
      await links.close();
    },
  };
}
