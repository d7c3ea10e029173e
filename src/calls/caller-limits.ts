/**
 * Per-caller limits of a clinic (`limits.concurrentCallsPerCaller`, `limits.callsPerCallerPerHour`;
 * docs/configuration.md "Limits"), checked at /twilio/voice before a call reaches the assistant.
 *
 * The caller is a keyed hash of the signed `From` (HMAC-SHA-256 with CALLER_KEY_SECRET, or a random
 * key per process): the number itself is never stored, logged or counted in a metric. Concurrency
 * is counted from the registry's live calls; calls per hour in a `CallerCallLog`, a sliding window
 * kept in memory here. A shared store (Redis: a sorted set per key, ZADD NX / ZREMRANGEBYSCORE /
 * ZCARD in one script) can implement the same interface for several instances.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Tenant } from '../config/tenant.schema.js';

/** Calls per caller over a sliding window: the one piece several instances would need to share. */
export interface CallerCallLog {
  /**
   * Records `callSid` for `key` at `nowMs` unless `max` calls are already recorded in the `windowMs`
   * before; true if recorded. A CallSid already recorded (a repeated webhook) is admitted again
   * without counting twice.
   */
  admit(key: string, callSid: string, nowMs: number, windowMs: number, max: number): Promise<boolean>;
  /** Forgets a recorded call that then did not reach the assistant (refused for another reason). */
  forget(key: string, callSid: string): Promise<void>;
}

export const HOUR_MS = 60 * 60 * 1000;

/** In memory, per process. Bounded: past `maxKeys` callers, expired ones are swept, then the oldest dropped. */
export class MemoryCallerLog implements CallerCallLog {
  private readonly calls = new Map<string, { callSid: string; at: number }[]>();

  constructor(private readonly maxKeys = 50_000) {}

  get size(): number {
    return this.calls.size;
  }

  admit(key: string, callSid: string, nowMs: number, windowMs: number, max: number): Promise<boolean> {
    const recent = (this.calls.get(key) ?? []).filter((c) => c.at > nowMs - windowMs);
    let admitted = true;
    if (!recent.some((c) => c.callSid === callSid)) {
      admitted = recent.length < max;
      // A copy: the CallSid parsed from the webhook is a slice of the whole form body, which it would
      // keep alive for the hour (~450 B a call; found by test/soak/soak.test.ts).
      if (admitted) recent.push({ callSid: JSON.parse(JSON.stringify(callSid)) as string, at: nowMs });
    }
    this.calls.delete(key); // re-inserted last: the Map's order is least recently used first
    if (recent.length > 0) this.calls.set(key, recent);
    if (this.calls.size > this.maxKeys) this.shrink(nowMs, windowMs);
    return Promise.resolve(admitted);
  }

  forget(key: string, callSid: string): Promise<void> {
    const rest = (this.calls.get(key) ?? []).filter((c) => c.callSid !== callSid);
    if (rest.length > 0) this.calls.set(key, rest);
    else this.calls.delete(key);
    return Promise.resolve();
  }

  private shrink(nowMs: number, windowMs: number): void {
    for (const [key, calls] of this.calls) if (calls.every((c) => c.at <= nowMs - windowMs)) this.calls.delete(key);
    for (const key of this.calls.keys()) {
      if (this.calls.size <= this.maxKeys) break;
      this.calls.delete(key);
    }
  }
}

export type CallerLimit = 'concurrent' | 'hourly';

export type CallerVerdict =
  /** `key`: the caller's hash for the registry, or null when the call carries no usable number (not limited). */
  | { kind: 'admitted'; key: string | null }
  | { kind: 'limited'; limit: CallerLimit };

export interface CallerLimitsOptions {
  /** CALLER_KEY_SECRET; null: a random key for this process (enough while the log is in memory). */
  secret: string | null;
  /** Calls of `tenantId` with the assistant from the caller `key`, `exceptCallSid` not counted (the registry). */
  liveCalls(tenantId: string, key: string, exceptCallSid: string): number;
  log?: CallerCallLog;
  /** Wall clock, epoch ms. */
  now?: () => number;
}

export class CallerLimits {
  private readonly secret: Buffer;
  private readonly log: CallerCallLog;
  private readonly now: () => number;
  /** Calls refused per clinic and limit (`vetline_caller_limited_total`). */
  readonly refused = new Map<string, Map<CallerLimit, number>>();

  constructor(private readonly opts: CallerLimitsOptions) {
    this.secret = opts.secret === null ? randomBytes(32) : Buffer.from(opts.secret, 'utf8');
    this.log = opts.log ?? new MemoryCallerLog();
    this.now = opts.now ?? Date.now;
  }

  /** The caller's key: 128 bits of HMAC-SHA-256 of the number. Not reversible without the secret. */
  keyOf(from: string): string {
    return createHmac('sha256', this.secret).update(from).digest('base64url').slice(0, 22);
  }

  /**
   * May this call reach the assistant? `from`: the caller's own number, or null (none or withheld:
   * not limited). Concurrency is checked first, so a refused call takes no slot of the hour.
   */
  async admit({ callSid, tenant, from }: { callSid: string; tenant: Tenant; from: string | null }): Promise<CallerVerdict> {
    if (from === null) return { kind: 'admitted', key: null };
    const key = this.keyOf(from);
    const { concurrentCallsPerCaller, callsPerCallerPerHour } = tenant.limits;
    if (this.opts.liveCalls(tenant.id, key, callSid) >= concurrentCallsPerCaller) return this.limited(tenant.id, 'concurrent');
    const admitted = await this.log.admit(`${tenant.id}:${key}`, callSid, this.now(), HOUR_MS, callsPerCallerPerHour);
    return admitted ? { kind: 'admitted', key } : this.limited(tenant.id, 'hourly');
  }

  /** The admitted call did not reach the assistant after all (draining, capacity): give its slot back. */
  release({ callSid, tenant, key }: { callSid: string; tenant: Tenant; key: string }): Promise<void> {
    return this.log.forget(`${tenant.id}:${key}`, callSid);
  }

  private limited(clinic: string, limit: CallerLimit): CallerVerdict {
    const counts = this.refused.get(clinic) ?? new Map<CallerLimit, number>();
    counts.set(limit, (counts.get(limit) ?? 0) + 1);
    this.refused.set(clinic, counts);
    return { kind: 'limited', limit };
  }
}
