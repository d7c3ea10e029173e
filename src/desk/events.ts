/**
 * Desk change notifications: a tiny in-process pub/sub. The call pipeline calls `publish(clinicId)`
 * after it stored follow-ups and at the end of a call; the desk itself publishes after a staff
 * change (PATCH). Each open desk page (GET /desk/api/events) subscribes and re-reads its list when a
 * clinic it may see changed. Only the clinic id travels: never a follow-up's content.
 *
 * Several instances (REDIS_URL): `relay` carries each local publish to the other instances, and what
 * they relay arrives through `deliver`, so a page hears about changes made on any instance
 * (docs/operations.md "Several instances"). Without it, a page hears about its own instance only.
 */

export type DeskListener = (clinicId: string) => void;

export class DeskEvents {
  readonly #listeners = new Set<DeskListener>();
  readonly #onError: (err: unknown) => void;
  readonly #relay: ((clinicId: string) => void) | null;

  /**
   * `onError`: a listener threw (a bug); publish itself never throws into the call pipeline.
   * `relay`: hands each change published here to the other instances (never throws either).
   */
  constructor(opts: { onError?: (err: unknown) => void; relay?: (clinicId: string) => void } = {}) {
    this.#onError = opts.onError ?? (() => undefined);
    this.#relay = opts.relay ?? null;
  }

  /** Follow-ups of `clinicId` changed (new, updated, or their call ended) on this instance. */
  publish(clinicId: string): void {
    this.deliver(clinicId);
    try {
      this.#relay?.(clinicId);
    } catch (err) {
      this.#onError(err);
    }
  }

  /** A change another instance relayed: this instance's pages only. */
  deliver(clinicId: string): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(clinicId);
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  /** Returns the unsubscribe function (idempotent). */
  subscribe(listener: DeskListener): () => void {
    // A wrapper per subscription, so one function subscribed twice is two subscriptions.
    const entry: DeskListener = (clinicId) => listener(clinicId);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }
}
