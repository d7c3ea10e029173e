/**
 * What the SQLite and PostgreSQL stores share: row shapes (snake_case, as both databases return
 * them once PostgreSQL's BIGINT is parsed to a number), row → contract mapping, and the checks and
 * normalisations both apply to input so that they behave the same.
 */
import { VetError } from '../errors.js';
import type {
  CallSummary,
  CallSummaryInput,
  Delivery,
  DeliveryInput,
  DeliveryStatus,
  EmergencyDetail,
  FollowUp,
  FollowUpInput,
  FollowUpNote,
  FollowUpQuery,
  FollowUpStatus,
  FollowUpType,
  Urgency,
  DeliveryChannel,
  DeliveryKind,
} from './types.js';

export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 500;
/** A note longer than this is refused (VET_E_BAD_REQUEST). Counted in characters (code points). */
export const MAX_NOTE_CHARS = 2000;
/** `lastError` is cut to this many characters (code points). */
export const MAX_ERROR_CHARS = 500;

export interface FollowUpRow {
  id: string;
  clinic_id: string;
  call_sid: string;
  type: string;
  created_at: number;
  caller_number: string | null;
  caller_name: string | null;
  pet_name: string | null;
  pet_species: string | null;
  reason: string | null;
  preferred_time: string | null;
  message: string | null;
  recipient: string | null;
  urgency: string;
  emergency: string | null;
  status: string;
  handled_by: string | null;
  updated_at: number;
}

export interface NoteRow {
  follow_up_id: string;
  noted_at: number;
  noted_by: string;
  body: string;
}

export interface SummaryRow {
  call_sid: string;
  clinic_id: string;
  started_at: number;
  ended_at: number;
  outcome: string;
  summary: string;
  summary_source: string;
  transcript: string;
  caller_number: string | null;
  recordings: string;
}

export interface DeliveryRow {
  id: string;
  clinic_id: string;
  call_sid: string;
  channel: string;
  kind: string;
  subject_id: string;
  created_at: number;
  hold_until: number | null;
  expires_at: number;
  status: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  delivered_at: number | null;
}

/**
 * PostgreSQL text cannot hold U+0000 (the insert would fail and lose the row), so both stores drop
 * it from every stored string: the one place where a value does not read back exactly as written.
 */
export function text(value: string): string {
  return value.includes('\u0000') ? value.replaceAll('\u0000', '') : value;
}

export function textOrNull(value: string | null): string | null {
  return value === null ? null : text(value);
}

/** JSON text for a column (NULs inside strings are escaped by JSON.stringify, so nothing to drop). */
export function json(value: unknown): string {
  return JSON.stringify(value);
}

/** Epoch milliseconds as an integer (both columns are integers; a fractional time must not fail an insert). */
export function ms(value: number): number {
  return Math.round(value);
}

export function msOrNull(value: number | null): number | null {
  return value === null ? null : Math.round(value);
}

/** The first `max` characters (code points, so a surrogate pair is never split). */
export function truncateChars(value: string, max: number): string {
  if (value.length <= max) return value;
  const chars = Array.from(value);
  return chars.length <= max ? value : chars.slice(0, max).join('');
}

/** The clamped list limit: default 100, between 1 and 500. */
export function listLimit(query: FollowUpQuery): number {
  const limit = query.limit;
  if (limit === undefined || !Number.isFinite(limit)) return DEFAULT_LIST_LIMIT;
  return Math.min(MAX_LIST_LIMIT, Math.max(1, Math.floor(limit)));
}

/** Refuses a note over 2000 characters; returns the note to append, or null when there is none (absent or blank). */
export function noteToAppend(note: string | undefined): string | null {
  if (note === undefined) return null;
  if (Array.from(note).length > MAX_NOTE_CHARS) {
    throw new VetError('VET_E_BAD_REQUEST', `note is longer than ${MAX_NOTE_CHARS} characters`);
  }
  return note.trim() === '' ? null : text(note);
}

/** A delivery's first state: with a holdUntil it waits for its call (held until then at the latest), else it is due at once. */
export function initialDeliveryState(d: DeliveryInput): { status: DeliveryStatus; nextAttemptAt: number } {
  return d.holdUntil === null ? { status: 'pending', nextAttemptAt: ms(d.createdAt) } : { status: 'held', nextAttemptAt: ms(d.holdUntil) };
}

/** The follow-up columns in insert order, with their values (shared by both stores' INSERT). */
export function followUpValues(f: FollowUpInput, status: FollowUpStatus = 'new'): unknown[] {
  return [
    f.id,
    f.clinicId,
    f.callSid,
    f.type,
    ms(f.createdAt),
    textOrNull(f.callerNumber),
    textOrNull(f.callerName),
    textOrNull(f.petName),
    textOrNull(f.petSpecies),
    textOrNull(f.reason),
    textOrNull(f.preferredTime),
    textOrNull(f.message),
    textOrNull(f.recipient),
    f.urgency,
    f.emergency === null ? null : json(f.emergency),
    status,
    null,
    ms(f.createdAt),
  ];
}

export const FOLLOW_UP_COLUMNS =
  'id, clinic_id, call_sid, type, created_at, caller_number, caller_name, pet_name, pet_species, reason, preferred_time, message, recipient, urgency, emergency, status, handled_by, updated_at';

export function deliveryValues(d: DeliveryInput): unknown[] {
  const { status, nextAttemptAt } = initialDeliveryState(d);
  return [d.id, d.clinicId, d.callSid, d.channel, d.kind, d.subjectId, ms(d.createdAt), msOrNull(d.holdUntil), ms(d.expiresAt), status, 0, nextAttemptAt, null, null];
}

export const DELIVERY_COLUMNS =
  'id, clinic_id, call_sid, channel, kind, subject_id, created_at, hold_until, expires_at, status, attempts, next_attempt_at, last_error, delivered_at';

export function summaryValues(s: CallSummaryInput): unknown[] {
  return [
    s.callSid,
    s.clinicId,
    ms(s.startedAt),
    ms(s.endedAt),
    text(s.outcome),
    text(s.summary),
    s.summarySource,
    json(s.transcript),
    textOrNull(s.callerNumber),
    json(s.recordings),
  ];
}

export const SUMMARY_COLUMNS = 'call_sid, clinic_id, started_at, ended_at, outcome, summary, summary_source, transcript, caller_number, recordings';

export function toFollowUp(row: FollowUpRow, notes: readonly NoteRow[]): FollowUp {
  return {
    id: row.id,
    clinicId: row.clinic_id,
    callSid: row.call_sid,
    type: row.type as FollowUpType,
    createdAt: row.created_at,
    callerNumber: row.caller_number,
    callerName: row.caller_name,
    petName: row.pet_name,
    petSpecies: row.pet_species,
    reason: row.reason,
    preferredTime: row.preferred_time,
    message: row.message,
    recipient: row.recipient,
    urgency: row.urgency as Urgency,
    emergency: row.emergency === null ? null : (JSON.parse(row.emergency) as EmergencyDetail),
    status: row.status as FollowUpStatus,
    handledBy: row.handled_by,
    notes: notes.map((n): FollowUpNote => ({ at: n.noted_at, by: n.noted_by, text: n.body })),
    updatedAt: row.updated_at,
  };
}

/** Follow-ups with their notes, given notes of all of them in (follow_up_id, id) or id order. */
export function toFollowUps(rows: readonly FollowUpRow[], notes: readonly NoteRow[]): FollowUp[] {
  const byId = new Map<string, NoteRow[]>();
  for (const n of notes) {
    const list = byId.get(n.follow_up_id);
    if (list) list.push(n);
    else byId.set(n.follow_up_id, [n]);
  }
  return rows.map((r) => toFollowUp(r, byId.get(r.id) ?? []));
}

export function toSummary(row: SummaryRow): CallSummary {
  return {
    callSid: row.call_sid,
    clinicId: row.clinic_id,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    outcome: row.outcome,
    summary: row.summary,
    summarySource: row.summary_source as CallSummary['summarySource'],
    transcript: JSON.parse(row.transcript) as CallSummary['transcript'],
    callerNumber: row.caller_number,
    recordings: JSON.parse(row.recordings) as CallSummary['recordings'],
  };
}

export function toDelivery(row: DeliveryRow): Delivery {
  return {
    id: row.id,
    clinicId: row.clinic_id,
    callSid: row.call_sid,
    channel: row.channel as DeliveryChannel,
    kind: row.kind as DeliveryKind,
    subjectId: row.subject_id,
    createdAt: row.created_at,
    holdUntil: row.hold_until,
    expiresAt: row.expires_at,
    status: row.status as DeliveryStatus,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    deliveredAt: row.delivered_at,
  };
}

/** Claimed rows in claim order: oldest nextAttemptAt before the lease, then createdAt, then id. */
export function byDueOrder(a: { due: number; row: DeliveryRow }, b: { due: number; row: DeliveryRow }): number {
  return a.due - b.due || a.row.created_at - b.row.created_at || (a.row.id < b.row.id ? -1 : a.row.id > b.row.id ? 1 : 0);
}

/**
 * The ORDER BY of the desk list: open emergencies first, then newest first; id (byte order, as in
 * JavaScript's string comparison for ASCII ids) breaks ties. `binaryId` is how the dialect spells
 * a bytewise comparison of the id column.
 */
export function listOrder(binaryId: string): string {
  return `CASE WHEN type = 'emergency' AND status <> 'done' THEN 0 ELSE 1 END, created_at DESC, ${binaryId}`;
}
