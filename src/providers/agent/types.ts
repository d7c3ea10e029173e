/**
 * The receptionist's brain: given the conversation so far and the caller's latest words, stream a
 * reply as text deltas, possibly ending with an action. The local rule-based receptionist and the
 * LLM implement the same interface.
 */
import type { Tenant } from '../../config/tenant.schema.js';

export type ChatTurn = { role: 'caller' | 'agent'; text: string };

/**
 * A request the receptionist captured: an appointment, a refill, or a message for staff. The same
 * shape as the call machine's `CallerRequest` (src/calls checks the two stay assignable).
 * `callback`: `callerId` is the number the call came from (only offered when the clinic stores
 * caller numbers), `spoken` a number the caller gave and heard read back.
 */
export interface CallerRequest {
  kind: 'appointment' | 'refill' | 'message';
  petName: string | null;
  petSpecies: string | null;
  ownerName: string | null;
  reason: string | null;
  preferredTime: string | null;
  message: string | null;
  recipient: string | null;
  callback: { kind: 'callerId' } | { kind: 'spoken'; number: string } | { kind: 'none' };
  urgency: 'routine' | 'soon' | 'urgent';
}

/** What a receptionist knows about the call it serves, beyond the clinic. */
export interface AgentCallInfo {
  /** The caller's number may be used for the call-back (the clinic stores caller numbers and the call has one). */
  callerIdUsable: boolean;
  /** Epoch ms at the call's start (opening-hours answers). */
  startedAt: number;
  /** The clinic was open at the call's start (src/config/hours.ts): closed, nobody takes transfers to the front desk. */
  openNow: boolean;
}

export type AgentAction =
  | { type: 'transfer'; target: 'frontDesk' | 'emergency'; reason: string }
  | { type: 'end'; reason: string }
  | { type: 'emergency'; reason: string };

/** A call with nothing known about it (tests, tools): no caller ID, open, starting now. */
export const anonymousCall = (): AgentCallInfo => ({ callerIdUsable: false, startedAt: Date.now(), openNow: true });

export type AgentOutput =
  /** Text to say, in order; may split words anywhere. */
  | { type: 'delta'; text: string }
  /**
   * A confirmed request to send to the clinic. The caller's reply that follows ("I've sent it") is
   * spoken only once the request is committed to the store; if it cannot be, the turn is replaced.
   */
  | { type: 'request'; request: CallerRequest }
  /** What the call should do after the reply has been spoken. At most one, last. */
  | { type: 'action'; action: AgentAction }
  /**
   * The endpointing window the next caller turn needs: `long` when we just asked for a name, a time
   * or a number; `short` for yes/no questions.
   */
  | { type: 'expect'; answer: 'short' | 'normal' | 'long' }
  /** Tokens a cloud model billed for this reply (cost estimate in the call summary). Any time, any number. */
  | { type: 'usage'; inputTokens: number; outputTokens: number };

export interface AgentTurn {
  /** What the caller just said (or "caller pressed 1: appointments"). */
  transcript: string;
  /** Conversation so far, the agent's lines cut to what the caller actually heard. */
  history: readonly ChatTurn[];
  signal: AbortSignal;
  /**
   * Resolves when the caller's turn is committed. Until then the reply is only prepared (the
   * caller may still go on, and then `signal` aborts): a session with per-call memory must not
   * change it before. Absent: the turn is committed already.
   */
  committed?: Promise<void>;
  /** Told when this turn is answered by a fallback provider (journal + metrics). */
  onFallback?(report: FallbackReport): void;
}

/** A provider failed (or its breaker is open) and another one took over. */
export interface FallbackReport {
  kind: 'stt' | 'agent' | 'tts';
  from: string;
  to: string;
  /** Failure kind and a short message; never keys or content. */
  reason: string;
}

/** One per call: may keep per-call memory (slot filling). */
export interface AgentSession {
  respond(turn: AgentTurn): AsyncIterable<AgentOutput>;
}

export interface AgentProvider {
  readonly name: string;
  startSession(tenant: Tenant, call?: AgentCallInfo): AgentSession;
}
