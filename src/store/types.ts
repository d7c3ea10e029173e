/**
 * The durable store's contract: what a call leaves for the clinic (follow-ups, call summaries) and
 * the delivery outbox that pushes them to the clinic's systems. Two implementations with the same
 * behaviour: SQLite (embedded default, one process) and PostgreSQL (several instances). Only the
 * store module knows SQL; everything else speaks these types. Times are epoch milliseconds.
 */

/** One thing a call produced that a person at the clinic must act on. */
export type FollowUpType = 'appointment_request' | 'refill_request' | 'message' | 'emergency';
export const FOLLOW_UP_TYPES: readonly FollowUpType[] = ['appointment_request', 'refill_request', 'message', 'emergency'];

export type FollowUpStatus = 'new' | 'in_progress' | 'done';
export const FOLLOW_UP_STATUSES: readonly FollowUpStatus[] = ['new', 'in_progress', 'done'];

/** How soon the clinic should act: `emergency` is only ever set on emergency follow-ups. */
export type Urgency = 'routine' | 'soon' | 'urgent' | 'emergency';

/** Emergency details: how it was triggered, what the caller heard, where the call went. */
export interface EmergencyDetail {
  /** `speech` (a keyword), `dtmf` (the emergency key or a menu entry), `agent` (the receptionist's tool call). */
  trigger: 'speech' | 'dtmf' | 'agent';
  /** The keyword, the key, or the agent's (sanitised, bounded) reason. */
  detail: string;
  /** Which script was played: `emergency` (the clinic's script) or `afterHours`. */
  script: string;
  /** Where the call was sent: `emergencyLine`, or null when the clinic has none (the call ended with the script). */
  sentTo: string | null;
  /** Whether the transfer to that line connected (Twilio's dial status), null while unknown or when not sent. */
  connected: boolean | null;
  /**
   * `clear` (acted on at once) or `uncertain` (a partial transcript, low confidence or a lone keyword:
   * the caller was asked "Is your pet in danger right now?" first). Absent on follow-ups stored before
   * the two-step check.
   */
  certainty?: 'clear' | 'uncertain';
  /**
   * How the caller confirmed: `notAsked` (a clear trigger), `saidYes`, `pressedYes` (key 1),
   * `emergencyKey`, `clearKeyword` (said meanwhile), `noAnswer` (silence counts as yes), or
   * `callEnded` (the call ended while the question was asked: no script was played). Absent on
   * follow-ups stored before the two-step check.
   */
  confirmation?: EmergencyConfirmation;
}

export type EmergencyConfirmation = 'notAsked' | 'saidYes' | 'pressedYes' | 'emergencyKey' | 'clearKeyword' | 'noAnswer' | 'callEnded';

export interface FollowUpInput {
  /** Stable id (UUID); also the webhook's `id` and `Idempotency-Key`. */
  id: string;
  clinicId: string;
  callSid: string;
  type: FollowUpType;
  createdAt: number;
  /** Whom to call back. Null when the clinic does not store caller numbers and the caller gave none. */
  callerNumber: string | null;
  callerName: string | null;
  petName: string | null;
  petSpecies: string | null;
  reason: string | null;
  preferredTime: string | null;
  /** A left message's words (type `message`). */
  message: string | null;
  /** For a message: the staff member it is for, or null for the clinic. */
  recipient: string | null;
  urgency: Urgency;
  emergency: EmergencyDetail | null;
}

export interface FollowUpNote {
  at: number;
  by: string;
  text: string;
}

export interface FollowUp extends FollowUpInput {
  status: FollowUpStatus;
  /** Who last changed the status (free text from the desk), or null. */
  handledBy: string | null;
  notes: FollowUpNote[];
  updatedAt: number;
}

export interface FollowUpChange {
  status?: FollowUpStatus;
  handledBy?: string;
  /**
   * Appended to the notes, attributed to `handledBy` (or "staff"); at most 2000 characters (longer:
   * VetError VET_E_BAD_REQUEST, nothing changed). A blank note is not appended.
   */
  note?: string;
}

export interface FollowUpQuery {
  /** Null: every clinic (the operator's token). */
  clinicId: string | null;
  status?: FollowUpStatus;
  type?: FollowUpType;
  /** createdAt ≥ from and < to. */
  from?: number;
  to?: number;
  /** Default 100, at most 500 (larger values are capped). */
  limit?: number;
}

/** The end-of-call record staff read beside each follow-up. */
export interface CallSummaryInput {
  callSid: string;
  clinicId: string;
  startedAt: number;
  endedAt: number;
  outcome: string;
  /** A few sentences for staff (LLM or template). */
  summary: string;
  /** `llm` or `template`. */
  summarySource: 'llm' | 'template';
  /** The conversation, the agent's lines cut to what the caller heard. */
  transcript: { role: 'caller' | 'agent'; text: string }[];
  /** Caller number when the clinic stores it, else null. */
  callerNumber: string | null;
  recordings: { recordingSid: string; url: string | null; durationSeconds: number | null }[];
}

export type CallSummary = CallSummaryInput;

/** Where a delivery goes. */
export type DeliveryChannel = 'webhook' | 'email' | 'sms';
/** What a delivery carries: a follow-up's type, or the call summary. */
export type DeliveryKind = FollowUpType | 'call_summary';
/**
 * held: waiting for the call to end (payload needs the summary); pending: due at nextAttemptAt;
 * delivered; failed: gave up (4xx other than 408/429, or 24 h of retries), lastError says why.
 */
export type DeliveryStatus = 'held' | 'pending' | 'delivered' | 'failed';

export interface DeliveryInput {
  /** Row id (UUID). */
  id: string;
  clinicId: string;
  callSid: string;
  channel: DeliveryChannel;
  kind: DeliveryKind;
  /** The follow-up's id, or the call summary's id (the CallSid) for `call_summary`. */
  subjectId: string;
  createdAt: number;
  /**
   * Non-null: the delivery starts `held` (nextAttemptAt = holdUntil) and is released at the end of its
   * call, or at this time at the latest. Null: it starts `pending`, due at createdAt.
   */
  holdUntil: number | null;
  /** Retries stop after this (createdAt + 24 h). */
  expiresAt: number;
}

export interface Delivery extends DeliveryInput {
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  deliveredAt: number | null;
}

export interface FollowUpStore {
  /** `sqlite` or `postgres`: for logs and health. */
  readonly kind: 'sqlite' | 'postgres';
  /**
   * The follow-up and its (held) deliveries in one transaction: when this resolves, nothing can lose
   * them. Idempotent per follow-up id: recording an id that exists changes nothing.
   */
  recordFollowUp(followUp: FollowUpInput, deliveries: readonly DeliveryInput[]): Promise<void>;
  /**
   * End of a call, one transaction: the summary, its deliveries, and every held delivery of this
   * call released (pending, due now). Idempotent per CallSid (a second call changes nothing).
   */
  finishCall(summary: CallSummaryInput, deliveries: readonly DeliveryInput[], now: number): Promise<void>;
  getFollowUp(id: string): Promise<FollowUp | null>;
  listFollowUps(query: FollowUpQuery): Promise<FollowUp[]>;
  /**
   * Null when the id is unknown or belongs to another clinic than `clinicId` (null clinicId: any).
   * `handledBy` is stored only with a status change (otherwise it only signs the note); updatedAt = now.
   */
  updateFollowUp(id: string, clinicId: string | null, change: FollowUpChange, now: number): Promise<FollowUp | null>;
  getCallSummary(callSid: string): Promise<CallSummary | null>;
  /**
   * Deliveries due at `now` (pending, nextAttemptAt ≤ now; held ones past holdUntil), oldest first,
   * each leased for `leaseMs` (nextAttemptAt moved forward, status pending) so another worker or
   * instance does not take it meanwhile. Claiming does not count an attempt; markDelivered and
   * markAttemptFailed do.
   */
  claimDueDeliveries(now: number, limit: number, leaseMs: number): Promise<Delivery[]>;
  /** attempts + 1, status delivered at `now`. Only a pending delivery changes: delivered and failed are final. */
  markDelivered(id: string, now: number): Promise<void>;
  /**
   * One failed attempt (attempts + 1, lastError cut to 500 characters): retry at `retryAt`, or null
   * to give up (status failed). Only a pending delivery changes.
   */
  markAttemptFailed(id: string, error: string, retryAt: number | null, now: number): Promise<void>;
  /** Deliveries of one subject (desk: "delivery failed: …"). */
  deliveriesFor(subjectId: string): Promise<Delivery[]>;
  /** Single-instance start-up: held deliveries of calls that can no longer finish become due now. Returns how many. */
  releaseHeld(now: number): Promise<number>;
  /**
   * Retention: this clinic's follow-ups (with their notes) created before `before`, call summaries of
   * calls that ended before it, and delivered/failed deliveries created before it (held and pending
   * ones are kept). Returns the follow-ups + summaries + deliveries deleted.
   */
  prune(clinicId: string, before: number): Promise<number>;
  close(): Promise<void>;
}
