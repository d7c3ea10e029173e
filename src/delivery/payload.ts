/**
 * The JSON body every channel carries (docs/delivery.md "Payload"): built from the store's rows,
 * never from live call state, so a retry a day later sends the same content. The field set is a
 * public contract: add fields, never rename or remove one.
 */
import type { CallSummary, DeliveryKind, EmergencyDetail, FollowUp, Urgency } from '../store/types.js';

export type PayloadType = DeliveryKind;
export const PAYLOAD_TYPES: readonly PayloadType[] = ['appointment_request', 'refill_request', 'message', 'emergency', 'call_summary'];

export interface DeliveryPayload {
  /** The follow-up's id (UUID), or the CallSid for `call_summary`. Also the `Idempotency-Key`. */
  id: string;
  type: PayloadType;
  clinicId: string;
  callSid: string;
  /** ISO-8601 UTC, e.g. `2026-03-14T15:09:26.535Z`. For `call_summary`: when the call ended. */
  createdAt: string;
  caller: { number: string | null; name: string | null };
  pet: { name: string | null; species: string | null };
  reason: string | null;
  preferredTime: string | null;
  message: string | null;
  /** `routine`, `soon`, `urgent`, or `emergency` (emergencies only); null for `call_summary`. */
  urgency: Urgency | null;
  /** The call summary's text; null when the summary is not written yet. */
  summary: string | null;
  /** For `message`: the staff member it is for, null for the clinic. Null for other types. */
  recipient: string | null;
  /** For `emergency`: how it was triggered and where the call went. Null for other types. */
  emergency: EmergencyDetail | null;
  /** For `call_summary`: how the call ended. Null for follow-ups. */
  outcome: string | null;
  /** For `call_summary`: the conversation, the agent's lines cut to what the caller heard. Null for follow-ups. */
  transcript: { role: 'caller' | 'agent'; text: string }[] | null;
}

export const isoUtc = (ms: number): string => new Date(ms).toISOString();

/** A follow-up, with its call's summary when it exists. */
export function followUpPayload(followUp: FollowUp, summary: CallSummary | null): DeliveryPayload {
  return {
    id: followUp.id,
    type: followUp.type,
    clinicId: followUp.clinicId,
    callSid: followUp.callSid,
    createdAt: isoUtc(followUp.createdAt),
    caller: { number: followUp.callerNumber, name: followUp.callerName },
    pet: { name: followUp.petName, species: followUp.petSpecies },
    reason: followUp.reason,
    preferredTime: followUp.preferredTime,
    message: followUp.message,
    urgency: followUp.urgency,
    summary: summary?.summary ?? null,
    recipient: followUp.type === 'message' ? followUp.recipient : null,
    emergency: followUp.type === 'emergency' ? followUp.emergency : null,
    outcome: null,
    transcript: null,
  };
}

/** The end-of-call record: its id is the CallSid; follow-up fields are null. */
export function callSummaryPayload(summary: CallSummary): DeliveryPayload {
  return {
    id: summary.callSid,
    type: 'call_summary',
    clinicId: summary.clinicId,
    callSid: summary.callSid,
    createdAt: isoUtc(summary.endedAt),
    caller: { number: summary.callerNumber, name: null },
    pet: { name: null, species: null },
    reason: null,
    preferredTime: null,
    message: null,
    urgency: null,
    summary: summary.summary,
    recipient: null,
    emergency: null,
    outcome: summary.outcome,
    transcript: summary.transcript.map((line) => ({ role: line.role, text: line.text })),
  };
}
