import type { FallbackReport } from '../agent/types.js';

/** Text to speech. Output is always raw μ-law, 8 kHz, mono: what Twilio plays, no transcoding. */

export interface TtsOptions {
  /**
   * Voice id for the provider that is called. Calls pass the clinic's local voice; the fallback
   * composite (src/providers/fallback.ts) passes a cloud provider `cloudVoice` or its default.
   */
  voice: string;
  /** The clinic's cloud voice id (tenant `voice.cloud`), if it set one; cloud providers prefer it. */
  cloudVoice?: string;
  language: string;
  /** Aborted on barge-in or hang-up: stop synthesizing and end the iterable. */
  signal: AbortSignal;
  /** Told when this text is spoken by a fallback provider (journal + metrics). */
  onFallback?(report: FallbackReport): void;
}

export interface TtsProvider {
  readonly name: string;
  /** Streams μ-law chunks of any size as soon as they are ready. */
  synthesize(text: string, options: TtsOptions): AsyncIterable<Uint8Array>;
}
