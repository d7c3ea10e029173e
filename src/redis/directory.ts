/**
 * The live call directory shared by instances. Every heartbeat an instance writes all its live
 * calls as one key, `vetline:directory:<instance>` (JSON, expiring after 3 heartbeats), and names
 * itself in the set `vetline:directory:instances`. Listing reads every named instance's key; an
 * instance that died (kill -9, lost machine) stops beating, its key expires, and its calls leave
 * the listing within 3 heartbeats (it is then dropped from the set too). A call starting or ending
 * is written within CHANGE_CHECK_MS rather than at the next beat. A draining instance deletes
 * its key when it stops. No clock is compared between machines: expiry is Redis' own.
 *
 * Redis unreachable: beats fail (logged once per outage by the connection) and `list` rejects; the
 * call listing then shows this instance's calls only and says it is incomplete.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { KEY_PREFIX } from './client.js';

/** One live call as listed (the shape of the registry's CallListing). */
export interface DirectoryCall {
  callSid: string;
  tenantId: string;
  state: string;
  startedAt: string;
  durationMs: number;
  stateDurationMs: number;
}

/** A call another instance holds: as it was at that instance's last beat, durations brought forward. */
export interface RemoteCall extends DirectoryCall {
  instance: string;
}

/** How often the number of calls is compared with the last beat's (a started or ended call is written then). */
export const CHANGE_CHECK_MS = 250;
/** An entry expires after this many heartbeats without a rewrite. */
export const HEARTBEATS_TO_EXPIRE = 3;

const INSTANCES = `${KEY_PREFIX}directory:instances`;
const entryKey = (instance: string) => `${KEY_PREFIX}directory:${instance}`;

interface Entry {
  at: number;
  calls: DirectoryCall[];
}

export class CallDirectory {
  private timer: NodeJS.Timeout | null = null;
  private changeTimer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly redis: Redis,
    private readonly opts: {
      instanceId: string;
      heartbeatMs: number;
      local: () => DirectoryCall[];
      /** How many calls this instance holds (cheap): a change is written within CHANGE_CHECK_MS, not at the next beat. */
      count?: () => number;
      logger: Logger;
    },
  ) {}

  /** The window after which a silent instance's calls are gone. */
  get expiresAfterMs(): number {
    return this.opts.heartbeatMs * HEARTBEATS_TO_EXPIRE;
  }

  /** Beats now, then every heartbeat, and soon after the number of calls changed. */
  start(): void {
    if (this.timer || this.stopped) return;
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.opts.heartbeatMs).unref();
    const count = this.opts.count;
    if (count && this.opts.heartbeatMs > CHANGE_CHECK_MS) {
      let last = count();
      this.changeTimer = setInterval(() => {
        const now = count();
        if (now !== last) void this.beat();
        last = now;
      }, CHANGE_CHECK_MS).unref();
    }
  }

  /** Writes this instance's calls now (also used to publish a change before the next beat). */
  beat(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    // One write at a time: a slow Redis must not pile up beats.
    this.beating ??= this.write().finally(() => {
      this.beating = null;
    });
    return this.beating;
  }

  private async write(): Promise<void> {
    const entry: Entry = { at: Date.now(), calls: this.opts.local() };
    try {
      await this.redis
        .multi()
        .set(entryKey(this.opts.instanceId), JSON.stringify(entry), 'PX', this.expiresAfterMs)
        .sadd(INSTANCES, this.opts.instanceId)
        .exec();
    } catch (err) {
      this.opts.logger.debug({ code: 'VET_E_REDIS', err: { message: (err as Error).message } }, 'directory heartbeat failed');
    }
  }

  /** Calls held by the other live instances (this one's come from its own registry). Rejects when Redis cannot be read. */
  async list(): Promise<RemoteCall[]> {
    const instances = (await this.redis.smembers(INSTANCES)).filter((id) => id !== this.opts.instanceId).sort();
    if (instances.length === 0) return [];
    const values = await this.redis.mget(instances.map(entryKey));
    const now = Date.now();
    const calls: RemoteCall[] = [];
    const gone: string[] = [];
    instances.forEach((instance, i) => {
      const entry = parseEntry(values[i] ?? null);
      if (!entry) return void gone.push(instance);
      const age = Math.max(0, now - entry.at);
      for (const c of entry.calls) calls.push({ ...c, durationMs: c.durationMs + age, stateDurationMs: c.stateDurationMs + age, instance });
    });
    if (gone.length > 0) await this.redis.srem(INSTANCES, ...gone).catch(() => undefined);
    return calls;
  }

  /** Stops beating and removes this instance's calls at once (a clean shutdown). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.changeTimer) clearInterval(this.changeTimer);
    this.timer = this.changeTimer = null;
    await this.beating;
    await this.redis
      .multi()
      .del(entryKey(this.opts.instanceId))
      .srem(INSTANCES, this.opts.instanceId)
      .exec()
      .catch(() => undefined); // Redis gone: the key expires on its own
  }
}

function parseEntry(text: string | null): Entry | null {
  if (text === null) return null;
  try {
    const v = JSON.parse(text) as Partial<Entry>;
    return typeof v.at === 'number' && Array.isArray(v.calls) ? (v as Entry) : null;
  } catch {
    return null;
  }
}
