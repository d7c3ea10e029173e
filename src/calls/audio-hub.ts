/**
 * Per-call fan-out of the caller's audio. The Media Stream pushes decoded frames in; the call's
 * VAD and STT child actors subscribe while they live. Frames never pass through the state machine:
 * at 50 frames a second per call, only the decisions they lead to (speech start/end, transcripts)
 * become events.
 */
export type FrameListener = (pcm: Int16Array, atMs: number) => void;
export type BoundaryListener = (boundary: 'start' | 'end') => void;

export class AudioHub {
  private readonly frameListeners = new Set<FrameListener>();
  private readonly boundaryListeners = new Set<BoundaryListener>();
  /** Stream time of the latest frame (ms since the stream started). */
  nowMs = 0;

  onFrame(listener: FrameListener): () => void {
    this.frameListeners.add(listener);
    return () => this.frameListeners.delete(listener);
  }

  onBoundary(listener: BoundaryListener): () => void {
    this.boundaryListeners.add(listener);
    return () => this.boundaryListeners.delete(listener);
  }

  pushFrame(pcm: Int16Array, atMs: number): void {
    this.nowMs = atMs;
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
