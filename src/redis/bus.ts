/**
 * Live updates between instances over Redis pub/sub: one channel per topic
 * (`vetline:live:<topic>`), each message `{ from: <instance>, payload }` as JSON. An instance hears
 * only the others (its own pages are served in-process first, with no round trip). Pub/sub is
 * fire-and-forget: a message published while Redis is away is lost, and pages resynchronise as
 * they already do after a missed update (the desk re-reads its list, the inspector re-asks the
 * detail on watch). ioredis re-subscribes by itself after a reconnect.
 *
 * Heard only by interest: an instance subscribes to the `inspector` topic only while it has pages
 * open (`interest`), and `publishWhenHeard` stops publishing for ON_DEMAND_PROBE_MS when PUBLISH says
 * nobody heard, so calls nobody inspects cost no Redis traffic beyond one probe a second. A new
 * listener asks the others to send what it missed (`inspector-sync`, always subscribed).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { KEY_PREFIX } from './client.js';

/**
 * `callbacks`: Twilio callbacks for calls another instance holds (src/calls/callback-relay.ts);
 * `inspector-sync`: an instance whose first inspector page opened asks for the others' live calls.
 */
export type LiveTopic = 'desk' | 'inspector' | 'callbacks' | 'inspector-sync';

const channelOf = (topic: LiveTopic) => `${KEY_PREFIX}live:${topic}`;
const TOPICS: readonly LiveTopic[] = ['desk', 'inspector', 'callbacks', 'inspector-sync'];
/** Subscribed for the instance's whole life; the others only while `interest` says so. */
const ALWAYS: readonly LiveTopic[] = ['desk', 'callbacks', 'inspector-sync'];
/** After a PUBLISH nobody heard, `publishWhenHeard` drops messages this long, then tries again. */
export const ON_DEMAND_PROBE_MS = 1_000;

export class LiveBus {
  private readonly handlers = new Map<LiveTopic, Set<(payload: unknown) => void>>();
  private failures = 0;
  private readonly unheardUntil = new Map<LiveTopic, number>();
  private readonly interested = new Set<LiveTopic>();

  private constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly instanceId: string,
    private readonly logger: Logger,
  ) {
    sub.on('message', (channel: string, text: string) => this.deliver(channel, text));
  }

  /** Subscribes to every topic before returning, so nothing published after start-up is missed. */
  static async open(pub: Redis, sub: Redis, instanceId: string, logger: Logger): Promise<LiveBus> {
    const bus = new LiveBus(pub, sub, instanceId, logger);
    await sub.subscribe(...ALWAYS.map(channelOf));
    return bus;
  }

  /** Listen to an on-demand topic (true) or stop (false); idempotent. Resolves once Redis confirmed (never rejects). */
  interest(topic: LiveTopic, on: boolean): Promise<void> {
    if (ALWAYS.includes(topic) || on === this.interested.has(topic)) return Promise.resolve();
    if (on) this.interested.add(topic);
    else this.interested.delete(topic);
    const change = on ? this.sub.subscribe(channelOf(topic)) : this.sub.unsubscribe(channelOf(topic));
    return change.then(
      () => undefined,
      (err: unknown) => this.logger.debug({ code: 'VET_E_REDIS', topic, err: { message: (err as Error).message } }, 'live update subscription not changed'),
    );
  }

  /**
   * Like `publish`, for on-demand topics: when the last PUBLISH reached no instance, messages are
   * dropped for ON_DEMAND_PROBE_MS (nobody would hear them); `heard` resumes at once.
   */
  publishWhenHeard(topic: LiveTopic, payload: unknown): void {
    const until = this.unheardUntil.get(topic) ?? 0;
    if (until > Date.now()) return;
    this.pub.publish(channelOf(topic), JSON.stringify({ from: this.instanceId, payload })).then(
      (receivers) => void (receivers === 0 ? this.unheardUntil.set(topic, Date.now() + ON_DEMAND_PROBE_MS) : this.unheardUntil.delete(topic)),
      (err: unknown) => {
        if (this.failures++ % 1000 === 0) this.logger.debug({ code: 'VET_E_REDIS', topic, err: { message: (err as Error).message } }, 'live update not published');
      },
    );
  }

  /** Someone listens to `topic` again (a sync request): publish without waiting for the next probe. */
  heard(topic: LiveTopic): void {
    this.unheardUntil.delete(topic);
  }

  publish(topic: LiveTopic, payload: unknown): void {
    this.pub.publish(channelOf(topic), JSON.stringify({ from: this.instanceId, payload })).catch((err: unknown) => {
      if (this.failures++ % 1000 === 0) this.logger.debug({ code: 'VET_E_REDIS', topic, err: { message: (err as Error).message } }, 'live update not published');
    });
  }

  /** `handler` gets other instances' payloads on `topic`; returns the unsubscribe function. */
  on(topic: LiveTopic, handler: (payload: unknown) => void): () => void {
    let set = this.handlers.get(topic);
    if (!set) this.handlers.set(topic, (set = new Set()));
    const entry = (p: unknown) => handler(p);
    set.add(entry);
    return () => void set.delete(entry);
  }

  private deliver(channel: string, text: string): void {
    const topic = TOPICS.find((t) => channelOf(t) === channel);
    if (!topic) return;
    let message: { from?: unknown; payload?: unknown };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      return;
    }
    if (message.from === this.instanceId) return;
    for (const handler of [...(this.handlers.get(topic) ?? [])]) {
      try {
        handler(message.payload);
      } catch (err) {
        this.logger.error({ err, topic, code: 'VET_E_INTERNAL' }, 'live update listener failed');
      }
    }
  }
}
