/**
 * The outbox end to end through its public seams: the real SQLite store (memory or a temp file),
 * the real webhook sender (fetch) and a real HTTP receiver on loopback that checks signatures the
 * way docs/delivery.md tells receivers to. Time is a hand-driven clock: retries are reached by
 * moving it and kicking, never by waiting.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createOutbox, type Outbox, type OutboxOptions } from '../../src/delivery/outbox.js';
import type { ClinicDelivery } from '../../src/delivery/types.js';
import { createWebhookSender } from '../../src/delivery/webhook.js';
import { openStore } from '../../src/store/index.js';
import type { Delivery, FollowUpStore } from '../../src/store/types.js';
import {
  CALLER,
  DAY,
  HOUR,
  MINUTE,
  SECOND,
  SECRET,
  T0,
  capturedLogger,
  delivery,
  finishedCall,
  manualClock,
  startReceiver,
  summaryOf,
  followUp as followUpRow,
  type Receiver,
} from './kit.js';

const DUE = T0 + 30 * SECOND; // the call ended: its deliveries are due
const FIELDS = ['id', 'type', 'clinicId', 'callSid', 'createdAt', 'caller', 'pet', 'reason', 'preferredTime', 'message', 'urgency', 'summary', 'recipient', 'emergency', 'outcome', 'transcript'];

let store: FollowUpStore;
let rx: Receiver;
let clock: ReturnType<typeof manualClock>;
let log: ReturnType<typeof capturedLogger>;
let clinic: ClinicDelivery;
const outboxes: Outbox[] = [];

function outbox(over: Partial<OutboxOptions> = {}): Outbox {
  const o = createOutbox({
    store,
    clinic: (id) => (id === 'riverside' ? clinic : null),
    logger: log.logger,
    now: clock.now,
    random: () => 0.5, // jitter 0: the schedule's own numbers
    senders: { webhook: createWebhookSender({ version: '9.9.9', timeoutMs: 300 }) },
    ...over,
  });
  outboxes.push(o);
  return o;
}

const rowOf = async (subjectId: string): Promise<Delivery> => {
  const [row] = await store.deliveriesFor(subjectId);
  if (!row) throw new Error('no delivery row');
  return row;
};

beforeEach(async () => {
  store = await openStore('sqlite::memory:');
  rx = await startReceiver();
  clock = manualClock(DUE);
  log = capturedLogger();
  clinic = { name: 'Riverside Vet', webhook: { url: rx.url, secret: SECRET }, email: null, sms: null };
});

afterEach(async () => {
  for (const o of outboxes.splice(0)) await o.stop({ graceMs: 0 });
  await rx.close();
  await store.close();
});

describe('webhook delivery', () => {
  it('delivers on the first try: signed, idempotent, exactly the documented fields', async () => {
    const { followUp, deliveries } = await finishedCall(store);
    const o = outbox();
    await o.kick();

    expect(rx.received).toHaveLength(1);
    const [req] = rx.received;
    expect(req!.verified).toBe(true);
    expect(req!.idempotencyKey).toBe(followUp.id);
    expect(req!.headers['content-type']).toBe('application/json');
    expect(req!.headers['user-agent']).toBe('Vetline/9.9.9');
    expect(Object.keys(req!.body).sort()).toEqual([...FIELDS].sort());
    expect(req!.body).toEqual({
      id: followUp.id,
      type: 'appointment_request',
      clinicId: 'riverside',
      callSid: followUp.callSid,
      createdAt: '2026-03-14T15:09:26.535Z',
      caller: { number: CALLER, name: 'Ana García' },
      pet: { name: 'Bella', species: 'dog' },
      reason: 'limping since Tuesday',
      preferredTime: 'Thursday morning',
      message: null,
      urgency: 'soon',
      summary: summaryOf(followUp).summary,
      recipient: null,
      emergency: null,
      outcome: null,
      transcript: null,
    });

    const row = await rowOf(followUp.id);
    expect(row).toMatchObject({ id: deliveries[0]!.id, status: 'delivered', attempts: 1, deliveredAt: DUE, lastError: null });
    expect(o.stats()).toMatchObject({ delivered: 1, retried: 0, failed: 0, byChannel: { webhook: { delivered: 1, retried: 0, failed: 0 } } });

    await o.kick(); // nothing due any more
    expect(rx.received).toHaveLength(1);
  });

  it('retries a receiver that is down on the 5 s, 30 s, 2 min schedule, then delivers once it is up', async () => {
    const { followUp } = await finishedCall(store);
    const o = outbox();
    await rx.down();

    const attemptsAt: number[] = [];
    for (const wait of [5 * SECOND, 30 * SECOND, 2 * MINUTE]) {
      attemptsAt.push(clock.now());
      await o.kick();
      const row = await rowOf(followUp.id);
      expect(row.status).toBe('pending');
      expect(row.lastError).toBe('network ECONNREFUSED');
      expect(row.nextAttemptAt - clock.now()).toBe(wait);
      // Not due yet: a kick a moment early sends nothing.
      clock.set(row.nextAttemptAt - 1);
      await o.kick();
      expect((await rowOf(followUp.id)).attempts).toBe(attemptsAt.length);
      clock.set(row.nextAttemptAt);
    }

    await rx.up();
    await o.kick();
    expect(rx.received).toHaveLength(1);
    expect(rx.received[0]!.verified).toBe(true);
    const row = await rowOf(followUp.id);
    expect(row).toMatchObject({ status: 'delivered', attempts: 4, deliveredAt: DUE + 5 * SECOND + 30 * SECOND + 2 * MINUTE });
    expect(o.stats()).toMatchObject({ delivered: 1, retried: 3, failed: 0 });
  });

  it('gives up at once on a 400: failed with the status and the start of the body, never tried again', async () => {
    const { followUp } = await finishedCall(store);
    rx.script({ status: 400, body: `unknown field "pet"${' padding'.repeat(60)}` });
    const o = outbox();
    await o.kick();
    const row = await rowOf(followUp.id);
    expect(row.status).toBe('failed');
    expect(row.attempts).toBe(1);
    expect(row.lastError).toMatch(/^HTTP 400: unknown field "pet" padding/);
    expect(row.lastError!.length).toBeLessThanOrEqual(200);

    clock.advance(2 * HOUR);
    await o.kick();
    expect(rx.received).toHaveLength(1);
    expect(o.stats()).toMatchObject({ delivered: 0, retried: 0, failed: 1 });
  });

  it.each([401, 403, 404, 410, 422])('treats %i as permanent', async (status) => {
    const { followUp } = await finishedCall(store);
    rx.script({ status });
    await outbox().kick();
    expect(await rowOf(followUp.id)).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringMatching(new RegExp(`^HTTP ${status}`)) as unknown });
  });

  it('retries 429, 503 and 408 with the same id and body, and a fresh signature each time', async () => {
    const { followUp } = await finishedCall(store);
    rx.script({ status: 429, body: 'slow down' }, { status: 503 }, { status: 408 });
    const o = outbox();
    for (const expected of ['HTTP 429: slow down', 'HTTP 503: ok', 'HTTP 408: ok']) {
      await o.kick();
      const row = await rowOf(followUp.id);
      expect(row).toMatchObject({ status: 'pending', lastError: expected });
      clock.set(row.nextAttemptAt);
    }
    await o.kick();
    expect(await rowOf(followUp.id)).toMatchObject({ status: 'delivered', attempts: 4 });

    expect(rx.received).toHaveLength(4);
    expect(new Set(rx.received.map((r) => r.idempotencyKey))).toEqual(new Set([followUp.id]));
    expect(new Set(rx.received.map((r) => r.rawBody.toString('utf8'))).size).toBe(1);
    expect(rx.received.every((r) => r.verified)).toBe(true);
  });

  it('does not follow a redirect: a 3xx is a permanent failure and the Location is never called', async () => {
    const other = await startReceiver();
    try {
      const { followUp } = await finishedCall(store);
      rx.script({ status: 307, headers: { Location: other.url } });
      await outbox().kick();
      expect(await rowOf(followUp.id)).toMatchObject({ status: 'failed', lastError: 'HTTP 307: redirect not followed (configure the final URL)' });
      expect(other.received).toHaveLength(0);
    } finally {
      await other.close();
    }
  });

  it('times out a receiver that never answers, and retries', async () => {
    const { followUp } = await finishedCall(store);
    rx.script({ hang: true });
    const o = outbox();
    const started = performance.now();
    await o.kick();
    expect(performance.now() - started).toBeLessThan(2_000);
    const row = await rowOf(followUp.id);
    expect(row).toMatchObject({ status: 'pending', attempts: 1, lastError: 'timeout after 300 ms', nextAttemptAt: DUE + 5 * SECOND });
    clock.set(row.nextAttemptAt);
    await o.kick();
    expect(await rowOf(followUp.id)).toMatchObject({ status: 'delivered', attempts: 2 });
  });

  it('gives up after 24 h of 503s: failed with the last error, no attempt after expiresAt', async () => {
    const { followUp, deliveries } = await finishedCall(store);
    rx.script(...Array.from({ length: 40 }, (_, i) => ({ status: 503, body: `down #${i + 1}` })));
    const o = outbox();
    const times: number[] = [];
    for (let guard = 0; guard < 40; guard++) {
      times.push(clock.now());
      await o.kick();
      const row = await rowOf(followUp.id);
      if (row.status !== 'pending') break;
      clock.set(row.nextAttemptAt);
    }
    const row = await rowOf(followUp.id);
    const expiresAt = deliveries[0]!.expiresAt;
    expect(expiresAt).toBe(T0 + DAY);
    // 30 s after creation, then +5 s, +30 s, +2 min, +10 min, then hourly while it fits in the day.
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps.slice(0, 4)).toEqual([5 * SECOND, 30 * SECOND, 2 * MINUTE, 10 * MINUTE]);
    expect(new Set(gaps.slice(4))).toEqual(new Set([HOUR]));
    expect(times.at(-1)!).toBeLessThanOrEqual(expiresAt);
    expect(times.at(-1)! + HOUR).toBeGreaterThan(expiresAt);
    expect(row).toMatchObject({ status: 'failed', attempts: 28, lastError: 'HTTP 503: down #28' });
    expect(rx.received).toHaveLength(28);
    expect(o.stats()).toMatchObject({ delivered: 0, retried: 27, failed: 1 });

    const last = log.lines.filter((l) => l.deliveryId === row.id).at(-1)!;
    expect(last).toMatchObject({ status: 'failed', why: 'expired', attempt: 28, code: 'VET_E_DELIVERY', error: 'HTTP 503: down #28' });
  });

  it('spreads retries ±20 % with the jitter source', async () => {
    const a = await finishedCall(store);
    const b = await finishedCall(store);
    await rx.down();
    let r = 0;
    const randoms = [0, 0.999999];
    await outbox({ random: () => randoms[r++ % 2]! }).kick();
    const waits = [(await rowOf(a.followUp.id)).nextAttemptAt - DUE, (await rowOf(b.followUp.id)).nextAttemptAt - DUE].sort((x, y) => x - y);
    expect(waits).toEqual([4 * SECOND, 6 * SECOND]);
  });

  it('fails a delivery whose clinic no longer has the channel, or no longer exists, with a clear error', async () => {
    const kept = await finishedCall(store);
    const gone = await finishedCall(store, ['webhook'], { followUp: { clinicId: 'closed-clinic' } });
    clinic = { ...clinic, webhook: null };
    await outbox().kick();
    expect(await rowOf(kept.followUp.id)).toMatchObject({ status: 'failed', lastError: 'the clinic no longer has a webhook configured' });
    expect(await rowOf(gone.followUp.id)).toMatchObject({ status: 'failed', lastError: 'clinic closed-clinic is no longer configured' });
    expect(rx.received).toHaveLength(0);
  });

  it('sends the call summary (id = CallSid, transcript) and holds follow-ups until the summary exists', async () => {
    // A call still running: its follow-up is held (not sent without its summary) until holdUntil.
    const running = await finishedCall(store, ['webhook'], { summary: null });
    const o = outbox();
    await o.kick();
    expect(rx.received).toHaveLength(0);

    // Another call ends with a summary delivery of its own.
    const f = followUpRow();
    await store.recordFollowUp(f, [delivery(f, 'webhook', f.type)]);
    const summaryDelivery = delivery({ id: f.callSid, clinicId: f.clinicId, callSid: f.callSid }, 'webhook', 'call_summary', { holdUntil: null });
    await store.finishCall(summaryOf(f, { outcome: 'completed' }), [summaryDelivery], DUE);
    await o.kick();
    const byType = Object.fromEntries(rx.received.map((r) => [r.body.type as string, r.body]));
    expect(Object.keys(byType).sort()).toEqual(['appointment_request', 'call_summary']);
    expect(byType.call_summary).toMatchObject({
      id: f.callSid,
      callSid: f.callSid,
      createdAt: new Date(T0 + 30 * SECOND).toISOString(),
      caller: { number: CALLER, name: null },
      pet: { name: null, species: null },
      reason: null,
      urgency: null,
      summary: summaryOf(f).summary,
      outcome: 'completed',
      transcript: summaryOf(f).transcript,
    });
    expect(Object.keys(byType.call_summary!).sort()).toEqual([...FIELDS].sort());

    // The running call's follow-up goes out at its holdUntil at the latest, without a summary.
    clock.set(T0 + 10 * MINUTE);
    await o.kick();
    const late = rx.received.find((r) => r.body.id === running.followUp.id);
    expect(late?.body.summary).toBeNull();
  });

  it('logs one line per attempt outcome with ids only: no payload, secret or phone number', async () => {
    const { followUp, deliveries } = await finishedCall(store);
    rx.script({ status: 503, body: `call ${CALLER} back, secret ${SECRET}` });
    const o = outbox();
    await o.kick();
    clock.set((await rowOf(followUp.id)).nextAttemptAt);
    await o.kick();

    const mine = log.lines.filter((l) => l.deliveryId === deliveries[0]!.id);
    expect(mine).toHaveLength(2);
    expect(mine[0]).toMatchObject({ level: 40, clinicId: 'riverside', channel: 'webhook', kind: 'appointment_request', attempt: 1, status: 'retry', retryInMs: 5_000, code: 'VET_E_DELIVERY' });
    expect(mine[1]).toMatchObject({ level: 30, attempt: 2, status: 'delivered' });
    const text = log.text();
    for (const leak of [CALLER, SECRET, 'Bella', 'limping', 'Ana', followUp.callSid]) expect(text).not.toContain(leak);
    // The first attempt's error stays on the row (the store keeps it after delivery), as clean.
    expect(await rowOf(followUp.id)).toMatchObject({ status: 'delivered', lastError: 'HTTP 503: call +•••••••••23 back, secret [secret]' });
  });

  it('stores a receiver error with phone numbers masked and the secret removed', async () => {
    const { followUp } = await finishedCall(store);
    rx.script({ status: 500, body: `call ${CALLER} back, secret ${SECRET}` });
    await outbox().kick();
    const { lastError } = await rowOf(followUp.id);
    expect(lastError).toMatch(/^HTTP 500: call \+•+23 back, secret \[secret\]$/);
  });
});

describe('the worker', () => {
  it('start() polls at once and then every pollMs', async () => {
    await finishedCall(store);
    const o = outbox({ pollMs: 50 });
    o.start();
    await expect.poll(() => rx.received.length, { timeout: 2_000, interval: 10 }).toBe(1);
    await finishedCall(store);
    await expect.poll(() => rx.received.length, { timeout: 2_000, interval: 10 }).toBe(2); // picked up by the next poll
  });

  it('keeps at most `concurrency` sends in flight and coalesces concurrent kicks', async () => {
    for (let i = 0; i < 12; i++) await finishedCall(store);
    rx.script(...Array.from({ length: 12 }, () => ({ delayMs: 60 })));
    let open = 0;
    let peak = 0;
    const inner = createWebhookSender({ version: '9.9.9', timeoutMs: 2_000 });
    const o = outbox({
      concurrency: 3,
      senders: {
        webhook: {
          async send(target, payload, signal) {
            open += 1;
            peak = Math.max(peak, open);
            try {
              return await inner.send(target, payload, signal);
            } finally {
              open -= 1;
            }
          },
        },
      },
    });
    await Promise.all([o.kick(), o.kick(), o.kick()]);
    expect(rx.received).toHaveLength(12);
    expect(new Set(rx.received.map((r) => r.idempotencyKey)).size).toBe(12);
    expect(peak).toBe(3);
  });

  it('a kick during a round is not lost: a delivery recorded meanwhile goes out before the kick resolves', async () => {
    await finishedCall(store);
    rx.script({ delayMs: 100 });
    const o = outbox();
    const first = o.kick();
    await expect.poll(() => rx.received.length, { timeout: 2_000, interval: 5 }).toBe(1);
    const late = await finishedCall(store);
    await o.kick();
    await first;
    expect(rx.received.map((r) => r.idempotencyKey)).toContain(late.followUp.id);
  });

  it('stop() waits for the send in flight and records it; nothing is claimed afterwards', async () => {
    const { followUp } = await finishedCall(store);
    rx.script({ delayMs: 150 });
    const o = outbox();
    const round = o.kick();
    await expect.poll(() => rx.received.length, { timeout: 2_000, interval: 5 }).toBe(1);
    await o.stop();
    await round;
    expect(await rowOf(followUp.id)).toMatchObject({ status: 'delivered' });
    await finishedCall(store);
    await o.kick();
    expect(rx.received).toHaveLength(1);
  });

  it('stop() past its grace aborts the send and leaves it to its lease (sent again later)', async () => {
    const { followUp } = await finishedCall(store);
    rx.script({ hang: true });
    const o = outbox({ senders: { webhook: createWebhookSender({ version: '9.9.9', timeoutMs: 10_000 }) } });
    void o.kick();
    await expect.poll(() => rx.received.length, { timeout: 2_000, interval: 5 }).toBe(1);
    const started = performance.now();
    await o.stop({ graceMs: 50 });
    expect(performance.now() - started).toBeLessThan(1_000);
    const row = await rowOf(followUp.id);
    expect(row).toMatchObject({ status: 'pending', attempts: 0, nextAttemptAt: DUE + 60 * SECOND }); // the lease

    clock.set(row.nextAttemptAt);
    await outbox().kick();
    expect(await rowOf(followUp.id)).toMatchObject({ status: 'delivered', attempts: 1 });
    expect(new Set(rx.received.map((r) => r.idempotencyKey))).toEqual(new Set([followUp.id]));
  });
});

describe('two workers on one SQLite file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vetline-outbox-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('never send the same delivery twice in a claim round (the lease keeps the other away)', async () => {
    const url = `sqlite:${join(dir, 'vetline.db')}`;
    const a = await openStore(url);
    const b = await openStore(url);
    try {
      const ids: string[] = [];
      for (let i = 0; i < 24; i++) ids.push((await finishedCall(a)).followUp.id);
      rx.script(...Array.from({ length: 24 }, () => ({ delayMs: 20 })));
      const wa = outbox({ store: a, concurrency: 4 });
      const wb = outbox({ store: b, concurrency: 4 });
      await Promise.all([wa.kick(), wb.kick(), wa.kick(), wb.kick()]);

      const keys = rx.received.map((r) => r.idempotencyKey);
      expect(keys).toHaveLength(24);
      expect(new Set(keys)).toEqual(new Set(ids));
      expect(wa.stats().delivered + wb.stats().delivered).toBe(24);
      expect(wa.stats().delivered).toBeGreaterThan(0);
      expect(wb.stats().delivered).toBeGreaterThan(0);
      for (const id of ids) expect((await b.deliveriesFor(id))[0]).toMatchObject({ status: 'delivered', attempts: 1 });
    } finally {
      await a.close();
      await b.close();
    }
  });
});
