/**
 * Voice activity detection: decides, frame by frame, when the caller starts and stops talking.
 * Runs on every inbound 20 ms frame of every call, so it must be cheap and allocation-free.
 */

/** Which thresholds apply: stricter while we speak, because Twilio does no echo cancellation. */
export type VadMode = 'listening' | 'speaking';

export interface VadParams {
  /** Frame energy (dBFS) that counts as speech. A lower release threshold (hysteresis) keeps a segment open. */
  thresholdDb: number;
  /** Energy below which an open segment counts as silence; defaults to thresholdDb - 6. */
  releaseDb?: number;
  /** Speech needed to open a segment. */
  minSpeechMs: number;
  /** Silence needed to close a segment. */
  minSilenceMs: number;
  /**
   * Silence inside an open segment that is reported as a `pause` (the caller may be done; the
   * segment stays open until `minSilenceMs`). Absent, 0 or not below `minSilenceMs`: no pauses.
   */
  pauseMs?: number;
}

export type VadEvent =
  /** `atMs`: stream time (ms since the stream started) where speech began, back-dated by minSpeechMs. */
  | { type: 'speechStart'; atMs: number }
  /** `atMs`: stream time where speech ended (the start of the closing silence); `speechMs`: segment length. */
  | { type: 'speechEnd'; atMs: number; speechMs: number }
  /** `pauseMs` of silence in an open segment; `atMs`: where that silence began. At most one per silence. */
  | { type: 'pause'; atMs: number }
  /** Speech again after a reported pause, before the segment closed; `atMs`: the frame that resumed it. */
  | { type: 'resume'; atMs: number };

export interface Vad {
  /** Feed one frame of PCM16 8 kHz mono; `atMs` is the frame's stream time. Returns a decision or null. */
  process(pcm: Int16Array, atMs: number): VadEvent | null;
  setMode(mode: VadMode): void;
  /** True while a speech segment is open. */
  readonly speaking: boolean;
}

export interface VadProvider {
  readonly name: string;
  create(params: Record<VadMode, VadParams>): Vad;
}
