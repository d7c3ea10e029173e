/**
 * A single-consumer queue from callbacks (socket events, a provider's loop) to an async generator:
 * items pushed before the consumer asks are kept in order; the first end or failure wins and
 * anything after it is ignored. Shared by the resilience guard and the ElevenLabs socket adapter.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private state: { done: false } | { done: true; error?: unknown } = { done: false };
  private wake: (() => void) | null = null;

  push(item: T): void {
    if (this.state.done) return;
    this.items.push(item);
    this.notify();
  }

  end(): void {
    if (this.state.done) return;
    this.state = { done: true };
    this.notify();
  }

  fail(error: unknown): void {
    if (this.state.done) return;
    this.state = { done: true, error };
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      if (this.items.length > 0) yield this.items.shift()!;
      else if (this.state.done) {
        if ('error' in this.state) throw this.state.error;
        return;
      } else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
