/**
 * Energy VAD: frame loudness in dBFS with hysteresis and minimum durations.
 *
 * Why energy and not Silero (the project's stated choice in docs/design/conversation.md §1.1):
 * - Silero needs onnxruntime-node: 288 MB on disk and a postinstall download that must be disabled
 *   (`allowScripts`), plus 32 ms windows, so 20 ms Twilio frames would have to be re-chunked.
 * - This costs almost nothing: ~0.3 µs per 20 ms frame on this machine (2 cores, Node 20.20;
 *   test/providers/vad-energy.test.ts prints the figure), against 134 µs per Silero window
 *   (docs/design/stack.md §4). Allocation-free per frame: only the rare speechStart/speechEnd event allocates.
 * - It fires on loud line noise and misses very quiet callers. Its output only gates STT and
 *   barge-in, and the `VadProvider` seam lets Silero (or anything else) replace it per deployment.
 *
 * Decisions, per frame (any length; Twilio sends 20 ms = 160 samples):
 * - Closed: frames at or above `thresholdDb` add to a candidate run; frames between `releaseDb`
 *   and the threshold keep the run alive without adding to it; a frame below `releaseDb` drops it.
 *   Once the run holds `minSpeechMs` of loud audio the segment opens and `speechStart` is
 *   back-dated to the run's first frame.
 * - Open: frames at or above `releaseDb` are speech; `minSilenceMs` of frames below it closes the
 *   segment, and `speechEnd` reports where that silence began and how long the speech lasted.
 *   With `pauseMs` (below `minSilenceMs`), that much silence first reports a `pause` (same `atMs`),
 *   and speech before the close reports a `resume`: the machine may prepare a reply on finished
 *   words before the segment closes, and takes it back if the caller goes on.
 * - `setMode` swaps thresholds from the next frame on; an open segment stays open.
 */
import type { Vad, VadEvent, VadMode, VadParams, VadProvider } from './types.js';

const SAMPLE_RATE = 8000;
/** Below any real signal: the level reported for digital silence. */
const FLOOR_DB = -120;
/** 10·log10(32768²): full-scale square for dBFS. */
const FULL_SCALE_DB = 20 * Math.log10(32768);

/** RMS level of a PCM16 frame in dBFS (a full-scale square wave is 0 dB; sine ≈ -3 dB). */
export function frameDbfs(pcm: Int16Array): number {
  const n = pcm.length;
  if (n === 0) return FLOOR_DB;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const s = pcm[i]!;
    sum += s * s;
  }
  if (sum === 0) return FLOOR_DB;
  return Math.max(FLOOR_DB, 10 * Math.log10(sum / n) - FULL_SCALE_DB);
}

/** Thresholds from the tenant's `vad` block (config/tenant.schema.ts defaults: -38 / -30 dBFS, 100 / 200 ms). */
export function energyVadParams(o: {
  listeningThresholdDb: number;
  speakingThresholdDb: number;
  minSpeechMs: number;
  minSilenceMs: number;
  pauseMs?: number;
}): Record<VadMode, VadParams> {
  const base = { minSpeechMs: o.minSpeechMs, minSilenceMs: o.minSilenceMs, pauseMs: o.pauseMs ?? 0 };
  return {
    listening: { ...base, thresholdDb: o.listeningThresholdDb },
    speaking: { ...base, thresholdDb: o.speakingThresholdDb },
  };
}

interface Resolved {
  thresholdDb: number;
  releaseDb: number;
  minSpeechMs: number;
  minSilenceMs: number;
  /** Infinity: no pauses. */
  pauseMs: number;
}

const resolve = (p: VadParams): Resolved => ({
  thresholdDb: p.thresholdDb,
  releaseDb: Math.min(p.releaseDb ?? p.thresholdDb - 6, p.thresholdDb),
  minSpeechMs: p.minSpeechMs,
  minSilenceMs: p.minSilenceMs,
  pauseMs: p.pauseMs && p.pauseMs > 0 && p.pauseMs < p.minSilenceMs ? p.pauseMs : Infinity,
});

/** Longest quiet stretch tolerated inside speech that is still opening a segment. */
const MAX_RUN_GAP_MS = 60;

class EnergyVad implements Vad {
  private readonly byMode: Record<VadMode, Resolved>;
  private p: Resolved;
  private open = false;
  /** Closed: start of the candidate run (-1: none) and its loud ms. */
  private runStartMs = -1;
  private runLoudMs = 0;
  /** Quiet ms inside the candidate run: stop consonants ("what | are") leave 20–60 ms gaps in speech. */
  private runGapMs = 0;
  /** Open: where the segment began, and where the current silence began (-1: none) and its length. */
  private segmentStartMs = 0;
  private silenceStartMs = -1;
  private silenceMs = 0;
  /** This silence was reported as a pause (a resume is owed if speech comes back before the close). */
  private paused = false;

  constructor(params: Record<VadMode, VadParams>) {
    this.byMode = { listening: resolve(params.listening), speaking: resolve(params.speaking) };
    this.p = this.byMode.listening;
  }

  get speaking(): boolean {
    return this.open;
  }

  setMode(mode: VadMode): void {
    this.p = this.byMode[mode];
  }

  process(pcm: Int16Array, atMs: number): VadEvent | null {
    if (pcm.length === 0) return null;
    const db = frameDbfs(pcm);
    const frameMs = (pcm.length * 1000) / SAMPLE_RATE;
    const p = this.p;

    if (!this.open) {
      if (db >= p.thresholdDb) {
        if (this.runStartMs < 0) {
          this.runStartMs = atMs;
          this.runLoudMs = 0;
        }
        this.runLoudMs += frameMs;
        this.runGapMs = 0;
      } else if (this.runStartMs >= 0 && db < p.releaseDb) {
        // A short gap keeps the run (its loud time is not lost); a longer one ends it.
        this.runGapMs += frameMs;
        if (this.runGapMs > MAX_RUN_GAP_MS) {
          this.runStartMs = -1;
          this.runLoudMs = 0;
          this.runGapMs = 0;
        }
      }
      if (this.runStartMs >= 0 && this.runLoudMs >= p.minSpeechMs) {
        this.open = true;
        this.segmentStartMs = this.runStartMs;
        this.silenceStartMs = -1;
        this.silenceMs = 0;
        this.runStartMs = -1;
        this.runLoudMs = 0;
        this.runGapMs = 0;
        return { type: 'speechStart', atMs: this.segmentStartMs };
      }
      return null;
    }

    if (db >= p.releaseDb) {
      this.silenceStartMs = -1;
      this.silenceMs = 0;
      if (!this.paused) return null;
      this.paused = false;
      return { type: 'resume', atMs };
    }
    if (this.silenceStartMs < 0) this.silenceStartMs = atMs;
    this.silenceMs += frameMs;
    if (this.silenceMs < p.minSilenceMs) {
      if (this.paused || this.silenceMs < p.pauseMs) return null;
      this.paused = true;
      return { type: 'pause', atMs: this.silenceStartMs };
    }
    this.open = false;
    this.paused = false;
    const endMs = this.silenceStartMs;
    this.silenceStartMs = -1;
    this.silenceMs = 0;
    return { type: 'speechEnd', atMs: endMs, speechMs: endMs - this.segmentStartMs };
  }
}

export const energyVad: VadProvider = {
  name: 'energy',
  create: (params) => new EnergyVad(params),
};
