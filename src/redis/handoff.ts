/**
 * Call take-over between instances over Redis pub/sub (the `CallHandoff` of src/calls/handoff.ts):
 * a call's webhook was answered by one instance and its Media Stream reached another, which holds a
 * verified stream token for a call it does not know. It asks every instance on
 * `vetline:handoff:take` (`{ id, callSid, replyTo }`); each answers on `vetline:handoff:reply:<replyTo>`
 * with what its `release` gave (the seed, or null when it does not hold the call waiting). The asker
 * knows how many instances heard the question (PUBLISH's answer), so it stops at the first seed, at
 * the last "not here", or after TAKE_TIMEOUT_MS (an instance that died mid-question).
 *
 * Redis unreachable: `take` rejects; the stream upgrade is then refused and Twilio plays the
 * clinic's key menu. The seed (the caller's number as the clinic's privacy setting keeps it, and its
 * keyed hash) travels only through Redis, never into a log line.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { KEY_PREFIX } from './client.js';

/** Longest wait for the holder's answer; Twilio's handshake waits for us meanwhile. */
export const TAKE_TIMEOUT_MS = 1_000;

const ASK = `${KEY_PREFIX}handoff:take`;
const replyChannel = (instance: string) => `${KEY_PREFIX}handoff:reply:${instance}`;

interface Pending {
  expected: number | null;
  answers: number;
  resolve: (seed: unknown) => void;
}

export class RedisHandoff {
  private readonly pending = new Map<string, Pending>();
  private release: ((callSid: string) => unknown) | null = null;

  private constructor(
    private readonly pub: Redis,
    private readonly instanceId: string,
    private readonly logger: Logger,
  ) {}

  static async open(pub: Redis, sub: Redis, instanceId: string, logger: Logger): Promise<RedisHandoff> {
    const h = new RedisHandoff(pub, instanceId, logger);
    sub.on('message', (channel: string, text: string) => {
      if (channel === ASK) h.asked(text);
      else if (channel === replyChannel(instanceId)) h.answered(text);
    });
    await sub.subscribe(ASK, replyChannel(instanceId));
    return h;
  }

  /** What this instance answers: its registry's `release` (the seed, or null). */
  serve(release: (callSid: string) => unknown): void {
    this.release = release;
  }

  /** Asks the other instances to give `callSid` up: the holder's seed, or null when none holds it. */
  async take(callSid: string, timeoutMs = TAKE_TIMEOUT_MS): Promise<unknown> {
    const id = randomBytes(8).toString('hex');
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<unknown>((resolve) => {
      this.pending.set(id, { expected: null, answers: 0, resolve });
      timer = setTimeout(() => resolve(null), timeoutMs);
    });
    try {
      const heard = await this.pub.publish(ASK, JSON.stringify({ id, callSid, replyTo: this.instanceId }));
      const p = this.pending.get(id);
      if (p) {
        p.expected = Math.max(0, heard - 1); // this instance heard its own question too
        if (p.answers >= p.expected) p.resolve(null);
      }
      return await answer;
    } finally {
      clearTimeout(timer);
      this.pending.delete(id);
    }
  }

  private asked(text: string): void {
    const q = parse(text) as { id?: unknown; callSid?: unknown; replyTo?: unknown } | null;
    if (!q || typeof q.id !== 'string' || typeof q.callSid !== 'string' || typeof q.replyTo !== 'string' || q.replyTo === this.instanceId) return;
    let seed: unknown = null;
    try {
      seed = this.release?.(q.callSid) ?? null;
    } catch (err) {
      this.logger.error({ err, code: 'VET_E_INTERNAL' }, 'call release for another instance failed');
    }
    this.pub.publish(replyChannel(q.replyTo), JSON.stringify({ id: q.id, seed })).catch((err: unknown) => {
      this.logger.warn({ code: 'VET_E_REDIS', err: { message: (err as Error).message } }, 'call take-over answer not sent');
    });
  }

  private answered(text: string): void {
    const a = parse(text) as { id?: unknown; seed?: unknown } | null;
    if (!a || typeof a.id !== 'string') return;
    const p = this.pending.get(a.id);
    if (!p) return;
    p.answers++;
    if (a.seed !== null && a.seed !== undefined) p.resolve(a.seed);
    else if (p.expected !== null && p.answers >= p.expected) p.resolve(null);
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
