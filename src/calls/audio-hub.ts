/**
 * Per-call fan-out of the caller's audio. The Media Stream pushes decoded frames in; the call's
 * VAD and STT child actors subscribe while they live. Frames never pass through the state machine:
 * at 50 frames a second per call, only the decisions they lead to (speech start/end, transcripts)
 * become events.
 */
export type FrameListener = (pcm: Int16Array, atMs: number) => void;
export type BoundaryListener = (boundary: 'start' | 'end') => void;

const SAMPLES_PER_MS = 8;

export class AudioHub {
  private readonly frameListeners = new Set<FrameListener>();
  private readonly boundaryListeners = new Set<BoundaryListener>();
  /** Stream time at which the latest frame ended (ms since the stream started). */
  private frameEndMs = 0;
  /** When (monotonic clock) that frame arrived: a frame arrives once it has ended. */
  private arrivedAt = 0;

  constructor(private readonly clock: () => number = () => performance.now()) {}

  /**
   * Stream time now: the end of the latest frame plus the time since it arrived. Used to stamp
   * transcripts, so the end-of-turn window does not count the last frame's 20 ms twice.
   */
  get nowMs(): number {
    return this.frameEndMs + Math.max(0, this.clock() - this.arrivedAt);
  }

  onFrame(listener: FrameListener): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  onBoundary(listener: BoundaryListener): () => void {
    this.boundaryListeners.add(listener);
    return () => this.boundaryListeners.delete(listener);
  }

  pushFrame(pcm: Int16Array, atMs: number): void {
    this.frameEndMs = atMs + pcm.length / SAMPLES_PER_MS;
    this.arrivedAt = this.clock();
    for (const listener of this.frameListeners) listener(pcm, atMs);
  }

  /** The VAD opened or closed a speech segment: the recognizer needs to know. */
  boundary(boundary: 'start' | 'end'): void {
    for (const listener of this.boundaryListeners) listener(boundary);
  }

  clear(): void {
    this.frameListeners.clear();
    this.boundaryListeners.clear();
  }
}
