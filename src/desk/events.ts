/**
 * Desk change notifications: a tiny in-process pub/sub. The call pipeline calls `publish(clinicId)`
 * after it stored follow-ups and at the end of a call; the desk itself publishes after a staff
 * change (PATCH). Each open desk page (GET /desk/api/events) subscribes and re-reads its list when a
 * clinic it may see changed. Only the clinic id travels: never a follow-up's content.
 *
 * Single process: with several instances behind a load balancer, a page hears about changes made on
 * its own instance only (it re-reads on reconnect and on every filter change; docs/desk.md).
 */

export type DeskListener = (clinicId: string) => void;

export class DeskEvents {
  readonly #listeners = new Set<DeskListener>();
  readonly #onError: (err: unknown) => void;

  /** `onError`: a listener threw (a bug); publish itself never throws into the call pipeline. */
  constructor(opts: { onError?: (err: unknown) => void } = {}) {
    this.#onError = opts.onError ?? (() => undefined);
  }

  /** Follow-ups of `clinicId` changed (new, updated, or their call ended). */
  publish(clinicId: string): void {
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
