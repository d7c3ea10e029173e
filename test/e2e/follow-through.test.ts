/**
 * Follow-through end to end (docs/follow-ups.md): a caller books an appointment with the local
 * receptionist over the real Media Streams protocol, and within seconds of hang-up the clinic has
 *   - the follow-up in the store (committed before "I've sent it" was heard),
 *   - the follow-up on its own desk only (another clinic's token does not see it),
 *   - a signed webhook delivery its receiver verifies with the documented recipe (and the call
 *     summary after it), and an e-mail through a real SMTP server.
 * Then the receiver goes down: the next call's delivery fails, the engine is stopped and started
 * again on the same database file with the receiver back a minute later, and exactly one logical
 * delivery (same id) arrives.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { describe, it, type TestContext } from 'vitest';
import { createEmailSender } from '../../src/delivery/email.js';
import { clinicDeliveries } from '../../src/delivery/clinics.js';
import { createOutbox, type Outbox } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { openStore } from '../../src/store/index.js';
import type { FollowUpStore } from '../../src/store/types.js';
import { startReceiver, type Receiver } from '../delivery/kit.js';
import { QUICK_VET, startRig, TENANTS, tone, untilState, type Rig } from './conversation-kit.js';

const SECRET = 'whsec_e2e-follow-through-0123456789';
const QUICK_DESK = 'quick-desk-token-0123456789abcdef';
const CONSENT_DESK = 'consent-desk-token-0123456789abcd';
const tenantEnv = { QUICK_WEBHOOK_SECRET: SECRET, QUICK_DESK_TOKEN: QUICK_DESK, CONSENT_DESK_TOKEN: CONSENT_DESK };
const BOOKING = ['I want to book an appointment', 'Rex', 'my name is Jane Smith', 'his vaccinations', 'tomorrow at 10 am', '555 010 0200', 'yes'];

interface Mail { to: string[]; raw: string }
interface Smtp { url: string; mails: Mail[]; close(): Promise<void> }

/** The fixture clinics plus follow-up delivery (webhook, e-mail) and desk tokens. */
function writeTenants(dir: string, webhookUrl: string): string {
  const out = join(dir, 'tenants');
  const read = (name: string) => JSON.parse(readFileSync(join(TENANTS, name), 'utf8')) as Record<string, unknown>;
  const quick = { ...read('quick-vet.json'), $schema: undefined,
    followUps: { webhook: { url: webhookUrl, secretEnv: 'QUICK_WEBHOOK_SECRET' }, email: { to: ['frontdesk@quick.test'] } },
    desk: { tokenEnv: 'QUICK_DESK_TOKEN' } };
  const consent = { ...read('consent-vet.json'), $schema: undefined, desk: { tokenEnv: 'CONSENT_DESK_TOKEN' } };
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'quick-vet.json'), JSON.stringify(quick));
  writeFileSync(join(out, 'consent-vet.json'), JSON.stringify(consent));
  return out;
}

async function startSmtp(): Promise<Smtp> {
  const mails: Mail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.on('error', reject);
    const net = server.listen(0, '127.0.0.1', () => resolve((net.address() as AddressInfo).port));
  });
  return { url: `smtp://127.0.0.1:${port}`, mails, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The test store holds each commit this long, so "nothing was heard before it was durable" is measurable. */
const COMMIT_DELAY_MS = 400;

/**
 * What a test's clinic delivers to: its own webhook receiver, SMTP server and clinic files (the tests
 * run concurrently, and one of them takes its receiver down), closed when the test finishes.
 */
interface Clinic {
  dir: string;
  tenantsDir: string;
  receiver: Receiver;
  smtp: Smtp;
  /** When each recordFollowUp was called and resolved (performance.now()). */
  commits: { calledAt: number; doneAt: number }[];
}

async function clinicFor(ctx: Pick<TestContext, 'onTestFinished'>): Promise<Clinic> {
  const dir = mkdtempSync(join(tmpdir(), 'vetline-follow-'));
  const receiver = await startReceiver(SECRET);
  const smtp = await startSmtp();
  ctx.onTestFinished(async () => {
    await receiver.close();
    await smtp.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, tenantsDir: writeTenants(dir, receiver.url), receiver, smtp, commits: [] };
}

/** An engine on the clinic's database file `dbName`, with its own outbox; `clockOffsetMs` moves the outbox's clock ahead. */
async function engineOn(clinic: Clinic, dbName: string, clockOffsetMs = 0): Promise<{ rig: Rig; store: FollowUpStore; outbox: Outbox; close(): Promise<void> }> {
  const { commits, smtp, tenantsDir } = clinic;
  const dbPath = join(clinic.dir, dbName);
  const real = await openStore(`sqlite:${dbPath}`);
  const store = new Proxy(real, {
    get(target, prop) {
      if (prop !== 'recordFollowUp') {
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value; // private fields need the real `this`
      }
      const record: FollowUpStore['recordFollowUp'] = async (followUp, deliveries) => {
        const calledAt = performance.now();
        await new Promise((r) => setTimeout(r, COMMIT_DELAY_MS));
        await target.recordFollowUp(followUp, deliveries);
        commits.push({ calledAt, doneAt: performance.now() });
      };
      return record;
    },
  });
  const emailSender = createEmailSender({ smtpUrl: smtp.url });
  let outbox: Outbox | null = null;
  const rig = await startRig({
    agent: localAgent,
    stt: BOOKING,
    tenantsDir,
    engine: {
      tenantEnv,
      env: { INSPECTOR_TOKEN: 'operator-token-0123456789abcdef01' },
      followUps: (tenants) => {
        const clinic = clinicDeliveries(tenants, { smtp: true, sms: false });
        outbox = createOutbox({
          store, clinic, logger: createLogger({ level: 'silent' }), version: 'test', now: () => Date.now() + clockOffsetMs,
          senders: { email: emailSender, sms: null },
        });
        return { store, outbox, clinicDelivery: clinic };
      },
    },
  });
  if (!outbox) throw new Error('follow-ups were not built');
  const built: Outbox = outbox;
  await store.releaseHeld(Date.now());
  built.start();
  return {
    rig, store, outbox: built,
    async close() {
      await rig.close();
      await built.stop();
      emailSender.close();
      await store.close();
    },
  };
}

/** Books an appointment (seven caller turns), then hangs up; returns the CallSid and the caller's audio log. */
async function bookAndHangUp(rig: Rig): Promise<{ sid: string; mediaAt: number[] }> {
  const call = await rig.dial(QUICK_VET);
  const sid = call.callSid;
  for (let turn = 0; turn < BOOKING.length; turn++) {
    const replies = rig.engine.registry.session(sid)?.history.length ?? 0;
    await untilState(rig, call, 'listening.waiting', 10_000);
    await call.say(tone(300));
    await call.waitFor(() => (rig.engine.registry.session(sid)?.history.length ?? 0) >= replies + 2, 8_000, `reply ${turn + 1}`);
  }
  await untilState(rig, call, 'listening.waiting', 8_000);
  // Arrival times of our audio at the caller, on the performance clock.
  const epoch = performance.now() - call.now();
  const mediaAt = call.outbound.filter((r) => r.message?.event === 'media').map((r) => epoch + r.atMs);
  await call.hangUp();
  await untilState(rig, call, 'ended', 3_000);
  return { sid, mediaAt };
}

const until = async (ok: () => boolean | Promise<boolean>, timeoutMs: number, what: string) => {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

describe.concurrent('follow-through: a booked appointment reaches the clinic', () => {
  it('stores it before the caller hears it was sent, shows it on its own desk, and delivers a signed webhook and an e-mail', async (ctx) => {
    const { expect } = ctx;
    const clinic = await clinicFor(ctx);
    const { receiver, smtp, commits } = clinic;
    const e = await engineOn(clinic, 'one.db');
    try {
      const { sid, mediaAt } = await bookAndHangUp(e.rig);
      const session = e.rig.engine.registry.recentCalls().find((r) => r.callSid === sid);
      const request = session?.final?.requests[0];
      expect(request).toMatchObject({ kind: 'appointment', petName: 'Rex', ownerName: 'Jane Smith', callback: { kind: 'spoken' } });
      const id = request!.id;

      // Committed before "I've sent it": while the (slowed) commit ran, the caller heard nothing,
      // and the confirmation's audio came only after it.
      const stored = await e.store.getFollowUp(id);
      expect(stored).toMatchObject({ clinicId: 'quick-vet', callSid: sid, type: 'appointment_request', status: 'new', callerNumber: '5550100200', petName: 'Rex' });
      const commit = commits.at(-1)!;
      expect(mediaAt.filter((t) => t > commit.calledAt && t < commit.doneAt)).toEqual([]);
      expect(mediaAt.some((t) => t > commit.doneAt)).toBe(true);

      // The webhook: follow-up and call summary, each signed and verified by the receiver's own recipe.
      await until(() => receiver.received.filter((r) => r.body.callSid === sid).length >= 2, 10_000, 'two deliveries');
      const got = receiver.received.filter((r) => r.body.callSid === sid);
      const followUp = got.find((r) => r.body.id === id)!;
      expect(followUp.verified).toBe(true);
      expect(followUp.idempotencyKey).toBe(id);
      expect(followUp.body).toMatchObject({
        type: 'appointment_request', clinicId: 'quick-vet', caller: { number: '5550100200', name: 'Jane Smith' },
        pet: { name: 'Rex' }, reason: 'vaccinations', preferredTime: 'tomorrow at 10 am', urgency: 'routine',
      });
      expect(String(followUp.body.summary)).toMatch(/Appointment request for Rex/);
      const summary = got.find((r) => r.body.type === 'call_summary')!;
      expect(summary.body.id).toBe(sid);
      expect(summary.verified).toBe(true);

      // The e-mail, through a real SMTP server.
      await until(() => smtp.mails.length >= 1, 10_000, 'an e-mail');
      expect(smtp.mails[0]!.to).toEqual(['frontdesk@quick.test']);
      expect(smtp.mails.map((m) => m.raw).join('\n')).toContain('Rex');

      // The desk: the clinic's token sees it, the other clinic's does not, the operator's does.
      const desk = (token: string) =>
        e.rig.engine.app.inject({ method: 'GET', url: '/desk/api/followups', headers: { authorization: `Bearer ${token}` } }).then((r) => r.json<{ followUps: { id: string }[] }>());
      expect((await desk(QUICK_DESK)).followUps.map((f) => f.id)).toContain(id);
      expect((await desk(CONSENT_DESK)).followUps.map((f) => f.id)).not.toContain(id);
      expect((await desk('operator-token-0123456789abcdef01')).followUps.map((f) => f.id)).toContain(id);

      // Nothing personal in the logs.
      const logs = e.rig.engine.logs.join('');
      for (const secret of ['Jane Smith', '5550100200', SECRET, QUICK_DESK]) expect(logs).not.toContain(secret);
    } finally {
      await e.close();
    }
  }, 60_000);

  it('with the receiver down and the engine restarted meanwhile, exactly one logical delivery arrives later', async (ctx) => {
    const { expect } = ctx;
    const clinic = await clinicFor(ctx);
    const { receiver } = clinic;
    await receiver.down();
    const first = await engineOn(clinic, 'two.db');
    let id: string;
    try {
      const { sid } = await bookAndHangUp(first.rig);
      id = first.rig.engine.registry.recentCalls().find((r) => r.callSid === sid)!.final!.requests[0]!.id;
      // The first attempt fails (connection refused) and is scheduled again.
      await until(async () => (await first.store.deliveriesFor(id)).some((d) => d.channel === 'webhook' && d.attempts >= 1), 10_000, 'a failed attempt');
      const [webhook] = (await first.store.deliveriesFor(id)).filter((d) => d.channel === 'webhook');
      expect(webhook).toMatchObject({ status: 'pending', lastError: expect.any(String) as string });
    } finally {
      await first.close();
    }

    // A minute later the receiver is back and a new engine starts on the same database.
    await receiver.up();
    const second = await engineOn(clinic, 'two.db', 61_000);
    try {
      await until(() => receiver.received.some((r) => r.body.id === id), 10_000, 'the delivery after the restart');
      await new Promise((r) => setTimeout(r, 500));
      const deliveries = receiver.received.filter((r) => r.body.id === id);
      expect(deliveries).toHaveLength(1);
      expect(deliveries[0]!.verified).toBe(true);
      expect(deliveries[0]!.idempotencyKey).toBe(id);
      const [webhook] = (await second.store.deliveriesFor(id)).filter((d) => d.channel === 'webhook');
      expect(webhook).toMatchObject({ status: 'delivered', attempts: 2 });
    } finally {
      await second.close();
    }
  }, 60_000);
});
