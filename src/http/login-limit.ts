/**
 * Failed sign-ins (inspector, front desk) per client address: after LOGIN_LIMIT.maxFailures wrong
 * tokens within LOGIN_LIMIT.windowMs the address gets 429 VET_E_RATE_LIMITED (with Retry-After) for
 * every sign-in, the right token included, until the window has passed. Successful sign-ins are not
 * counted. Built on @fastify/rate-limit's `createRateLimit` (bounded LRU store, IPv6 /64 keys);
 * the address is `req.ip`, so behind a proxy set TRUST_PROXY or every client shares one budget.
 * With REDIS_URL the counts are kept in Redis (the plugin's Redis store): a wrong token tried on one
 * instance counts on every instance. A Redis error counts nothing (`skipOnError`).
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export const LOGIN_LIMIT = { maxFailures: 10, windowMs: 15 * 60_000 } as const;

export interface LoginLimiter {
  /** Seconds until this address may try again, or null when it may now. Counts nothing. */
  blockedFor(req: FastifyRequest): Promise<number | null>;
  /** Counts one failed sign-in from this address. */
  failed(req: FastifyRequest): Promise<void>;
}

/** Where the counts are shared (REDIS_URL): an ioredis client and this limiter's own key prefix. */
export interface SharedLimitStore {
  client: object;
  nameSpace: string;
}

/** Registers the limiter's store in `scope` (an encapsulated plugin scope of its own). */
export async function createLoginLimiter(
  scope: FastifyInstance,
  limits: { maxFailures: number; windowMs: number } = LOGIN_LIMIT,
  shared?: SharedLimitStore,
): Promise<LoginLimiter> {
  const store = shared ? { redis: shared.client, nameSpace: shared.nameSpace, skipOnError: true } : {};
  if (!scope.hasDecorator('createRateLimit')) await scope.register(rateLimit, { global: false, ...store });
  const limit = scope.createRateLimit({ max: limits.maxFailures, timeWindow: limits.windowMs });
  return {
    async blockedFor(req) {
      const seen = await limit(req, { increment: false });
      return seen.isAllowed || seen.remaining > 0 ? null : Math.max(1, seen.ttlInSeconds);
    },
    async failed(req) {
      await limit(req);
    },
  };
}
