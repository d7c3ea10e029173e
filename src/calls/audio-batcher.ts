/**
 * Synthesized audio on its way to the call machine. Every hand-over is a machine event (an
 * `assign`, a journal line, the player's enqueue), and a vendor that streams 100 ms chunks every
 * 20 ms makes fifty a second per reply. So:
 *
 * - the first chunk goes at once (the caller is waiting for it), and so does every chunk while less
 *   than `lowWaterMs` of handed-over audio is ahead of playback;
 * - past that, chunks are joined until `maxBytes`, and a timer hands over what is held before
 *   playback could come within `lowWaterMs` of it;
 * - `flush` hands over what is held at once (the end of a spoken item: its segment must count all
 *   of its audio).
 *
 * Playback is taken to start at the first hand-over. It never starts earlier (a prepared reply's
 * audio even waits for the turn's commit), so the audio ahead of it is never overestimated.
 */
export interface AudioBatcherOptions {
  /** Below this much audio ahead of playback, every chunk goes at once. */
  lowWaterMs: number;
  /** A batch is handed over at this size. */
  maxBytes: number;
}

export const AUDIO_BATCH: AudioBatcherOptions = { lowWaterMs: 600, maxBytes: 3_200 };

/** μ-law at 8 kHz: 8 bytes per ms. */
const BYTES_PER_MS = 8;

export class AudioBatcher {
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private firstAtMs: number | null = null;
  private handedMs = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly hand: (audio: Uint8Array) => void,
    private readonly now: () => number = () => performance.now(),
    private readonly opts: AudioBatcherOptions = AUDIO_BATCH,
  ) {}

  push(audio: Uint8Array): void {
    if (audio.length === 0) return;
    this.firstAtMs ??= this.now();
    this.held.push(audio);
    this.heldBytes += audio.length;
    const spareMs = this.aheadMs() - this.opts.lowWaterMs;
    if (spareMs <= 0 || this.heldBytes >= this.opts.maxBytes) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), spareMs);
  }

  /** Hands over what is held, now. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.heldBytes === 0) return;
    const audio = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    this.handedMs += audio.length / BYTES_PER_MS;
    this.hand(audio);
  }

  /** Drops what is held (the synthesis was stopped). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.held = [];
    this.heldBytes = 0;
  }

  /** Handed-over audio not yet played, at least. */
  private aheadMs(): number {
    return this.firstAtMs === null ? 0 : this.firstAtMs + this.handedMs - this.now();
  }
}
