/**
 * What the desk API answers: the store's records shaped for the page. Twilio's recording URLs are
 * replaced by the desk's own proxy route (or left out); everything else is passed through as data
 * for the page to show as text.
 */
import type { CallSummary, Delivery, DeliveryChannel, FollowUp, FollowUpStore } from '../store/types.js';

export interface DeliveryView {
  id: string;
  channel: DeliveryChannel;
  kind: Delivery['kind'];
  status: Delivery['status'];
  attempts: number;
  lastError: string | null;
  deliveredAt: number | null;
  nextAttemptAt: number;
  /** One line for staff: "sent to clinic system", "webhook failed: HTTP 500 …". */
  label: string;
}

export interface FollowUpView extends FollowUp {
  clinicName: string | null;
  /** The call's summary, without its transcript (that is in the detail). Null until the call has ended. */
  call: { outcome: string; summary: string; summarySource: 'llm' | 'template'; startedAt: number; endedAt: number } | null;
  deliveries: DeliveryView[];
}

export interface CallView {
  callSid: string;
  startedAt: number;
  endedAt: number;
  outcome: string;
  summary: string;
  summarySource: 'llm' | 'template';
  transcript: CallSummary['transcript'];
  callerNumber: string | null;
  /** `href`: the desk's proxy route, or null when this server cannot fetch recordings. */
  recordings: { recordingSid: string; durationSeconds: number | null; href: string | null }[];
  /** The summary's own deliveries (the call-summary webhook, email, SMS). */
  deliveries: DeliveryView[];
}

export interface FollowUpDetail {
  followUp: FollowUpView;
  call: CallView | null;
}

const CHANNEL_NAME: Record<DeliveryChannel, string> = { webhook: 'webhook', email: 'email', sms: 'SMS' };
const DELIVERED: Record<DeliveryChannel, string> = {
  webhook: 'sent to clinic system',
  email: 'emailed to the clinic',
  sms: 'sent to the clinic by text message',
};

/** Error texts come from the delivery worker (HTTP status, SMTP reply): bounded for the page. */
const bounded = (text: string) => (text.length > 300 ? `${text.slice(0, 299)}…` : text);

export function deliveryLabel(d: Delivery): string {
  const name = CHANNEL_NAME[d.channel];
  switch (d.status) {
    case 'delivered':
      return DELIVERED[d.channel];
    case 'failed':
      return `${name} failed: ${bounded(d.lastError ?? 'gave up')}`;
    case 'held':
      return `${name}: waiting for the call to end`;
    case 'pending':
      return d.attempts > 0
        ? `${name} retrying (${d.attempts} ${d.attempts === 1 ? 'attempt' : 'attempts'} so far)${d.lastError ? `: ${bounded(d.lastError)}` : ''}`
        : `${name}: sending`;
  }
}

export function deliveryView(d: Delivery): DeliveryView {
  return {
    id: d.id,
    channel: d.channel,
    kind: d.kind,
    status: d.status,
    attempts: d.attempts,
    lastError: d.lastError === null ? null : bounded(d.lastError),
    deliveredAt: d.deliveredAt,
    nextAttemptAt: d.nextAttemptAt,
    label: deliveryLabel(d),
  };
}

/** The call summary, only when it belongs to the follow-up's own clinic (defence in depth). */
async function summaryOf(store: FollowUpStore, followUp: FollowUp): Promise<CallSummary | null> {
  const summary = await store.getCallSummary(followUp.callSid);
  return summary !== null && summary.clinicId === followUp.clinicId ? summary : null;
}

export async function followUpViews(
  store: FollowUpStore,
  followUps: readonly FollowUp[],
  clinicName: (id: string) => string | null,
): Promise<FollowUpView[]> {
  const summaries = new Map<string, Promise<CallSummary | null>>();
  return Promise.all(
    followUps.map(async (f) => {
      const key = `${f.clinicId}\n${f.callSid}`;
      let summary = summaries.get(key);
      if (!summary) summaries.set(key, (summary = summaryOf(store, f)));
      const [s, deliveries] = await Promise.all([summary, store.deliveriesFor(f.id)]);
      return {
        ...f,
        clinicName: clinicName(f.clinicId),
        call: s ? { outcome: s.outcome, summary: s.summary, summarySource: s.summarySource, startedAt: s.startedAt, endedAt: s.endedAt } : null,
        deliveries: deliveries.filter((d) => d.clinicId === f.clinicId).map(deliveryView),
      };
    }),
  );
}

export const recordingHref = (callSid: string, recordingSid: string) =>
  `/desk/api/recordings/${encodeURIComponent(callSid)}/${encodeURIComponent(recordingSid)}`;

export async function followUpDetail(
  store: FollowUpStore,
  followUp: FollowUp,
  clinicName: (id: string) => string | null,
  recordingsAvailable: boolean,
): Promise<FollowUpDetail> {
  const [[view], summary] = await Promise.all([followUpViews(store, [followUp], clinicName), summaryOf(store, followUp)]);
  if (!summary) return { followUp: view!, call: null };
  const deliveries = (await store.deliveriesFor(summary.callSid)).filter((d) => d.clinicId === followUp.clinicId && d.kind === 'call_summary');
  return {
    followUp: view!,
    call: {
      callSid: summary.callSid,
      startedAt: summary.startedAt,
      endedAt: summary.endedAt,
      outcome: summary.outcome,
      summary: summary.summary,
      summarySource: summary.summarySource,
      transcript: summary.transcript,
      callerNumber: summary.callerNumber,
      recordings: summary.recordings.map((r) => ({
        recordingSid: r.recordingSid,
        durationSeconds: r.durationSeconds,
        href: recordingsAvailable ? recordingHref(summary.callSid, r.recordingSid) : null,
      })),
      deliveries: deliveries.map(deliveryView),
    },
  };
}

/** Order for staff: open emergencies first, then other open follow-ups, then done ones; newest first within each. */
export function deskOrder(a: FollowUp, b: FollowUp): number {
  const rank = (f: FollowUp) => (f.status === 'done' ? 2 : f.type === 'emergency' ? 0 : 1);
  return rank(a) - rank(b) || b.createdAt - a.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}
