/**
 * Types of the call machine: its input, context, the events it accepts and the commands it emits.
 * Pure data: no I/O. The Twilio edge and the providers translate to and from these.
 */
import type { TurnEnd } from './language.js';

export type { TurnEnd };

/** What a DTMF key does (mirror of the tenant schema's menu, kept here so machines/ stays pure). */
export type MenuEntry =
  | { action: 'transfer'; target: TransferTarget; label: string }
  | { action: 'emergency'; label: string }
  | { action: 'repeat'; label: string }
  | { action: 'hangup'; label: string }
  | { action: 'agent'; intent: string; label: string };

export type TransferTarget = 'frontDesk' | 'emergency';

/** Pre-rendered clips every clinic has (rendered at start-up so they play instantly). */
export type ClipId =
  | 'greeting'
  /** The greeting when the clinic is closed: says so, and what the assistant can still do. */
  | 'greetingClosed'
  | 'consent'
  /** "Is your pet in danger right now?": asked after an uncertain emergency trigger (yes/no, keys 1/2). */
  | 'emergencyCheck'
  /** The caller said no to that: "Okay, please go on." */
  | 'emergencyCheckNo'
  | 'emergency'
  /** After hours with an emergency line: a short notice, then straight to the line. */
  | 'emergencyAfterHours'
  | 'emergencyFallback'
  | 'filler'
  | 'stillThere'
  | 'stillThereHint'
  | 'sayAgain'
  | 'goodbye'
  | 'transfer'
  | 'transferFailed'
  | 'menu'
  | 'apology'
  /** `limits.maxCallSeconds` reached, clinic open: the wrap-up before the front desk. */
  | 'timeLimit'
  /** The same, clinic closed: the wrap-up and goodbye. */
  | 'timeLimitClosed';

/** The slice of a clinic's configuration the machine needs; copied into each call at its start. */
export interface CallTenant {
  id: string;
  /**
   * The clinic was open when the call started (its structured hours; no hours: always open). Closed
   * changes the greeting, sends front-desk keys to the receptionist (who takes a message instead),
   * and sends emergencies straight to the emergency line.
   */
  openNow: boolean;
  consent: { required: boolean; onRefusal: 'continue' | 'transfer' };
  recordingEnabled: boolean;
  emergency: { keywords: readonly string[]; digit: string; hasLine: boolean };
  menu: Readonly<Record<string, MenuEntry>>;
  backchannels: readonly string[];
  timing: CallTiming;
  /** `maxCallMs`: the conversation's length before the wrap-up (the clinic's `limits.maxCallSeconds`). */
  limits: { maxCallMs: number };
}

export interface CallTiming {
  silencePromptMs: number;
  silencePromptsBeforeGoodbye: number;
  endOfTurnMs: number;
  endOfTurnShortMs: number;
  endOfTurnLongMs: number;
  /** After words that read as finished (a question, a sentence, a short answer). */
  endOfTurnCompleteMs: number;
  /** A reply is prepared (agent and first synthesis) once the end-of-turn window has this long left; 0: never before it closes. */
  preemptLeadMs: number;
  /** Prepared replies thrown away in one turn (the caller went on, or the words changed) before we stop preparing early. */
  maxPreemptsPerTurn: number;
  fillerAfterMs: number;
  bargeInMinSpeechMs: number;
  interDigitMs: number;
}

export interface CallInput {
  callSid: string;
  tenant: CallTenant;
}

export type Speech = { kind: 'clip'; clip: ClipId } | { kind: 'text'; text: string };

export type AgentAction =
  | { type: 'transfer'; target: TransferTarget; reason: string }
  | { type: 'end'; reason: string }
  | { type: 'emergency'; reason: string };

/** What the caller asked the clinic for: an appointment, a refill, or a message for staff. */
export type RequestKind = 'appointment' | 'refill' | 'message';

/** How soon the clinic should act on a request (emergencies are recorded separately). */
export type Urgency = 'routine' | 'soon' | 'urgent';

/**
 * Where the clinic calls back. `callerId`: the signed From of the call, when the clinic stores caller
 * numbers; `spoken`: a number the caller gave and heard read back; `none`: the caller gave none. The
 * number itself is in the clinic's store only, never in the machine or its journal.
 */
export type Callback = { kind: 'callerId' } | { kind: 'spoken' } | { kind: 'none' };

/** A request as the receptionist captured it (both receptionists produce this shape). */
export interface CallerRequest {
  kind: RequestKind;
  petName: string | null;
  petSpecies: string | null;
  ownerName: string | null;
  reason: string | null;
  preferredTime: string | null;
  /** The message's words (kind `message`). */
  message: string | null;
  /** A message's addressee: a staff member's name, or null for the clinic. */
  recipient: string | null;
  callback: Callback;
  urgency: Urgency;
}

/** A request committed to the clinic's store before the caller heard it was sent; `id` is the follow-up's. */
export interface StoredRequest extends CallerRequest {
  id: string;
}

export type Outcome =
  /** The caller hung up (stream stop, socket close or a terminal status) during the conversation. */
  | 'callerHungUp'
  /** We said goodbye and hung up. */
  | 'completed'
  | 'transferred'
  /** Emergency script played and, when the clinic has one, the call was sent to the emergency line. */
  | 'emergency'
  /** The caller stayed silent through every prompt. */
  | 'silence'
  /** The Media Stream never started. */
  | 'noStream'
  /** Twilio ended the call before the stream started (busy, failed, no-answer, canceled). */
  | 'notConnected'
  /** The engine failed; the caller was handed to the fallback menu. */
  | 'error'
  /** The engine shut down mid-call (drain deadline): the caller was handed to the front desk, or to the key menu. */
  | 'handedOff'
  /** The call reached the clinic's `limits.maxCallSeconds`: wrap-up, then the front desk (open) or goodbye (closed). */
  | 'timeLimit';

/**
 * How an emergency trigger was detected, recorded by the transition that detected it. Speech says
 * which keyword, from which transcript, at what recognizer confidence (null: not reported) and why
 * it counted as clear or uncertain (language.ts `classifyEmergency`). The emergency key and the
 * agent's emergency action are always clear.
 */
export type EmergencySource =
  | {
      via: 'speech';
      keyword: string;
      certainty: 'clear' | 'uncertain';
      basis: 'phrase' | 'keywords' | 'partial' | 'lowConfidence' | 'singleKeyword';
      transcript: 'partial' | 'final';
      confidence: number | null;
    }
  | { via: 'dtmf'; digit: string; certainty: 'clear' }
  | { via: 'agent'; reason: string; certainty: 'clear' };

/**
 * What settled "Is your pet in danger right now?": the caller's yes or no (said, or keys 1 and 2),
 * the emergency key or a clear keyword meanwhile, or no answer in time (treated as yes). Null while
 * the question is open, and at the end of a call the caller hung up on it.
 */
export type EmergencyAnswer = 'saidYes' | 'pressedYes' | 'saidNo' | 'pressedNo' | 'emergencyKey' | 'clearKeyword' | 'noAnswer';

/** The two-step check an uncertain trigger starts (one per call: after a no, uncertain triggers no longer ask). */
export interface EmergencyCheck {
  trigger: EmergencySource;
  answer: EmergencyAnswer | null;
}

export type CallEvent =
  // ── Twilio edge ─────────────────────────────────────────────────────────────
  | { type: 'twilio.start'; streamSid: string }
  /** A mark echo, decoded from our own mark name `${generation}:${epoch}:${endMs}`. */
  | { type: 'twilio.mark'; generation: number; epoch: number; endMs: number }
  | { type: 'twilio.dtmf'; digit: string }
  | { type: 'twilio.stop' }
  /** The socket closed without a stop message. */
  | { type: 'twilio.closed' }
  | { type: 'call.status'; status: 'completed' | 'busy' | 'failed' | 'no-answer' | 'canceled' }
  | { type: 'call.recording'; recordingSid: string; status: string }
  /** The engine wants this call over (shutdown, operator). */
  | { type: 'call.hangup'; reason: string }
  /** The drain deadline: hand the caller to the front desk now (the engine is shutting down). */
  | { type: 'call.handoff'; reason: string }
  // ── child actors ────────────────────────────────────────────────────────────
  | { type: 'vad.speechStart'; atMs: number }
  /** `atMs`: where the closing silence began; `closedAtMs`: stream time of the frame that closed the segment (absent in old journals). */
  | { type: 'vad.speechEnd'; atMs: number; speechMs: number; closedAtMs?: number }
  /** A short silence inside the open segment (`vad.pauseMs`), `atMs` where it began; `vad.resume`: speech again before the close. */
  | { type: 'vad.pause'; atMs: number }
  | { type: 'vad.resume'; atMs: number }
  /** `atMs`: stream time it arrived (absent in old journals and scripted tests: taken as long before). */
  | { type: 'stt.partial'; text: string; atMs?: number }
  /** `confidence`: the recognizer's, 0–1; absent or null when it reports none. */
  | { type: 'stt.final'; text: string; atMs: number; confidence?: number | null }
  | { type: 'stt.error'; message: string }
  | { type: 'agent.delta'; generation: number; text: string }
  | { type: 'agent.expect'; generation: number; answer: 'short' | 'normal' | 'long' }
  /** A request the receptionist captured, already committed to the clinic's store (it carries the stored id). */
  | { type: 'agent.request'; generation: number; request: StoredRequest }
  | { type: 'agent.done'; generation: number; action: AgentAction | null }
  | { type: 'agent.error'; generation: number; message: string }
  | { type: 'tts.chunk'; generation: number; audio: Uint8Array }
  /** One speech item finished synthesizing; `text` is '' for clips (kept out of the history). */
  | { type: 'tts.segment'; generation: number; text: string; ms: number }
  | { type: 'tts.done'; generation: number }
  | { type: 'tts.error'; generation: number; message: string }
  /**
   * A provider failed and another took over (cloud → local). Informational: the machine does not
   * transition on it; it is in the event list so the journal and the inspector show every fallback.
   */
  | { type: 'provider.fallback'; kind: 'stt' | 'agent' | 'tts'; from: string; to: string; reason: string }
  // ── raised by the machine itself ────────────────────────────────────────────
  | { type: 'dtmf.timeout' }
  | { type: 'dtmf.entered'; digits: string };

/** Commands the machine emits; the edge turns them into Twilio messages and REST calls. */
export type CallCommand =
  | { type: 'out.audio'; generation: number; audio: Uint8Array }
  /** No more audio for this generation: flush the last partial frame. */
  | { type: 'out.finish'; generation: number }
  /** Drop queued audio at Twilio (barge-in or preemption). */
  | { type: 'out.clear'; generation: number }
  /** Replay this generation's audio from `fromMs` (false interruption). */
  | { type: 'out.resume'; generation: number; fromMs: number }
  | { type: 'out.startRecording' }
  /** The emergency procedure starts (a clear trigger, or a check that did not end in a no). */
  | { type: 'out.emergency'; source: EmergencySource; check: EmergencyAnswer | null }
  | { type: 'out.request'; request: StoredRequest }
  /**
   * The caller's turn is committed (history, journal, latency clock): the reply of `generation`
   * answers `transcript`. `endOfTurn`: the window chosen for it; `prepared`: the reply was started
   * while the window was still open.
   */
  | { type: 'out.turn'; generation: number; transcript: string; endOfTurn: { kind: TurnEnd; windowMs: number }; prepared: boolean }
  /** A reply prepared during the end-of-turn window was thrown away before anything of it was played. */
  | { type: 'out.discard'; generation: number; reason: 'callerResumed' | 'transcriptChanged' | 'other' }
  | { type: 'out.interrupted'; generation: number; heardMs: number; confirmed: boolean }
  | { type: 'out.ended'; outcome: Outcome };

export interface Playback {
  generation: number;
  /** Bumped on every clear, so echoes of cleared marks are ignored. */
  epoch: number;
  /** Twilio's queue was cleared for this generation (barge-in or preemption) and not resumed. */
  cleared: boolean;
  /** Audio handed to the player for this generation. */
  queuedMs: number;
  /** Highest acknowledged, non-cleared mark of this generation: what the caller actually heard. */
  heardMs: number;
  /** The synthesizer finished this generation (no more chunks). */
  synthDone: boolean;
  /** Spoken items and where each ends in the generation's audio timeline (for heard-truncation). */
  segments: { text: string; endMs: number }[];
  /** Audio of a reply still being prepared, held back until the turn is committed; null once it goes straight out. */
  held: Uint8Array[] | null;
}

export type ChatTurn = { role: 'caller' | 'agent'; text: string };

export interface Reply {
  generation: number;
  /** The caller's words this reply answers. */
  transcript: string;
  /** Started while the end-of-turn window was still open. */
  prepared: boolean;
  /** The turn was committed: until then the reply is only prepared (nothing played, nothing in the history). */
  committed: boolean;
  /** Speech items handed to the synthesizer (the first is cut at its first clause). */
  items: number;
  /** The agent or the synthesizer failed while the reply was being prepared: apologise once the turn is committed. */
  failed: boolean;
  /** What the agent said the caller's next turn will be (applied when this turn is committed). */
  expect: 'short' | 'normal' | 'long' | null;
  /** Full text the agent produced. */
  text: string;
  /** Text not yet handed to the synthesizer (an unfinished sentence). */
  pending: string;
  agentDone: boolean;
  action: AgentAction | null;
}

/** The caller's turn in progress: their words so far, when they were heard, and the end-of-turn window. */
export interface CallerTurn {
  /** The caller's words of the turn (joined finals). */
  text: string;
  /** The recognizer's latest interim hypothesis since the last final ('' after a final). */
  partial: string;
  /** Stream time `partial` arrived: words sent after the caller fell silent have heard the end of the speech. */
  partialAtMs: number;
  /** The VAD closed a segment whose final transcript has not come yet. */
  awaitingFinal: boolean;
  /** The end-of-turn window chosen for the words so far; `remainingMs`: what was left of it when last counted. */
  end: { kind: TurnEnd; windowMs: number; remainingMs: number };
  /** Replies prepared for the turn (reset when it is committed). */
  preempts: number;
  /** Stream time of the last end of caller speech, and of the last final transcript. */
  lastSpeechEndAtMs: number;
  lastFinalAtMs: number;
  /** Endpointing window the agent asked for. */
  expect: 'short' | 'normal' | 'long';
  /** Menu keys typed so far, not yet a complete entry. */
  digits: string;
  /** An answer to the recording notice heard while the notice was still playing. */
  consentAnswer: 'yes' | 'no' | null;
}

/** Running counts over the call. */
export interface CallCounts {
  silencePrompts: number;
  failedTurns: number;
  consentAsks: number;
  /** Prepared replies thrown away during the call. */
  discardedReplies: number;
  interruptions: number;
  falseInterruptions: number;
}

/**
 * The call's context. Keep it at 19 top-level fields or fewer (test/machines/call.context-shape.test.ts):
 * XState copies the context with `Object.assign({}, context, update)` on every `assign`, and V8
 * gives an object built that way with 20 or more properties slow, dictionary-mode properties; every
 * event then cost about a third more. Group new fields into the nested objects instead.
 */
export interface CallContext {
  callSid: string;
  tenant: CallTenant;
  streamSid: string | null;
  /** Last generation number handed out; every spoken item gets a new one. */
  generation: number;
  playback: Playback;
  reply: Reply | null;
  history: ChatTurn[];
  /** The caller's turn in progress. */
  turn: CallerTurn;
  /** Running counts over the call. */
  counts: CallCounts;
  consent: 'notRequired' | 'pending' | 'given' | 'refused';
  /** What recording was asked of Twilio, and the statuses Twilio reported for each recording. */
  recording: { requested: boolean; reports: { recordingSid: string; status: string }[] };
  /** The emergency the procedure ran for (set as the script starts): how it was triggered. */
  emergency: EmergencySource | null;
  /** The "in danger?" check, when an uncertain trigger asked it: its trigger and answer. */
  emergencyCheck: EmergencyCheck | null;
  transfer: { target: TransferTarget; reason: string } | null;
  /** Requests and messages taken during the call, in order (each already in the clinic's store). */
  requests: StoredRequest[];
  sttDown: boolean;
  /** The call has lasted `limits.maxCallMs`: the conversation wraps up as soon as it is in one. */
  timeLimitReached: boolean;
  outcome: Outcome | null;
}
