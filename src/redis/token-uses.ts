/**
 * Single use of stream tokens across instances: the first `SET vetline:stream-nonce:<nonce> 1 NX PX
 * <ttl>` wins, every later one (on any instance) finds the key and is refused. Implements
 * `TokenUseStore` (src/calls/stream-token.ts) structurally, so this layer imports nothing above it.
 *
 * Redis unreachable: `claim` rejects (fail closed). The stream upgrade is then refused before the
 * handshake and Twilio plays the clinic's fallback menu (the verbs after </Connect>), never silence;
 * a replay is never let through because Redis could not be asked.
 */
import type { Redis } from 'ioredis';
import { KEY_PREFIX } from './client.js';

const NONCE = /^[A-Za-z0-9_-]{1,128}$/;

export class RedisTokenUses {
  constructor(private readonly redis: Redis) {}

  async claim(nonce: string, ttlMs: number): Promise<boolean> {
    // The nonce comes from a verified token, but the key must never be steerable: check its shape anyway.
    if (!NONCE.test(nonce)) return false;
    const ttl = Math.max(1, Math.ceil(ttlMs));
    const answer = await this.redis.set(`${KEY_PREFIX}stream-nonce:${nonce}`, '1', 'PX', ttl, 'NX');
    return answer === 'OK';
  }
}
