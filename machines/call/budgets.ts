/**
 * The engine's timing budgets, in one place (docs/timing.md has the table; test/budgets.test.ts
 * checks every relation: each inner deadline strictly below the outer one it must beat).
 *
 * It lives beside the machine because the machine is pure (xstate and sibling files only) and uses
 * half of these as its delays; src/ imports it from here. Milliseconds throughout.
 */
export const BUDGETS = {
  /** The caller never hears more than this much silence after finishing speaking (docs/design/reliability.md §2). */
  silenceRuleMs: 3_000,

  // ---- Twilio REST (transfer, hang-up, drain hand-off) ----
  /** One transfer/hang-up/hand-off request, aborted by the session (src/calls/call-rest.ts). */
  restRequestMs: 2_500,
  /** The machine's own bound on that request, for a REST layer deaf to its AbortSignal (`restTimeout`). */
  restTimeoutMs: 3_000,
  /** The REST client's default per operation, 429 retries included: SMS, recording start (src/twilio/rest.ts). */
  restClientMs: 5_000,

  // ---- Speech to text ----
  /** End of speech → final transcript from the cloud recognizer before the call moves to the embedded one (src/providers/fallback.ts). */
  sttFallbackFinalMs: 1_200,
  /** End of speech → final transcript before the machine asks the caller to repeat (`sttFinalTimeout`). */
  sttFinalTimeoutMs: 2_000,

  // ---- Agent and text to speech (src/providers/fallback.ts, guardedStream) ----
  /** Turn → first agent output from the cloud model before the turn goes to the embedded receptionist. */
  agentFirstOutputMs: 2_000,
  /** Between two agent outputs once streaming. */
  agentIdleMs: 2_000,
  /** Sentence → first audio from the cloud voice before the sentence goes to the embedded voice. */
  ttsFirstAudioMs: 1_500,
  /** Between two audio chunks once streaming. */
  ttsIdleMs: 1_000,
  /** Default `timing.fillerAfterMs`: no reply audio this long after the turn → "One moment." (machine `filler`). */
  fillerAfterMs: 1_500,
  /** No reply audio at all this long after the turn → apology (`thinkingTimeout`). */
  thinkingTimeoutMs: 8_000,

  // ---- Emergency check (docs/design/conversation.md §4) ----
  /** After "Is your pet in danger right now?" was heard: no answer this long counts as yes (`emergencyAnswer`). */
  emergencyAnswerMs: 4_000,
  /** From an uncertain trigger to the emergency script at the latest, question included, marks or not (`emergencyCheckMax`). */
  emergencyCheckMaxMs: 15_000,

  // ---- Drain (docs/design/reliability.md §3) ----
  /** After the drain hand-off, how long Twilio gets to stop the stream before the registry closes it 1001. */
  handoffStopWaitMs: 5_000,
  /** After that close, how long the registry waits for the call to end. */
  handoffCloseWaitMs: 1_000,
  /** The machine's safety net once a transfer or hand-off was accepted and the stream should stop (`handoffTimeout`). */
  handoffTimeoutMs: 15_000,
  /** Once the drain is done, how long journal uploads in flight (JOURNAL_S3_URL) get; the rest wait in JOURNAL_DIR for the next start. */
  journalShipWaitMs: 3_000,
  /** The hard exit fires this long after DRAIN_TIMEOUT_MS (src/main.ts). */
  hardExitAfterDrainMs: 15_000,
} as const satisfies Record<string, number>;

export type Budgets = typeof BUDGETS;
