/**
 * Scriptable, observable VAD for tests and the `fake` provider name: it never measures audio.
 * Events come from, in order of precedence: `push()` (returned by the next frame), the `script`
 * (returned by the first frame at or after `at`), then `decide` (per frame). Every frame, mode
 * change and event is recorded.
 */
import type { Vad, VadEvent, VadMode, VadParams, VadProvider } from './types.js';

export interface FakeVadOptions {
  /** Events by stream time: each is returned once, by the first frame whose atMs ≥ `at`. */
  script?: ReadonlyArray<{ at: number; event: VadEvent }>;
  /** Decision for frames the queue and script leave alone. */
  decide?: (pcm: Int16Array, atMs: number, mode: VadMode) => VadEvent | null;
}

export class FakeVad implements Vad {
  frames = 0;
  lastAtMs: number | null = null;
  readonly modes: VadMode[] = [];
  readonly events: VadEvent[] = [];
  mode: VadMode = 'listening';
  private open = false;
  private readonly queue: VadEvent[] = [];
  private readonly script: Array<{ at: number; event: VadEvent }>;

  constructor(readonly params: Record<VadMode, VadParams>, private readonly options: FakeVadOptions = {}) {
    this.script = [...(options.script ?? [])].sort((a, b) => a.at - b.at);
  }

  get speaking(): boolean {
    return this.open;
  }

  /** The next process() call returns this event. */
  push(event: VadEvent): void {
    this.queue.push(event);
  }

  setMode(mode: VadMode): void {
    this.mode = mode;
    this.modes.push(mode);
  }

  process(pcm: Int16Array, atMs: number): VadEvent | null {
    this.frames++;
    this.lastAtMs = atMs;
    let event = this.queue.shift() ?? null;
    if (!event && this.script[0] && this.script[0].at <= atMs) event = this.script.shift()!.event;
    event ??= this.options.decide?.(pcm, atMs, this.mode) ?? null;
    if (event) {
      if (event.type === 'speechStart' || event.type === 'speechEnd') this.open = event.type === 'speechStart';
      this.events.push(event);
    }
    return event;
  }
}

export class FakeVadProvider implements VadProvider {
  readonly name = 'fake';
  readonly created: FakeVad[] = [];

  constructor(private readonly options: FakeVadOptions = {}) {}

  create(params: Record<VadMode, VadParams>): FakeVad {
    const vad = new FakeVad(params, this.options);
    this.created.push(vad);
    return vad;
  }

  /** The most recently created VAD (one per call). */
  get last(): FakeVad | undefined {
    return this.created[this.created.length - 1];
  }
}

export const createFakeVad = (options: FakeVadOptions = {}) => new FakeVadProvider(options);
