/** Text to speech. Output is always raw μ-law, 8 kHz, mono: what Twilio plays, no transcoding. */

export interface TtsOptions {
  /** Provider-specific voice id (tenant `voice.local` or `voice.cloud`). */
  voice: string;
  language: string;
  /** Aborted on barge-in or hang-up: stop synthesizing and end the iterable. */
  signal: AbortSignal;
}

export interface TtsProvider {
  readonly name: string;
  /** Streams μ-law chunks of any size as soon as they are ready. */
  synthesize(text: string, options: TtsOptions): AsyncIterable<Uint8Array>;
}
