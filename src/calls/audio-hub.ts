/**
 * Per-call fan-out of the caller's audio. The Media Stream pushes decoded frames in; the call's
 * VAD and STT child actors subscribe while they live. Frames never pass through the state machine:
 * at 50 frames a second per call, only the decisions they lead to (speech start/end, transcripts)
 * become events. The hub also holds the echo guard's reference (what the caller's phone played,
 * from the player), to tell the VAD which frames may be our own voice coming back.
 */
import { frameEnergyDb } from '../audio/ulaw.js';
import { EchoReference } from './echo-reference.js';

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
  /**
   * Monotonic time of stream time 0, as the earliest-arriving frame puts it: a late frame only
   * makes the one-way delay look longer, so the minimum is the best estimate.
   */
  private streamOriginMs = Infinity;
  /** What the caller's phone played (the player reports it): the echo guard's reference. */
  readonly echo = new EchoReference();

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
    this.streamOriginMs = Math.min(this.streamOriginMs, this.arrivedAt - this.frameEndMs);
    for (const listener of this.frameListeners) listener(pcm, atMs);
  }

  /** The frame at stream time `atMs` may be only our own audio coming back (see EchoReference). */
  mayBeEcho(pcm: Int16Array, atMs: number): boolean {
    const from = this.streamOriginMs + atMs;
    return this.echo.mayBeEcho(frameEnergyDb(pcm), from, from + pcm.length / SAMPLES_PER_MS);
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
