/**
 * The delivery outbox worker (docs/delivery.md): at-least-once delivery of what calls left for the
 * clinic, from the durable store's `deliveries` table to the clinic's webhook, e-mail and SMS.
 *
 * One round: claim due deliveries with a lease (another worker or instance skips them meanwhile),
 * send each with at most `concurrency` in flight, then record the outcome: delivered; failed for
 * good (permanent error, channel no longer configured, or no retry left before `expiresAt`); or
 * failed with the next attempt scheduled (schedule.ts). The payload is built from the store at
 * each attempt, so a retry sends the same ids and, once written, the call summary.
 *
 * Rounds run at start(), every `pollMs`, and on kick() (end of a call); concurrent kicks coalesce
 * into the running round plus at most one more. A crash between send and record leaves the lease
 * to expire: the delivery is sent again (receivers drop it by `Idempotency-Key`).
 */
import type { Logger } from 'pino';
import type { Delivery, DeliveryChannel, DeliveryKind, FollowUpStore } from '../store/types.js';
import { callSummaryPayload, followUpPayload, type DeliveryPayload } from './payload.js';
import { nextRetryAt } from './schedule.js';
import { smsBody } from './sms.js';
import { createWebhookSender } from './webhook.js';
import { safeErrorText, type ClinicDelivery, type EmailSender, type SendResult, type SmsSender, type WebhookSender } from './types.js';

export const OUTBOX_POLL_MS = 5_000;
export const OUTBOX_LEASE_MS = 60_000;
export const OUTBOX_CONCURRENCY = 8;
/** Deliveries one round handles at most; the next poll goes on with the rest. */
const MAX_PER_ROUND = 1_000;
export const DELIVERY_CHANNELS: readonly DeliveryChannel[] = ['webhook', 'email', 'sms'];

export type DeliveryResultKind = 'delivered' | 'retried' | 'failed';

/** One attempt's outcome, for metrics (no payload, no address). */
export interface DeliveryAttemptResult {
  deliveryId: string;
  clinicId: string;
  channel: DeliveryChannel;
  kind: DeliveryKind;
  /** 1 for the first attempt. */
  attempt: number;
  result: DeliveryResultKind;
}

export type DeliveryCounts = Record<DeliveryResultKind, number>;

/** Totals since the outbox was created: `retried` counts failed attempts that will be tried again. */
export interface DeliveryStats extends DeliveryCounts {
  byChannel: Record<DeliveryChannel, DeliveryCounts>;
}

export interface OutboxSenders {
  /** Default: createWebhookSender({ version }). */
  webhook?: WebhookSender;
  /** Null or absent: no SMTP_URL, e-mail deliveries fail with that reason. */
  email?: EmailSender | null;
  /** Null or absent: no Twilio credentials, SMS deliveries fail with that reason. */
  sms?: SmsSender | null;
}

export interface OutboxOptions {
  store: FollowUpStore;
  /** The clinic's delivery settings now (clinic files can change between attempts), or null when it is gone. */
  clinic: (clinicId: string) => ClinicDelivery | null;
  logger: Logger;
  /** Epoch ms; injectable for tests. Default Date.now. */
  now?: () => number;
  /** Jitter source in [0, 1). Default Math.random. */
  random?: () => number;
  senders?: OutboxSenders;
  /** For the default webhook sender's User-Agent. Default 'dev'. */
  version?: string;
  /** Default 5000. */
  pollMs?: number;
  /** Default 60 000: longer than any sender's own timeout. */
  leaseMs?: number;
  /** Sends in flight at most. Default 8. */
  concurrency?: number;
  /** Called after each attempt is recorded (metrics). */
  onResult?: (result: DeliveryAttemptResult) => void;
}

export interface Outbox {
  /** First round now, then one every `pollMs`. Does not release held deliveries (store.releaseHeld is the integrator's). */
  start(): void;
  /** A round now (e.g. a call just ended). Resolves when it, or the running round plus one more, is done. */
  kick(): Promise<void>;
  /**
   * Stop claiming, and resolve once the sends in flight are recorded. After `graceMs` (default
   * 10 000) they are aborted and left unrecorded: their lease expires and they are sent again.
   */
  stop(opts?: { graceMs?: number }): Promise<void>;
  stats(): DeliveryStats;
}

/** A failure decided before any send: permanent, with a reason the desk can show. */
const refuse = (error: string): SendResult => ({ ok: false, permanent: true, error });

const zero = (): DeliveryCounts => ({ delivered: 0, retried: 0, failed: 0 });

export function createOutbox(opts: OutboxOptions): Outbox {
  const { store, logger } = opts;
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  const pollMs = opts.pollMs ?? OUTBOX_POLL_MS;
  const leaseMs = opts.leaseMs ?? OUTBOX_LEASE_MS;
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? OUTBOX_CONCURRENCY));
  const webhook = opts.senders?.webhook ?? createWebhookSender({ version: opts.version ?? 'dev' });
  const email = opts.senders?.email ?? null;
  const sms = opts.senders?.sms ?? null;

  const totals: DeliveryStats = { ...zero(), byChannel: { webhook: zero(), email: zero(), sms: zero() } };
  const abort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  let stopping = false;

  async function payloadOf(d: Delivery): Promise<DeliveryPayload | string> {
    if (d.kind === 'call_summary') {
      const summary = await store.getCallSummary(d.subjectId);
      return summary ? callSummaryPayload(summary) : 'call summary not found (deleted by retention?)';
    }
    const followUp = await store.getFollowUp(d.subjectId);
    if (!followUp) return 'follow-up not found (deleted by retention?)';
    return followUpPayload(followUp, await store.getCallSummary(d.callSid));
  }

  async function send(d: Delivery): Promise<SendResult> {
    const clinic = opts.clinic(d.clinicId);
    if (!clinic) return refuse(`clinic ${d.clinicId} is no longer configured`);
    const payload = await payloadOf(d);
    if (typeof payload === 'string') return refuse(payload);
    const signal = abort.signal;
    switch (d.channel) {
      case 'webhook':
        if (!clinic.webhook) return refuse('the clinic no longer has a webhook configured');
        return webhook.send(clinic.webhook, payload, signal);
      case 'email':
        if (!clinic.email) return refuse('the clinic no longer has e-mail configured');
        if (!email) return refuse('e-mail delivery needs SMTP_URL, which is not set');
        return email.send({ to: clinic.email.to, from: clinic.email.from, clinicName: clinic.name, payload }, signal);
      case 'sms': {
        if (!clinic.sms) return refuse('the clinic no longer has SMS configured');
        if (!sms) return refuse('SMS delivery needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN, which are not set');
        if (!payload.caller.number) return refuse('no caller number to send the confirmation to');
        const body = smsBody(payload, clinic.name);
        if (body === null) return refuse(`a ${d.kind} is not sent by SMS`);
        return sms.send({ to: payload.caller.number, from: clinic.sms.from, body }, signal);
      }
    }
  }

  function count(d: Delivery, attempt: number, result: DeliveryResultKind): void {
    totals[result] += 1;
    totals.byChannel[d.channel][result] += 1;
    try {
      opts.onResult?.({ deliveryId: d.id, clinicId: d.clinicId, channel: d.channel, kind: d.kind, attempt, result });
    } catch (err) {
      logger.warn({ err }, 'delivery onResult listener threw');
    }
  }

  async function attempt(d: Delivery): Promise<void> {
    const n = d.attempts + 1;
    const ids = { deliveryId: d.id, clinicId: d.clinicId, channel: d.channel, kind: d.kind, attempt: n };
    let result: SendResult;
    try {
      result = await send(d);
    } catch (err) {
      // A store read or a sender broke its contract: not the receiver's fault, try again later.
      logger.warn({ ...ids, err }, 'delivery attempt threw');
      result = { ok: false, permanent: false, error: 'internal error (see the engine log)' };
    }
    if (abort.signal.aborted && !result.ok) {
      logger.info({ ...ids, status: 'interrupted' }, 'delivery attempt interrupted by stop; sent again after its lease');
      return;
    }
    const t = now();
    try {
      if (result.ok) {
        await store.markDelivered(d.id, t);
        count(d, n, 'delivered');
        if (result.note === undefined) logger.info({ ...ids, status: 'delivered' }, 'delivery delivered');
        else logger.warn({ ...ids, status: 'delivered', note: safeErrorText(result.note) }, 'delivery delivered with a warning');
        return;
      }
      const error = safeErrorText(result.error);
      const retryAt = result.permanent ? null : nextRetryAt(n, t, d.expiresAt, random);
      await store.markAttemptFailed(d.id, error, retryAt, t);
      if (retryAt === null) {
        count(d, n, 'failed');
        const why = result.permanent ? 'permanent' : 'expired';
        logger.error({ ...ids, status: 'failed', why, error, code: 'VET_E_DELIVERY' }, 'delivery failed');
      } else {
        count(d, n, 'retried');
        logger.warn({ ...ids, status: 'retry', retryInMs: retryAt - t, error, code: 'VET_E_DELIVERY' }, 'delivery attempt failed');
      }
    } catch (err) {
      // Not recorded: the lease runs out and the delivery is attempted again.
      logger.error({ ...ids, err, code: 'VET_E_DELIVERY' }, 'delivery outcome could not be recorded');
    }
  }

  /** Claim and send until nothing is due, keeping at most `concurrency` sends in flight. */
  async function round(): Promise<void> {
    let handled = 0;
    while (!stopping && handled < MAX_PER_ROUND) {
      const free = concurrency - inFlight.size;
      if (free <= 0) {
        await Promise.race(inFlight);
        continue;
      }
      let batch: Delivery[];
      try {
        batch = await store.claimDueDeliveries(now(), Math.min(free, MAX_PER_ROUND - handled), leaseMs);
      } catch (err) {
        logger.error({ err, code: 'VET_E_DELIVERY' }, 'delivery claim failed');
        break;
      }
      if (batch.length === 0) break;
      handled += batch.length;
      for (const d of batch) {
        const p: Promise<void> = attempt(d).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
    }
    await Promise.all(inFlight);
  }

  function kick(): Promise<void> {
    if (stopping) return Promise.resolve();
    if (running) {
      again = true;
      return running;
    }
    const loop = async () => {
      try {
        do {
          again = false;
          await round();
        } while (again && !stopping);
      } finally {
        // In the same microtask as the last `again` check: a kick in between cannot be lost.
        running = null;
      }
    };
    running = loop();
    return running;
  }

  return {
    start() {
      if (timer || stopping) return;
      timer = setInterval(() => void kick(), pollMs);
      timer.unref();
      void kick();
    },
    kick,
    async stop({ graceMs = 10_000 } = {}) {
      stopping = true;
      if (timer) clearInterval(timer);
      timer = null;
      const settled = Promise.all([running, ...inFlight]).then(() => undefined);
      let grace: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        grace = setTimeout(() => resolve('late'), graceMs);
      });
      const outcome = await Promise.race([settled.then(() => 'done' as const), late]);
      clearTimeout(grace);
      if (outcome === 'late') {
        abort.abort(new Error('outbox stopped'));
        await settled;
      }
    },
    stats() {
      return {
        ...totals,
        byChannel: { webhook: { ...totals.byChannel.webhook }, email: { ...totals.byChannel.email }, sms: { ...totals.byChannel.sms } },
      };
    },
  };
}
