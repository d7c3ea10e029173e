/**
 * Follow-through: what a call produced reaches the clinic (docs/follow-ups.md).
 *
 * - During the call, a request the receptionist captured (appointment, refill, message) is committed
 *   to the store with its outbox deliveries *before* the caller hears "I've sent it" (the agent actor
 *   awaits `commit`). Its deliveries are held until the call ends, so the webhook carries the call's
 *   summary; a crash meanwhile loses nothing (held rows are released at the next start-up).
 * - At the end of the call everything else is derived from the machine's final context: the
 *   emergency follow-up (how it was triggered, what was played, where the call went), the summary
 *   for staff (LLM when the clinic's receptionist is a cloud model, else a template), and the
 *   summary's deliveries; one transaction releases every held delivery of the call. Then the outbox
 *   is kicked and the desk told.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { CallContext, StoredRequest } from '../../machines/call/call.types.js';
import type { Tenant } from '../config/tenant.schema.js';
import type { CallerRequest } from '../providers/agent/types.js';
import type { CallSummarizer } from '../providers/types.js';
import type {
  CallSummaryInput, DeliveryChannel, DeliveryInput, DeliveryKind, EmergencyConfirmation, EmergencyDetail, FollowUpInput, FollowUpStore, FollowUpType,
} from '../store/types.js';
import type { CallRecord } from './call-record.js';

/** Retries of a delivery stop this long after it was created. */
export const DELIVERY_EXPIRY_MS = 24 * 3_600_000;
/** A held delivery whose call never reported its end (a crash) is released after this at the latest. */
const HOLD_MAX_MS = 2 * 3_600_000;
/** An LLM summary must come back within this, or the template is used. */
const SUMMARY_TIMEOUT_MS = 8_000;


/** Which channels a clinic delivers follow-ups to (main.ts derives it from the clinic file and the environment). */
export interface ClinicChannels {
  webhook: boolean;
  email: boolean;
  /** Text the caller a confirmation (clinic enabled it and Twilio Messaging is configured). */
  sms: boolean;
}

export interface FollowThroughDeps {
  store: FollowUpStore;
  channels(tenant: Tenant): ClinicChannels;
  /** The summarizer for a clinic (its receptionist is a cloud model and a key is set), or null for the template. */
  summarizer?(tenant: Tenant): CallSummarizer | null;
  /** Something of this clinic changed in the store (the desk updates live). */
  changed?(clinicId: string): void;
  /** A call finished and its deliveries are due (the outbox attempts them now). */
  due?(): void;
  logger: Logger;
  /** Epoch ms. */
  now?: () => number;
}

const TYPE_OF: Record<CallerRequest['kind'], FollowUpType> = { appointment: 'appointment_request', refill: 'refill_request', message: 'message' };
const E164 = /^\+[1-9]\d{6,14}$/;

/** Process-wide: one per engine. Tracks in-flight end-of-call work so a drain can wait for it. */
export class FollowThrough {
  private readonly pending = new Set<Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly deps: FollowThroughDeps) {
    this.now = deps.now ?? Date.now;
  }

  /**
   * The follow-ups of one call. `from` is the signed caller number (used only as the clinic's privacy
   * setting allows); `consentGiven` says whether the caller agreed to the clinic's notice, which is
   * what a confirmation text needs (docs/follow-ups.md).
   */
  forCall(callSid: string, tenant: Tenant, from: string | null, consentGiven: () => boolean): CallFollowUps {
    const callerId = tenant.privacy.storeCallerNumber && from !== null && E164.test(from) ? from : null;
    return new CallFollowUps(this, this.deps, callSid, tenant, callerId, consentGiven, this.now);
  }

  /** Resolves once every end-of-call write started so far is done (drain). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** @internal */
  track(work: Promise<void>): void {
    this.pending.add(work);
    void work.finally(() => this.pending.delete(work));
  }
}

export class CallFollowUps {
  constructor(
    private readonly owner: FollowThrough,
    private readonly deps: FollowThroughDeps,
    readonly callSid: string,
    private readonly tenant: Tenant,
    /** The caller's number when the clinic stores it; else null. */
    private readonly callerId: string | null,
    private readonly consentGiven: () => boolean,
    private readonly now: () => number,
  ) {}

  /** The caller's number may be offered as the call-back number. */
  get callerIdUsable(): boolean {
    return this.callerId !== null;
  }

  /** Commits a confirmed request (and its held deliveries); resolves with its id once durable. */
  async commit(request: CallerRequest): Promise<string> {
    const now = this.now();
    const followUp: FollowUpInput = {
      id: randomUUID(),
      clinicId: this.tenant.id,
      callSid: this.callSid,
      type: TYPE_OF[request.kind],
      createdAt: now,
      callerNumber: this.callbackNumber(request.callback),
      callerName: request.ownerName,
      petName: request.petName,
      petSpecies: request.petSpecies,
      reason: request.reason,
      preferredTime: request.preferredTime,
      message: request.message,
      recipient: request.recipient,
      urgency: request.urgency,
      emergency: null,
    };
    const channels = this.deps.channels(this.tenant);
    // A text goes only to a number, and only to a caller who agreed to the clinic's notice.
    const sms = channels.sms && followUp.callerNumber !== null && this.consentGiven();
    const deliveries = this.deliveries(followUp.id, followUp.type, { ...channels, sms }, now, true);
    await this.deps.store.recordFollowUp(followUp, deliveries);
    this.deps.changed?.(this.tenant.id);
    return followUp.id;
  }

  /** End of the call: emergency follow-up, summary, deliveries released. Never throws; logs failures. */
  finish(final: CallContext, record: CallRecord, log: Logger): void {
    this.owner.track(
      this.write(final, record).catch((err: unknown) => {
        log.error({ err, code: 'VET_E_STORE' }, 'call summary could not be stored; its follow-ups stay held until the next start-up');
      }),
    );
  }

  private async write(final: CallContext, record: CallRecord): Promise<void> {
    const now = this.now();
    const channels = this.deps.channels(this.tenant);
    const emergency = emergencyFollowUp(final, record, this.tenant, this.callSid, this.callerId, now);
    if (emergency) {
      await this.deps.store.recordFollowUp(emergency, this.deliveries(emergency.id, 'emergency', channels, now, true));
    }
    const text = await this.summaryText(final, record);
    const summary: CallSummaryInput = {
      callSid: this.callSid,
      clinicId: this.tenant.id,
      startedAt: Date.parse(record.startedAt),
      endedAt: record.endedAt ? Date.parse(record.endedAt) : now,
      outcome: final.outcome ?? record.outcome ?? 'callerHungUp',
      summary: text.summary,
      summarySource: text.source,
      transcript: final.history.map((t) => ({ role: t.role, text: t.text })),
      callerNumber: this.callerId,
      recordings: record.recordings.map((r) => ({ recordingSid: r.recordingSid, url: r.url, durationSeconds: r.durationSeconds })),
    };
    const summaryDeliveries = this.deliveries(this.callSid, 'call_summary', { ...channels, sms: false }, now, false);
    await this.deps.store.finishCall(summary, summaryDeliveries, this.now());
    this.deps.changed?.(this.tenant.id);
    this.deps.due?.();
  }

  private async summaryText(final: CallContext, record: CallRecord): Promise<{ summary: string; source: 'llm' | 'template' }> {
    const template = templateSummary(final, record);
    const summarizer = this.deps.summarizer?.(this.tenant) ?? null;
    if (!summarizer || final.history.length === 0) return { summary: template, source: 'template' };
    try {
      const summary = await summarizer.summarize(
        { clinicName: this.tenant.name, transcript: final.history, facts: template },
        AbortSignal.timeout(SUMMARY_TIMEOUT_MS),
      );
      return summary.trim() ? { summary: summary.trim(), source: 'llm' } : { summary: template, source: 'template' };
    } catch (err) {
      this.deps.logger.warn({ err, callSid: this.callSid, summarizer: summarizer.name, code: 'VET_E_PROVIDER' }, 'summary by the model failed; using the template');
      return { summary: template, source: 'template' };
    }
  }

  private callbackNumber(callback: CallerRequest['callback']): string | null {
    if (callback.kind === 'spoken') return callback.number;
    return callback.kind === 'callerId' ? this.callerId : null;
  }

  /** One delivery per configured channel; SMS only to a caller with a number and only for requests. */
  private deliveries(subjectId: string, kind: DeliveryKind, channels: ClinicChannels, now: number, held: boolean): DeliveryInput[] {
    const wanted: DeliveryChannel[] = [];
    if (channels.webhook) wanted.push('webhook');
    if (channels.email) wanted.push('email');
    if (channels.sms && kind !== 'call_summary' && kind !== 'emergency') wanted.push('sms');
    return wanted.map((channel) => ({
      id: randomUUID(),
      clinicId: this.tenant.id,
      callSid: this.callSid,
      channel,
      kind,
      subjectId,
      createdAt: now,
      holdUntil: held ? now + HOLD_MAX_MS : null,
      expiresAt: now + DELIVERY_EXPIRY_MS,
    }));
  }
}

/** Was the caller's "no" the last word on the check (the procedure did not run for it)? */
const checkDismissed = (final: CallContext) => final.emergencyCheck?.answer === 'saidNo' || final.emergencyCheck?.answer === 'pressedNo';

/** How the emergency the procedure ran for was confirmed (a check a no closed earlier does not count). */
function confirmationOf(final: CallContext): Exclude<EmergencyConfirmation, 'callEnded'> {
  const answer = final.emergencyCheck?.answer ?? null;
  return answer === null || answer === 'saidNo' || answer === 'pressedNo' ? 'notAsked' : answer;
}

/**
 * The emergency of a call as staff need it; null when there was none. A call that ended while
 * "Is your pet in danger right now?" was being asked is one too: nobody told the caller anything.
 */
function emergencyFollowUp(final: CallContext, record: CallRecord, tenant: Tenant, callSid: string, callerId: string | null, now: number): FollowUpInput | null {
  const unanswered = final.emergency === null && final.emergencyCheck !== null && final.emergencyCheck.answer === null;
  const source = final.emergency ?? (unanswered ? final.emergencyCheck?.trigger : null);
  if (!source) return null;
  const sentTo = !unanswered && final.tenant.emergency.hasLine ? 'emergencyLine' : null;
  const detail: EmergencyDetail = {
    trigger: source.via,
    // The agent's reason is caller-influenced free text: bounded, kept out of logs.
    detail: source.via === 'speech' ? source.keyword : source.via === 'dtmf' ? source.digit : source.reason.slice(0, 200),
    script: unanswered ? 'none' : !final.tenant.openNow && final.tenant.emergency.hasLine ? 'afterHours' : 'emergency',
    sentTo,
    connected: sentTo === null ? null : dialConnected(record.dialStatus, final.outcome),
    certainty: final.emergencyCheck !== null && !checkDismissed(final) ? 'uncertain' : source.certainty,
    confirmation: unanswered ? 'callEnded' : confirmationOf(final),
  };
  return {
    id: randomUUID(),
    clinicId: tenant.id,
    callSid,
    type: 'emergency',
    createdAt: now,
    callerNumber: callerId,
    callerName: null,
    petName: null,
    petSpecies: null,
    reason: null,
    preferredTime: null,
    message: null,
    recipient: null,
    urgency: 'urgent',
    emergency: detail,
  };
}

/** Twilio's DialCallStatus when it has arrived; `transferred` without it means Twilio took the <Dial>, not that anyone answered. */
function dialConnected(dialStatus: string | null, outcome: CallContext['outcome']): boolean | null {
  if (dialStatus === 'completed' || dialStatus === 'answered') return true;
  if (dialStatus !== null) return false;
  return outcome === 'transferred' ? null : false;
}

const OUTCOME_TEXT: Record<NonNullable<CallContext['outcome']>, string> = {
  callerHungUp: 'The caller hung up.',
  completed: 'The call ended normally.',
  transferred: 'The call was transferred to staff.',
  emergency: 'The emergency procedure ran.',
  silence: 'The caller stayed silent and the call ended.',
  noStream: 'The call never connected to the receptionist.',
  notConnected: 'The call did not connect.',
  error: 'The receptionist failed; the caller was sent to the key menu.',
  handedOff: 'The receptionist was shutting down; the caller was handed to the front desk.',
  timeLimit: "The call reached the clinic's maximum length; the caller was put through to the front desk, or told goodbye after hours.",
};

const CONFIRMATION_TEXT: Record<Exclude<EmergencyConfirmation, 'notAsked' | 'callEnded'>, string> = {
  saidYes: 'asked, the caller said the pet was in danger',
  pressedYes: 'asked, the caller pressed 1: the pet was in danger',
  emergencyKey: 'asked, the caller pressed the emergency key',
  clearKeyword: 'asked, the caller described an emergency',
  noAnswer: 'asked, the caller did not answer, which counts as yes',
};

const REQUEST_TEXT: Record<StoredRequest['kind'], string> = { appointment: 'Appointment request', refill: 'Refill request', message: 'Message' };

/** A clear summary from the record alone, for clinics without a cloud model (and when the model fails). */
export function templateSummary(final: CallContext, record: CallRecord): string {
  const parts: string[] = [];
  const check = final.emergencyCheck;
  const heardWord = check?.trigger.via === 'speech' ? `"${check.trigger.keyword}"` : 'an emergency word';
  if (check && checkDismissed(final)) {
    parts.push(`The assistant heard ${heardWord} but was not sure; asked, the caller said the pet was not in danger right now.`);
  }
  if (final.emergency) {
    const how = final.emergency.via === 'speech' ? `the caller said "${final.emergency.keyword}"` : final.emergency.via === 'dtmf' ? `the caller pressed ${final.emergency.digit}` : 'the receptionist recognised it';
    const confirmation = confirmationOf(final);
    const confirmed = confirmation === 'notAsked' ? '' : ` (${heardWord} was unclear; ${CONFIRMATION_TEXT[confirmation]})`;
    parts.push(`EMERGENCY: ${how}${confirmed}; the emergency instructions were played${final.tenant.emergency.hasLine ? ' and the call was sent to the emergency line' : ''}.`);
  } else if (check && check.answer === null) {
    parts.push(`POSSIBLE EMERGENCY: the assistant heard ${heardWord} and the call ended while it asked whether the pet was in danger; no instructions were played. Call back.`);
  }
  for (const r of final.requests) {
    const pet = r.petName ? ` for ${r.petName}${r.petSpecies ? ` (${r.petSpecies})` : ''}` : '';
    const what = r.kind === 'message'
      ? `${REQUEST_TEXT.message}${r.recipient ? ` for ${r.recipient}` : ''}${r.ownerName ? ` from ${r.ownerName}` : ''}: ${r.message ?? ''}`
      : `${REQUEST_TEXT[r.kind]}${pet}${r.ownerName ? `, owner ${r.ownerName}` : ''}${r.reason ? `; reason: ${r.reason}` : ''}${r.preferredTime ? `; preferred time: ${r.preferredTime}` : ''}`;
    parts.push(`${what.trim().replace(/[.:;]$/, '')}${r.urgency !== 'routine' ? ` (${r.urgency})` : ''}.`);
  }
  if (final.transfer && final.transfer.target === 'frontDesk') parts.push(`Transfer to the front desk requested (${final.transfer.reason}).`);
  parts.push(OUTCOME_TEXT[final.outcome ?? 'callerHungUp']);
  const callerTurns = final.history.filter((t) => t.role === 'caller').length;
  const seconds = record.endedAt ? Math.round((Date.parse(record.endedAt) - Date.parse(record.startedAt)) / 1000) : null;
  parts.push(`${callerTurns} caller turn${callerTurns === 1 ? '' : 's'}${seconds !== null ? `, ${seconds} s` : ''}.`);
  if (final.requests.length === 0 && !final.emergency && callerTurns > 0) {
    const first = final.history.find((t) => t.role === 'caller')?.text ?? '';
    parts.splice(parts.length - 2, 0, `The caller said: "${first.slice(0, 160)}".`);
  }
  return parts.join(' ');
}
