import type { FallbackReport } from '../agent/types.js';

/**
 * Speech to text. One stream per call: the call's audio goes in frame by frame, VAD boundaries are
 * passed as hints, transcripts come out through callbacks.
 */

export interface SttOptions {
  /** Language tag, e.g. en-US. */
  language: string;
  /** Words and phrases to favour: clinic name, staff, pets, drugs, menu words, emergency keywords. */
  vocabulary: readonly string[];
  /** Aborted when the call ends; the stream must release everything it holds. */
  signal: AbortSignal;
  /** Interim hypothesis of the utterance in progress (may change). */
  onPartial(text: string): void;
  /** Final transcript of one utterance (possibly empty when nothing was understood). */
  onFinal(text: string, confidence: number | null): void;
  /** The stream failed; no more callbacks follow. */
  onError(error: Error): void;
  /** Told when the call's recognition moves to a fallback provider (journal + metrics). */
  onFallback?(report: FallbackReport): void;
}

export interface SttStream {
  /** One frame of PCM16 8 kHz mono, in stream order, whether or not the caller is speaking. */
  write(pcm: Int16Array): void;
  /** VAD opened a speech segment. */
  speechStarted(): void;
  /** VAD closed the segment: transcribe what was said and call onFinal once. */
  speechEnded(): void;
  close(): void;
}

export interface SttProvider {
  readonly name: string;
  open(options: SttOptions): SttStream;
}
