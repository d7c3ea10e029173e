/**
 * The store contract (src/store/types.ts) as one suite, run against every implementation:
 * test/store/sqlite.test.ts and test/store/postgres.test.ts call `storeContract` with a target that
 * hands out fresh, empty databases. What is written here is the behaviour both must share.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { isVetError } from '../../src/errors.js';
import type {
  CallSummaryInput,
  DeliveryChannel,
  DeliveryInput,
  FollowUp,
  FollowUpInput,
  FollowUpStore,
} from '../../src/store/types.js';

export interface StoreDatabase {
  /** A store on this database; may be called again (also concurrently) for more connections to the same data. */
  open(): Promise<FollowUpStore>;
}

export interface StoreTarget {
  /** A new, empty database (nothing migrated yet). */
  fresh(): Promise<StoreDatabase>;
}

export const T0 = 1_750_000_000_000;
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export function followUpInput(over: Partial<FollowUpInput> = {}): FollowUpInput {
  return {
    id: randomUUID(),
    clinicId: 'riverside',
    callSid: `CA${randomUUID().replaceAll('-', '')}`,
    type: 'appointment_request',
    createdAt: T0,
    callerNumber: '+15551234567',
    callerName: 'Ana García',
    petName: 'Bella',
    petSpecies: 'dog',
    reason: 'limping since Tuesday',
    preferredTime: 'Thursday morning',
    message: null,
    recipient: null,
    urgency: 'soon',
    emergency: null,
    ...over,
  };
}

export function deliveryInput(over: Partial<DeliveryInput> = {}): DeliveryInput {
  const createdAt = over.createdAt ?? T0;
  return {
    id: randomUUID(),
    clinicId: 'riverside',
    callSid: 'CA-unset',
    channel: 'webhook',
    kind: 'appointment_request',
    subjectId: 'subject-unset',
    createdAt,
    holdUntil: null,
    expiresAt: createdAt + 24 * HOUR,
    ...over,
  };
}

export function summaryInput(over: Partial<CallSummaryInput> = {}): CallSummaryInput {
  return {
    callSid: `CA${randomUUID().replaceAll('-', '')}`,
    clinicId: 'riverside',
    startedAt: T0,
    endedAt: T0 + 3 * MINUTE,
    outcome: 'completed',
    summary: 'Caller asked for an appointment for Bella (dog, limping).',
    summarySource: 'llm',
    transcript: [
      { role: 'agent', text: 'Riverside Vet, how can I help?' },
      { role: 'caller', text: 'Hola, mi perra Bella cojea 🐕 — ¿tienen cita?' },
    ],
    callerNumber: '+15551234567',
    recordings: [
      { recordingSid: 'RE0123456789abcdef0123456789abcdef', url: 'https://api.twilio.com/rec/RE01.wav', durationSeconds: 181 },
      { recordingSid: 'RE1123456789abcdef0123456789abcdef', url: null, durationSeconds: null },
    ],
    ...over,
  };
}

/** A follow-up and the held webhook delivery a call records for it. */
function withHeldDelivery(over: Partial<FollowUpInput> = {}, holdUntil = T0 + HOUR): { f: FollowUpInput; d: DeliveryInput } {
  const f = followUpInput(over);
  const d = deliveryInput({ clinicId: f.clinicId, callSid: f.callSid, kind: f.type, subjectId: f.id, createdAt: f.createdAt, holdUntil });
  return { f, d };
}

async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<void> {
  const err: unknown = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isVetError(err) ? err.code : err).toBe(code);
}

export function storeContract(target: () => StoreTarget): void {
  const opened: FollowUpStore[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });
  const track = async (p: Promise<FollowUpStore>) => {
    const s = await p;
    opened.push(s);
    return s;
  };
  /** A store on a fresh database, and a way to open more stores on the same one. */
  async function fresh(): Promise<{ store: FollowUpStore; open: () => Promise<FollowUpStore> }> {
    const db = await target().fresh();
    const open = () => track(db.open());
    return { store: await open(), open };
  }

  describe('follow-ups', () => {
    it('round-trips every field: unicode, nulls, emergency detail', async () => {
      const { store } = await fresh();
      const full = followUpInput({
        type: 'emergency',
        urgency: 'emergency',
        callerName: 'Zoë Ñúñez 王小明',
        petName: 'Mr. "Whiskers" O\'Brien',
        reason: 'ate chocolate 🍫 — 200 g, 20 min ago\nline two',
        emergency: { trigger: 'speech', detail: 'chocolate', script: 'emergency', sentTo: 'emergencyLine', connected: null },
      });
      const sparse = followUpInput({
        type: 'message',
        urgency: 'routine',
        callerNumber: null,
        callerName: null,
        petName: null,
        petSpecies: null,
        reason: null,
        preferredTime: null,
        message: 'Please call me back about the invoice.',
        recipient: 'Dr. Patel',
        emergency: null,
      });
      await store.recordFollowUp(full, []);
      await store.recordFollowUp(sparse, []);
      const expected = (f: FollowUpInput): FollowUp => ({ ...f, status: 'new', handledBy: null, notes: [], updatedAt: f.createdAt });
      expect(await store.getFollowUp(full.id)).toEqual(expected(full));
      expect(await store.getFollowUp(sparse.id)).toEqual(expected(sparse));
      const agent = followUpInput({
        type: 'emergency',
        urgency: 'emergency',
        emergency: { trigger: 'agent', detail: 'bleeding heavily', script: 'afterHours', sentTo: null, connected: false },
      });
      await store.recordFollowUp(agent, []);
      expect((await store.getFollowUp(agent.id))?.emergency).toEqual(agent.emergency);
    });

    it('answers null / empty for unknown ids', async () => {
      const { store } = await fresh();
      expect(await store.getFollowUp(randomUUID())).toBeNull();
      expect(await store.getCallSummary('CA-none')).toBeNull();
      expect(await store.deliveriesFor(randomUUID())).toEqual([]);
      expect(await store.updateFollowUp(randomUUID(), null, { status: 'done' }, T0)).toBeNull();
    });

    it('drops U+0000 from stored text instead of failing the insert', async () => {
      const { store } = await fresh();
      const f = followUpInput({ message: 'a\u0000b', type: 'message' });
      await store.recordFollowUp(f, []);
      expect((await store.getFollowUp(f.id))?.message).toBe('ab');
    });
  });

  describe('recordFollowUp', () => {
    it('stores the deliveries: with holdUntil held (due at holdUntil), without it pending (due at createdAt)', async () => {
      const { store } = await fresh();
      const { f, d: held } = withHeldDelivery();
      const email = deliveryInput({ clinicId: f.clinicId, callSid: f.callSid, channel: 'email', kind: f.type, subjectId: f.id, createdAt: T0 + 5 });
      await store.recordFollowUp(f, [held, email]);
      const got = await store.deliveriesFor(f.id);
      expect(got).toEqual([
        { ...held, status: 'held', attempts: 0, nextAttemptAt: T0 + HOUR, lastError: null, deliveredAt: null },
        { ...email, status: 'pending', attempts: 0, nextAttemptAt: T0 + 5, lastError: null, deliveredAt: null },
      ]);
    });

    it('is one transaction: a delivery the database refuses leaves no follow-up behind', async () => {
      const { store } = await fresh();
      const { f, d } = withHeldDelivery();
      const bad = deliveryInput({ subjectId: f.id, channel: 'fax' as DeliveryChannel });
      await expect(store.recordFollowUp(f, [d, bad])).rejects.toThrow();
      expect(await store.getFollowUp(f.id)).toBeNull();
      expect(await store.deliveriesFor(f.id)).toEqual([]);
    });

    it('is idempotent per follow-up id: recording the same id again changes nothing', async () => {
      const { store } = await fresh();
      const { f, d } = withHeldDelivery();
      await store.recordFollowUp(f, [d]);
      const again = deliveryInput({ subjectId: f.id, callSid: f.callSid });
      await store.recordFollowUp({ ...f, reason: 'changed' }, [again]);
      expect((await store.getFollowUp(f.id))?.reason).toBe(f.reason);
      expect((await store.deliveriesFor(f.id)).map((x) => x.id)).toEqual([d.id]);
    });
  });

  describe('finishCall', () => {
    it('stores the summary and its deliveries, and releases only this call\'s held deliveries (pending, due now)', async () => {
      const { store } = await fresh();
      const s = summaryInput();
      const a = withHeldDelivery({ callSid: s.callSid });
      const b = withHeldDelivery({ callSid: s.callSid, type: 'refill_request' });
      const other = withHeldDelivery(); // another call, still live
      const immediate = deliveryInput({ callSid: s.callSid, subjectId: a.f.id, createdAt: T0 + 1, channel: 'sms' });
      await store.recordFollowUp(a.f, [a.d, immediate]);
      await store.recordFollowUp(b.f, [b.d]);
      await store.recordFollowUp(other.f, [other.d]);
      const sd = deliveryInput({ callSid: s.callSid, kind: 'call_summary', subjectId: s.callSid, createdAt: T0 + 3 * MINUTE, holdUntil: T0 + HOUR });
      const sdEmail = deliveryInput({ callSid: s.callSid, kind: 'call_summary', subjectId: s.callSid, createdAt: T0 + 4 * MINUTE, channel: 'email' });
      const now = T0 + 4 * MINUTE;

      await store.finishCall(s, [sd, sdEmail], now);

      expect(await store.getCallSummary(s.callSid)).toEqual(s);
      for (const held of [a.d, b.d]) {
        const [got] = (await store.deliveriesFor(held.subjectId)).filter((x) => x.id === held.id);
        expect(got).toMatchObject({ status: 'pending', nextAttemptAt: now, attempts: 0 });
      }
      expect((await store.deliveriesFor(a.f.id)).find((x) => x.id === immediate.id)).toMatchObject({ status: 'pending', nextAttemptAt: T0 + 1 });
      expect(await store.deliveriesFor(other.f.id)).toEqual([expect.objectContaining({ status: 'held', nextAttemptAt: T0 + HOUR })]);
      // The summary's own deliveries: a held one, inserted in the same transaction, is released too
      // (its call is over); one without holdUntil is due at its createdAt.
      expect(await store.deliveriesFor(s.callSid)).toEqual([
        { ...sd, status: 'pending', attempts: 0, nextAttemptAt: now, lastError: null, deliveredAt: null },
        { ...sdEmail, status: 'pending', attempts: 0, nextAttemptAt: T0 + 4 * MINUTE, lastError: null, deliveredAt: null },
      ]);
    });

    it('is idempotent per CallSid: a second finish changes nothing, its deliveries included', async () => {
      const { store } = await fresh();
      const s = summaryInput();
      const sd = deliveryInput({ callSid: s.callSid, kind: 'call_summary', subjectId: s.callSid });
      await store.finishCall(s, [sd], T0 + 4 * MINUTE);
      const late = withHeldDelivery({ callSid: s.callSid }); // recorded after the call finished
      await store.recordFollowUp(late.f, [late.d]);

      const sd2 = deliveryInput({ callSid: s.callSid, kind: 'call_summary', subjectId: s.callSid, channel: 'email' });
      await store.finishCall({ ...s, summary: 'second', transcript: [] }, [sd2], T0 + 9 * MINUTE);

      expect(await store.getCallSummary(s.callSid)).toEqual(s);
      expect((await store.deliveriesFor(s.callSid)).map((x) => x.id)).toEqual([sd.id]);
      expect(await store.deliveriesFor(late.f.id)).toEqual([expect.objectContaining({ status: 'held' })]);
    });

    it('is one transaction: a refused delivery leaves no summary and releases nothing', async () => {
      const { store } = await fresh();
      const s = summaryInput();
      const a = withHeldDelivery({ callSid: s.callSid });
      await store.recordFollowUp(a.f, [a.d]);
      const bad = deliveryInput({ callSid: s.callSid, subjectId: s.callSid, channel: 'pigeon' as DeliveryChannel });
      await expect(store.finishCall(s, [bad], T0 + MINUTE)).rejects.toThrow();
      expect(await store.getCallSummary(s.callSid)).toBeNull();
      expect(await store.deliveriesFor(a.f.id)).toEqual([expect.objectContaining({ status: 'held' })]);
    });

    it('round-trips a summary with empty transcript, no recordings and no caller number', async () => {
      const { store } = await fresh();
      const s = summaryInput({ transcript: [], recordings: [], callerNumber: null, summarySource: 'template', outcome: 'caller_hung_up' });
      await store.finishCall(s, [], T0);
      expect(await store.getCallSummary(s.callSid)).toEqual(s);
    });
  });

  describe('listFollowUps', () => {
    it('puts open emergencies first, then newest first; a done emergency sorts by time', async () => {
      const { store } = await fresh();
      const old = followUpInput({ createdAt: T0 });
      const newer = followUpInput({ createdAt: T0 + 3 * MINUTE });
      const emOld = followUpInput({ type: 'emergency', urgency: 'emergency', createdAt: T0 + MINUTE });
      const emNew = followUpInput({ type: 'emergency', urgency: 'emergency', createdAt: T0 + 2 * MINUTE });
      const emDone = followUpInput({ type: 'emergency', urgency: 'emergency', createdAt: T0 + 4 * MINUTE - 1 });
      for (const f of [old, newer, emOld, emNew, emDone]) await store.recordFollowUp(f, []);
      await store.updateFollowUp(emDone.id, null, { status: 'done' }, T0 + 5 * MINUTE);
      const inProgress = await store.updateFollowUp(emOld.id, null, { status: 'in_progress' }, T0 + 5 * MINUTE);
      expect(inProgress?.status).toBe('in_progress');
      const ids = (await store.listFollowUps({ clinicId: 'riverside' })).map((f) => f.id);
      expect(ids).toEqual([emNew.id, emOld.id, emDone.id, newer.id, old.id]);
    });

    it('filters by clinic (null: every clinic), status, type and [from, to)', async () => {
      const { store } = await fresh();
      const a1 = followUpInput({ clinicId: 'a', createdAt: T0 });
      const a2 = followUpInput({ clinicId: 'a', createdAt: T0 + MINUTE, type: 'refill_request' });
      const a3 = followUpInput({ clinicId: 'a', createdAt: T0 + 2 * MINUTE, type: 'message' });
      const b1 = followUpInput({ clinicId: 'b', createdAt: T0 + 30_000 });
      for (const f of [a1, a2, a3, b1]) await store.recordFollowUp(f, []);
      await store.updateFollowUp(a3.id, 'a', { status: 'done' }, T0 + 3 * MINUTE);
      const ids = async (q: Parameters<FollowUpStore['listFollowUps']>[0]) => (await store.listFollowUps(q)).map((f) => f.id);

      expect(await ids({ clinicId: 'a' })).toEqual([a3.id, a2.id, a1.id]);
      expect(await ids({ clinicId: 'b' })).toEqual([b1.id]);
      expect(await ids({ clinicId: 'nobody' })).toEqual([]);
      expect(await ids({ clinicId: null })).toEqual([a3.id, a2.id, b1.id, a1.id]);
      expect(await ids({ clinicId: 'a', status: 'new' })).toEqual([a2.id, a1.id]);
      expect(await ids({ clinicId: 'a', status: 'done' })).toEqual([a3.id]);
      expect(await ids({ clinicId: null, type: 'appointment_request' })).toEqual([b1.id, a1.id]);
      expect(await ids({ clinicId: 'a', from: T0 + MINUTE })).toEqual([a3.id, a2.id]); // from is inclusive
      expect(await ids({ clinicId: 'a', to: T0 + MINUTE })).toEqual([a1.id]); // to is exclusive
      expect(await ids({ clinicId: null, from: T0 + 1, to: T0 + 2 * MINUTE })).toEqual([a2.id, b1.id]);
    });

    it('returns notes with each follow-up', async () => {
      const { store } = await fresh();
      const f = followUpInput();
      const g = followUpInput({ createdAt: T0 + 1 });
      await store.recordFollowUp(f, []);
      await store.recordFollowUp(g, []);
      await store.updateFollowUp(f.id, null, { note: 'first' }, T0 + 10);
      await store.updateFollowUp(g.id, null, { note: 'other' }, T0 + 15);
      await store.updateFollowUp(f.id, null, { note: 'second', handledBy: 'Sam' }, T0 + 20);
      const list = await store.listFollowUps({ clinicId: null });
      expect(list.map((x) => [x.id, x.notes])).toEqual([
        [g.id, [{ at: T0 + 15, by: 'staff', text: 'other' }]],
        [
          f.id,
          [
            { at: T0 + 10, by: 'staff', text: 'first' },
            { at: T0 + 20, by: 'Sam', text: 'second' },
          ],
        ],
      ]);
      expect(list[1]).toEqual(await store.getFollowUp(f.id));
    });

    it('limits: default 100, at most 500', async () => {
      const { store } = await fresh();
      for (let i = 0; i < 501; i++) await store.recordFollowUp(followUpInput({ createdAt: T0 + i }), []);
      expect(await store.listFollowUps({ clinicId: 'riverside' })).toHaveLength(100);
      expect(await store.listFollowUps({ clinicId: 'riverside', limit: 3 })).toHaveLength(3);
      const capped = await store.listFollowUps({ clinicId: 'riverside', limit: 10_000 });
      expect(capped).toHaveLength(500);
      expect(capped[0]?.createdAt).toBe(T0 + 500);
      expect(capped[499]?.createdAt).toBe(T0 + 1);
    }, 60_000);
  });

  describe('updateFollowUp', () => {
    it('changes status, sets handledBy with a status change, appends notes, stamps updatedAt', async () => {
      const { store } = await fresh();
      const f = followUpInput();
      await store.recordFollowUp(f, []);

      const a = await store.updateFollowUp(f.id, 'riverside', { status: 'in_progress', handledBy: 'Sam' }, T0 + 10);
      expect(a).toEqual({ ...f, status: 'in_progress', handledBy: 'Sam', notes: [], updatedAt: T0 + 10 });

      // handledBy without a status change only attributes the note
      const b = await store.updateFollowUp(f.id, 'riverside', { handledBy: 'Kim', note: 'left a voicemail' }, T0 + 20);
      expect(b).toMatchObject({ status: 'in_progress', handledBy: 'Sam', updatedAt: T0 + 20, notes: [{ at: T0 + 20, by: 'Kim', text: 'left a voicemail' }] });

      // a status change without handledBy keeps the last one; a note without handledBy is by "staff"
      const c = await store.updateFollowUp(f.id, null, { status: 'done', note: 'booked Thu 9:00 ✅' }, T0 + 30);
      expect(c).toMatchObject({ status: 'done', handledBy: 'Sam', updatedAt: T0 + 30 });
      expect(c?.notes).toEqual([
        { at: T0 + 20, by: 'Kim', text: 'left a voicemail' },
        { at: T0 + 30, by: 'staff', text: 'booked Thu 9:00 ✅' },
      ]);
      expect(await store.getFollowUp(f.id)).toEqual(c);

      // an empty change still stamps updatedAt; a blank note is not appended
      const d = await store.updateFollowUp(f.id, null, { note: '   ' }, T0 + 40);
      expect(d).toEqual({ ...c, updatedAt: T0 + 40 });
    });

    it('answers null for another clinic and changes nothing', async () => {
      const { store } = await fresh();
      const f = followUpInput({ clinicId: 'a' });
      await store.recordFollowUp(f, []);
      expect(await store.updateFollowUp(f.id, 'b', { status: 'done', note: 'x' }, T0 + 10)).toBeNull();
      expect(await store.getFollowUp(f.id)).toMatchObject({ status: 'new', notes: [], updatedAt: T0 });
    });

    it('refuses a note over 2000 characters (VET_E_BAD_REQUEST) and changes nothing; 2000 emoji are fine', async () => {
      const { store } = await fresh();
      const f = followUpInput();
      await store.recordFollowUp(f, []);
      await rejectsWithCode(store.updateFollowUp(f.id, null, { status: 'done', note: 'x'.repeat(2001) }, T0 + 10), 'VET_E_BAD_REQUEST');
      expect(await store.getFollowUp(f.id)).toMatchObject({ status: 'new', notes: [] });
      const emoji = '🐾'.repeat(2000); // 4000 UTF-16 units, 2000 characters
      const ok = await store.updateFollowUp(f.id, null, { note: emoji }, T0 + 20);
      expect(ok?.notes).toEqual([{ at: T0 + 20, by: 'staff', text: emoji }]);
    });
  });

  describe('delivery outbox', () => {
    it('claims due pending rows and past-hold held rows, oldest first, leased; attempts untouched', async () => {
      const { store } = await fresh();
      const now = T0 + HOUR;
      const dueOld = deliveryInput({ createdAt: now - 3 * MINUTE });
      const dueNow = deliveryInput({ createdAt: now });
      const future = deliveryInput({ createdAt: now + 1 });
      const heldPast = deliveryInput({ createdAt: T0, holdUntil: now - 2 * MINUTE });
      const heldFuture = deliveryInput({ createdAt: T0, holdUntil: now + MINUTE });
      await store.recordFollowUp(followUpInput(), [future, dueNow, heldFuture, heldPast, dueOld]);

      const claimed = await store.claimDueDeliveries(now, 10, 30_000);
      expect(claimed.map((d) => d.id)).toEqual([dueOld.id, heldPast.id, dueNow.id]);
      for (const d of claimed) expect(d).toMatchObject({ status: 'pending', nextAttemptAt: now + 30_000, attempts: 0, lastError: null, deliveredAt: null });
      expect(claimed[1]).toEqual({ ...heldPast, status: 'pending', attempts: 0, nextAttemptAt: now + 30_000, lastError: null, deliveredAt: null });

      // Leased: not due again until the lease runs out.
      expect(await store.claimDueDeliveries(now, 10, 30_000)).toEqual([]);
      expect((await store.claimDueDeliveries(now + 29_999, 10, 30_000)).map((d) => d.id)).toEqual([future.id]);
      // Expired leases are due again: equal nextAttemptAt, so the oldest createdAt goes first.
      const again = await store.claimDueDeliveries(now + 30_000, 10, 30_000);
      expect(again.map((d) => d.id)).toEqual([heldPast.id, dueOld.id, dueNow.id]);
      expect(again.every((d) => d.attempts === 0 && d.nextAttemptAt === now + 60_000)).toBe(true);
    });

    it('respects the limit and takes the oldest', async () => {
      const { store } = await fresh();
      const rows = Array.from({ length: 5 }, (_, i) => deliveryInput({ createdAt: T0 + (4 - i) * 1000 }));
      await store.recordFollowUp(followUpInput(), rows);
      const first = await store.claimDueDeliveries(T0 + MINUTE, 2, 10_000);
      expect(first.map((d) => d.createdAt)).toEqual([T0, T0 + 1000]);
      const rest = await store.claimDueDeliveries(T0 + MINUTE, 10, 10_000);
      expect(rest.map((d) => d.createdAt)).toEqual([T0 + 2000, T0 + 3000, T0 + 4000]);
      expect(await store.claimDueDeliveries(T0 + MINUTE, 0, 10_000)).toEqual([]);
    });

    it('markDelivered counts the attempt and is final', async () => {
      const { store } = await fresh();
      const d = deliveryInput({ subjectId: 's1' });
      await store.recordFollowUp(followUpInput(), [d]);
      await store.claimDueDeliveries(T0, 1, 1000);
      await store.markDelivered(d.id, T0 + 200);
      expect(await store.deliveriesFor('s1')).toEqual([{ ...d, status: 'delivered', attempts: 1, nextAttemptAt: T0 + 1000, lastError: null, deliveredAt: T0 + 200 }]);
      expect(await store.claimDueDeliveries(T0 + HOUR, 10, 1000)).toEqual([]);
      // A late failure report (another worker's expired lease) does not undo a delivery.
      await store.markAttemptFailed(d.id, 'late', T0 + HOUR, T0 + 300);
      await store.markDelivered(d.id, T0 + 400);
      expect(await store.deliveriesFor('s1')).toEqual([expect.objectContaining({ status: 'delivered', attempts: 1, deliveredAt: T0 + 200, lastError: null })]);
    });

    it('markAttemptFailed: retry at retryAt (pending), or give up (failed); error cut to 500 characters', async () => {
      const { store } = await fresh();
      const d = deliveryInput({ subjectId: 's2' });
      await store.recordFollowUp(followUpInput(), [d]);
      await store.claimDueDeliveries(T0, 1, 1000);
      await store.markAttemptFailed(d.id, 'HTTP 503', T0 + 5000, T0 + 100);
      expect(await store.deliveriesFor('s2')).toEqual([{ ...d, status: 'pending', attempts: 1, nextAttemptAt: T0 + 5000, lastError: 'HTTP 503', deliveredAt: null }]);
      expect(await store.claimDueDeliveries(T0 + 4999, 10, 1000)).toEqual([]);
      expect(await store.claimDueDeliveries(T0 + 5000, 10, 1000)).toEqual([expect.objectContaining({ id: d.id, attempts: 1 })]);

      const long = 'é'.repeat(499) + '🙂' + 'tail';
      await store.markAttemptFailed(d.id, long, null, T0 + 6000);
      const [failed] = await store.deliveriesFor('s2');
      expect(failed).toMatchObject({ status: 'failed', attempts: 2 });
      expect(failed?.lastError).toBe('é'.repeat(499) + '🙂');
      expect(await store.claimDueDeliveries(T0 + 10 * HOUR, 10, 1000)).toEqual([]);
      // final: a later success report does not resurrect it
      await store.markDelivered(d.id, T0 + 7000);
      expect(await store.deliveriesFor('s2')).toEqual([expect.objectContaining({ status: 'failed', attempts: 2, deliveredAt: null })]);
    });

    it('releaseHeld makes every held delivery due now and says how many', async () => {
      const { store } = await fresh();
      const a = withHeldDelivery();
      const b = withHeldDelivery({}, T0 + 2 * HOUR);
      const p = deliveryInput({ subjectId: a.f.id });
      await store.recordFollowUp(a.f, [a.d, p]);
      await store.recordFollowUp(b.f, [b.d]);
      expect(await store.releaseHeld(T0 + MINUTE)).toBe(2);
      expect(await store.releaseHeld(T0 + MINUTE)).toBe(0);
      expect(await store.deliveriesFor(b.f.id)).toEqual([expect.objectContaining({ status: 'pending', nextAttemptAt: T0 + MINUTE })]);
      expect((await store.claimDueDeliveries(T0 + MINUTE, 10, 1000)).map((d) => d.id).sort()).toEqual([a.d.id, b.d.id, p.id].sort());
    });

    it('two stores on one database claiming at once never get the same row', async () => {
      const { store, open } = await fresh();
      const other = await open();
      const n = 120;
      const rows = Array.from({ length: n }, (_, i) => deliveryInput({ createdAt: T0 + (i % 7) }));
      for (let i = 0; i < n; i += 20) await store.recordFollowUp(followUpInput(), rows.slice(i, i + 20));
      const seen: string[] = [];
      const worker = async (s: FollowUpStore) => {
        // bounded: a broken lease would hand out the same rows forever
        for (let round = 0; round < n; round++) {
          const got = await s.claimDueDeliveries(T0 + MINUTE, 7, HOUR);
          if (got.length === 0) return;
          seen.push(...got.map((d) => d.id));
        }
      };
      await Promise.all([worker(store), worker(other), worker(store), worker(other)]);
      expect(seen).toHaveLength(n);
      expect(new Set(seen).size).toBe(n);
    });
  });

  describe('prune', () => {
    it("deletes one clinic's follow-ups (with notes), summaries and finished deliveries created before the cut; keeps pending and held", async () => {
      const { store } = await fresh();
      const cut = T0 + HOUR;
      const oldF = followUpInput({ clinicId: 'a', createdAt: cut - 1 });
      const atCut = followUpInput({ clinicId: 'a', createdAt: cut });
      const otherClinic = followUpInput({ clinicId: 'b', createdAt: T0 });
      const delivered = deliveryInput({ clinicId: 'a', subjectId: oldF.id, createdAt: T0 });
      const failed = deliveryInput({ clinicId: 'a', subjectId: oldF.id, createdAt: T0 + 1 });
      const pending = deliveryInput({ clinicId: 'a', subjectId: oldF.id, createdAt: T0 + 2, holdUntil: null });
      const held = deliveryInput({ clinicId: 'a', subjectId: oldF.id, createdAt: T0 + 3, holdUntil: cut * 2 });
      const newDelivered = deliveryInput({ clinicId: 'a', subjectId: atCut.id, createdAt: cut });
      const bDelivered = deliveryInput({ clinicId: 'b', subjectId: otherClinic.id, createdAt: T0 });
      await store.recordFollowUp(oldF, [delivered, failed, pending, held]);
      await store.recordFollowUp(atCut, [newDelivered]);
      await store.recordFollowUp(otherClinic, [bDelivered]);
      await store.updateFollowUp(oldF.id, null, { note: 'called back' }, T0 + 5);
      const oldS = summaryInput({ clinicId: 'a', endedAt: cut - 1 });
      const newS = summaryInput({ clinicId: 'a', endedAt: cut });
      const bS = summaryInput({ clinicId: 'b', endedAt: T0 });
      for (const s of [oldS, newS, bS]) await store.finishCall(s, [], T0);
      const claimed = await store.claimDueDeliveries(cut, 10, 1000);
      expect(claimed.map((d) => d.id).sort()).toEqual([delivered.id, failed.id, pending.id, newDelivered.id, bDelivered.id].sort());
      for (const d of [delivered, newDelivered, bDelivered]) await store.markDelivered(d.id, cut);
      await store.markAttemptFailed(failed.id, 'HTTP 410', null, cut);

      // 1 follow-up + 1 summary + 2 finished deliveries (notes go with their follow-up, uncounted)
      expect(await store.prune('a', cut)).toBe(4);

      expect(await store.getFollowUp(oldF.id)).toBeNull();
      expect(await store.getFollowUp(atCut.id)).not.toBeNull();
      expect(await store.getFollowUp(otherClinic.id)).not.toBeNull();
      expect(await store.getCallSummary(oldS.callSid)).toBeNull();
      expect(await store.getCallSummary(newS.callSid)).toEqual(newS);
      expect(await store.getCallSummary(bS.callSid)).toEqual(bS);
      expect((await store.deliveriesFor(oldF.id)).map((d) => d.id)).toEqual([pending.id, held.id]);
      expect(await store.deliveriesFor(atCut.id)).toHaveLength(1);
      expect(await store.deliveriesFor(otherClinic.id)).toHaveLength(1);
      expect(await store.prune('a', cut)).toBe(0);
      // A new follow-up with the pruned id starts without the old notes.
      await store.recordFollowUp(oldF, []);
      expect((await store.getFollowUp(oldF.id))?.notes).toEqual([]);
    });
  });

  describe('lifecycle', () => {
    it('keeps everything across close and reopen (migrations run once)', async () => {
      const { store, open } = await fresh();
      const { f, d } = withHeldDelivery();
      await store.recordFollowUp(f, [d]);
      await store.updateFollowUp(f.id, null, { status: 'in_progress', handledBy: 'Sam', note: 'n' }, T0 + 1);
      const s = summaryInput({ callSid: f.callSid });
      await store.finishCall(s, [], T0 + 2);
      const before = { f: await store.getFollowUp(f.id), d: await store.deliveriesFor(f.id) };
      await store.close();
      await store.close(); // idempotent

      const again = await open();
      expect(await again.getFollowUp(f.id)).toEqual(before.f);
      expect(await again.deliveriesFor(f.id)).toEqual(before.d);
      expect(await again.getCallSummary(s.callSid)).toEqual(s);
    });

    it('several stores opening one new database at once all migrate it safely', async () => {
      const db = await target().fresh();
      const stores = await Promise.all([db.open(), db.open(), db.open()]);
      opened.push(...stores);
      const f = followUpInput();
      await stores[0]?.recordFollowUp(f, []);
      for (const s of stores) expect((await s.getFollowUp(f.id))?.id).toBe(f.id);
    });

    it('names its kind', async () => {
      const { store } = await fresh();
      expect(['sqlite', 'postgres']).toContain(store.kind);
    });
  });
}
