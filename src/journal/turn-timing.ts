/** One turn's latency stamps (src/calls/turn-clock.ts measures them; journal `turn` lines and the call record carry them). */
export interface TurnTiming {
  generation: number;
  /** End of caller speech → first reply audio handed to the player. */
  endOfSpeechToAudioMs: number | null;
  /** End of speech → final transcript. */
  sttMs: number | null;
  /** End of speech → turn committed (endpointing). */
  endpointMs: number | null;
  /** Reply start (its agent request: the commit, or earlier when the reply was prepared) → first agent text. */
  agentFirstTextMs: number | null;
  /** Reply start → first synthesized audio. */
  ttsFirstAudioMs: number | null;
  /** Commit → first audio handed to the player. */
  firstAudioMs: number | null;
  /** The end-of-turn window chosen for the caller's words, and how they read (absent in older journals). */
  endOfTurn?: { kind: 'complete' | 'open' | 'incomplete'; windowMs: number };
  /** The reply was prepared while the window was open (absent in older journals). */
  prepared?: boolean;
}

/** One barge-in: the caller's speech onset (as the VAD placed it) and the `clear` it caused. */
export interface BargeInTiming {
  /** Speech onset → `clear` sent, on the engine's clock. */
  clearLatencyMs: number;
  /**
   * The onset in stream time (ms since the stream's first frame, Twilio's `media.timestamp`):
   * what attributes the barge-in to the caller's words or to an echo, however late the engine ran.
   * Absent in journals written before it was recorded.
   */
  onsetStreamMs?: number;
}
