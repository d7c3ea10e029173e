/**
 * The receptionist's brain: given the conversation so far and the caller's latest words, stream a
 * reply as text deltas, possibly ending with an action. The local rule-based receptionist and the
 * LLM implement the same interface.
 */
import type { Tenant } from '../../config/tenant.schema.js';

export type ChatTurn = { role: 'caller' | 'agent'; text: string };

export interface AppointmentRequest {
  petName: string | null;
  ownerName: string | null;
  reason: string | null;
  preferredTime: string | null;
}

export type AgentAction =
  | { type: 'transfer'; target: 'frontDesk' | 'emergency'; reason: string }
  | { type: 'end'; reason: string }
  | { type: 'emergency'; reason: string };

export type AgentOutput =
  /** Text to say, in order; may split words anywhere. */
  | { type: 'delta'; text: string }
  /** A completed appointment request to store with the call. */
  | { type: 'appointment'; request: AppointmentRequest }
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
  startSession(tenant: Tenant): AgentSession;
}
