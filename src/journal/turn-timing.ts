/** One turn's latency stamps (src/calls/turn-clock.ts measures them; journal `turn` lines and the call record carry them). */
export interface TurnTiming {
  generation: number;
  /** End of caller speech → first reply audio handed to the player. */
  endOfSpeechToAudioMs: number | null;
  /** End of speech → final transcript. */
  sttMs: number | null;
  /** End of speech → turn committed (endpointing). */
  endpointMs: number | null;
  /** Commit → first agent text. */
  agentFirstTextMs: number | null;
  /** Commit → first synthesized audio. */
  ttsFirstAudioMs: number | null;
  /** Commit → first audio handed to the player. */
  firstAudioMs: number | null;
}
