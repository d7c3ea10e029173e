/**
 * Live updates between instances over Redis pub/sub: one channel per topic
 * (`vetline:live:<topic>`), each message `{ from: <instance>, payload }` as JSON. An instance hears
 * only the others (its own pages are served in-process first, with no round trip). Pub/sub is
 * fire-and-forget: a message published while Redis is away is lost, and pages resynchronise as
 * they already do after a missed update (the desk re-reads its list, the inspector re-asks the
 * detail on watch). ioredis re-subscribes by itself after a reconnect.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { KEY_PREFIX } from './client.js';

/** `callbacks`: Twilio callbacks for calls another instance holds (src/calls/callback-relay.ts). */
export type LiveTopic = 'desk' | 'inspector' | 'callbacks';

const channelOf = (topic: LiveTopic) => `${KEY_PREFIX}live:${topic}`;
const TOPICS: readonly LiveTopic[] = ['desk', 'inspector', 'callbacks'];

export class LiveBus {
  private readonly handlers = new Map<LiveTopic, Set<(payload: unknown) => void>>();
  private failures = 0;

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
    await sub.subscribe(...TOPICS.map(channelOf));
    return bus;
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
