/**
 * What the HTTP edge needs from the call registry. The registry owns the call actors; routes only
 * translate validated webhooks into these calls. Kept as an interface so route tests can use a fake.
 */
import type { Tenant } from '../config/tenant.schema.js';
import type { CallerVerdict } from './caller-limits.js';

/** Terminal call statuses Twilio reports on the status callback. */
export type TerminalCallStatus = 'completed' | 'busy' | 'failed' | 'no-answer' | 'canceled';

export type OpenCallResult =
  /** New call: answer with <Connect><Stream> carrying this one-time token. */
  | { kind: 'created'; streamToken: string }
  /** Webhook repeated before the stream connected: answer the same TwiML (same token). */
  | { kind: 'awaitingStream'; streamToken: string }
  /** Stream already connected, or the call is over: answer <Hangup/> and create nothing. */
  | { kind: 'alreadyConnected' }
  /** Draining or at capacity: do not open a stream; serve the caller another way (menu / dial). */
  | { kind: 'refused'; reason: 'draining' | 'capacity' };

export interface RecordingInfo {
  recordingSid: string;
  status: string;
  url: string | null;
  durationSeconds: number | null;
  channels: number | null;
}

export interface CallListing {
  callSid: string;
  tenantId: string;
  /** Dotted state path, e.g. "reply.speaking". */
  state: string;
  startedAt: string;
  durationMs: number;
  /** Time spent in the current state. */
  stateDurationMs: number;
}

export interface CallRegistry {
  /**
   * `accountSid`: the signed webhook's account, bound into the stream token. `from`: the signed
   * caller number (kept only as the clinic's privacy setting allows). `callerKey`: its keyed hash
   * from `CallerAdmission.admit`, counted while the call is live.
   */
  open(params: { callSid: string; accountSid: string; tenant: Tenant; from?: string | null; callerKey?: string | null }): OpenCallResult;
  /** Terminal status callback; idempotent and order-tolerant. Returns false for an unknown call. */
  status(params: { callSid: string; status: string; sequenceNumber: number | null }): boolean;
  /** Recording status callback; deduplicated on RecordingSid + status. */
  recording(params: { callSid: string; recording: RecordingInfo }): boolean;
  /** Result of a <Dial> we pushed for a transfer (DialCallStatus). */
  dialResult(params: { callSid: string; dialStatus: string }): boolean;
  list(): CallListing[];
  readonly activeCount: number;
}

/** The per-caller limits at /twilio/voice (src/calls/caller-limits.ts). */
export interface CallerAdmission {
  /** `from`: the caller's own number, or null when there is none or it was withheld (never limited). */
  admit(params: { callSid: string; tenant: Tenant; from: string | null }): Promise<CallerVerdict>;
  /** An admitted call that did not reach the assistant (the registry refused it): its slot back. */
  release(params: { callSid: string; tenant: Tenant; key: string }): Promise<void>;
}
