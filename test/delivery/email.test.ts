/**
 * E-mail delivery through nodemailer to a real SMTP server (the smtp-server package) on loopback,
 * driven by the outbox on the real SQLite store.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { classifySmtpError, createEmailSender, emailSubject, renderEmail } from '../../src/delivery/email.js';
import { createOutbox, type Outbox } from '../../src/delivery/outbox.js';
import { callSummaryPayload, followUpPayload } from '../../src/delivery/payload.js';
import type { ClinicDelivery, EmailSender } from '../../src/delivery/types.js';
import { openStore } from '../../src/store/index.js';
import type { Delivery, FollowUp, FollowUpStore } from '../../src/store/types.js';
import { CALLER, SECOND, T0, capturedLogger, finishedCall, followUp, manualClock, summaryOf } from './kit.js';

interface Mail {
  from: string | null;
  to: string[];
  raw: string;
}

interface FakeSmtp {
  url: string;
  port: number;
  mails: Mail[];
  /** Next RCPT TO replies: an SMTP code (≥ 400 rejects) per call; afterwards accept. */
  rcptReplies: number[];
  logins: string[];
  close(): Promise<void>;
}

async function startSmtp(): Promise<FakeSmtp> {
  const mails: Mail[] = [];
  const rcptReplies: number[] = [];
  const logins: string[] = [];
  const server = new SMTPServer({
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth(auth, _session, callback) {
      logins.push(auth.username ?? '');
      callback(null, { user: auth.username });
    },
    onRcptTo(_address: SMTPServerAddress, _session: SMTPServerSession, callback) {
      const code = rcptReplies.shift();
      if (code === undefined || code < 400) return callback();
      callback(Object.assign(new Error(code >= 500 ? 'No such mailbox here' : 'Mailbox busy, try later'), { responseCode: code }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const from = session.envelope.mailFrom;
        mails.push({ from: from ? from.address : null, to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        callback();
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.on('error', reject);
    const net = server.listen(0, '127.0.0.1', () => resolve((net.address() as AddressInfo).port));
  });
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    mails,
    rcptReplies,
    logins,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Unfolded headers, encoded words decoded. */
function headers(raw: string): Record<string, string> {
  const head = raw.split(/\r?\n\r?\n/)[0] ?? '';
  const out: Record<string, string> = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).toLowerCase()] = decodeWords(line.slice(i + 1).trim());
  }
  return out;
}

function decodeWords(value: string): string {
  return value
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?utf-8\?([QB])\?([^?]*)\?=/gi, (_m, enc: string, text: string) =>
      enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64').toString('utf8') : decodeQp(text.replace(/_/g, ' ')),
    );
}

function decodeQp(text: string): string {
  const bytes: number[] = [];
  const s = text.replace(/=\r?\n/g, '');
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-F]{2}$/i.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...Buffer.from(s[i]!, 'utf8'));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** The decoded body of the part with this content type. */
function part(raw: string, type: 'text/plain' | 'text/html'): string {
  const at = raw.search(new RegExp(`Content-Type: ${type}`, 'i'));
  if (at < 0) throw new Error(`no ${type} part`);
  const rest = raw.slice(at);
  const [head = '', ...body] = rest.split(/\r?\n\r?\n/);
  const content = (body.join('\n\n').split(/\r?\n--/)[0] ?? '').trim();
  if (/quoted-printable/i.test(head)) return decodeQp(content).replace(/\r\n/g, '\n');
  if (/base64/i.test(head)) return Buffer.from(content, 'base64').toString('utf8').replace(/\r\n/g, '\n');
  return content.replace(/\r\n/g, '\n');
}

let smtp: FakeSmtp;
let store: FollowUpStore;
let sender: EmailSender;
let clinic: ClinicDelivery;
let clock: ReturnType<typeof manualClock>;
const outboxes: Outbox[] = [];

function outbox(): Outbox {
  const o = createOutbox({
    store,
    clinic: (id) => (id === 'riverside' ? clinic : null),
    logger: capturedLogger().logger,
    now: clock.now,
    random: () => 0.5,
    senders: { email: sender },
  });
  outboxes.push(o);
  return o;
}

const rowOf = async (subjectId: string): Promise<Delivery> => (await store.deliveriesFor(subjectId))[0]!;

beforeEach(async () => {
  smtp = await startSmtp();
  store = await openStore('sqlite::memory:');
  sender = createEmailSender({ smtpUrl: smtp.url, timeoutMs: 3_000 });
  clock = manualClock(T0 + 30 * SECOND);
  clinic = {
    name: 'Riverside Vet',
    webhook: null,
    email: { to: ['desk@riverside.example', 'dr.lee@riverside.example'], from: 'frontdesk@riverside.example' },
    sms: null,
  };
});

afterEach(async () => {
  for (const o of outboxes.splice(0)) await o.stop({ graceMs: 0 });
  sender.close();
  await smtp.close();
  await store.close();
});

describe('e-mail over SMTP', () => {
  it('sends a readable text + HTML mail to every recipient, from the clinic address', async () => {
    const { followUp: f } = await finishedCall(store, ['email'], { followUp: { reason: 'limping <since> Tuesday & worse' } });
    await outbox().kick();

    expect(await rowOf(f.id)).toMatchObject({ status: 'delivered', attempts: 1 });
    expect(smtp.mails).toHaveLength(1);
    const mail = smtp.mails[0]!;
    expect(mail.from).toBe('frontdesk@riverside.example');
    expect(mail.to).toEqual(['desk@riverside.example', 'dr.lee@riverside.example']);

    const h = headers(mail.raw);
    expect(h.subject).toBe(`[Riverside Vet] Appointment request: Bella (dog) — call back ${CALLER}`);
    expect(h.from).toContain('Riverside Vet (Vetline)');
    expect(h['message-id']).toBe(`<vetline-${f.id}@riverside.example>`);
    expect(h['x-vetline-id']).toBe(f.id);

    const text = part(mail.raw, 'text/plain');
    expect(text).toContain('Appointment request — Riverside Vet');
    expect(text).toMatch(/Caller: +Ana García, \+15550100123/);
    expect(text).toMatch(/Pet: +Bella \(dog\)/);
    expect(text).toMatch(/Reason: +limping <since> Tuesday & worse/);
    expect(text).toMatch(/Preferred time: +Thursday morning/);
    expect(text).toContain(summaryOf(f).summary);

    const html = part(mail.raw, 'text/html');
    expect(html).toContain('limping &lt;since&gt; Tuesday &amp; worse');
    expect(html).not.toContain('<since>');
  });

  it('keeps the same Message-ID across retries, so a duplicate can be folded', async () => {
    const { followUp: f } = await finishedCall(store, ['email']);
    smtp.rcptReplies.push(451, 451); // both recipients deferred
    const o = outbox();
    await o.kick();
    const row = await rowOf(f.id);
    expect(row).toMatchObject({ status: 'pending', attempts: 1 });
    expect(row.lastError).toMatch(/^SMTP 451 EENVELOPE: .*Mailbox busy/);
    clock.set(row.nextAttemptAt);
    await o.kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(headers(smtp.mails[0]!.raw)['message-id']).toBe(`<vetline-${f.id}@riverside.example>`);
  });

  it('delivers to the recipients that accept, with a warning when some refuse (a retry would duplicate it)', async () => {
    const { followUp: f } = await finishedCall(store, ['email']);
    smtp.rcptReplies.push(250, 550);
    const log = capturedLogger();
    const o = createOutbox({ store, clinic: () => clinic, logger: log.logger, now: clock.now, senders: { email: sender } });
    outboxes.push(o);
    await o.kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'delivered', attempts: 1 });
    expect(smtp.mails[0]!.to).toEqual(['desk@riverside.example']);
    expect(log.lines.find((l) => l.status === 'delivered')).toMatchObject({ level: 40, channel: 'email', note: '1 of 2 recipients refused (SMTP 550)' });
  });

  it('treats an SMTP 5xx as permanent: failed, no retry', async () => {
    const { followUp: f } = await finishedCall(store, ['email']);
    smtp.rcptReplies.push(550, 550);
    const o = outbox();
    await o.kick();
    const row = await rowOf(f.id);
    expect(row.status).toBe('failed');
    expect(row.lastError).toMatch(/^SMTP 550 EENVELOPE: .*No such mailbox/);
    clock.advance(3_600_000);
    await o.kick();
    expect(smtp.mails).toHaveLength(0);
  });

  it('retries when the SMTP server cannot be reached', async () => {
    const { followUp: f } = await finishedCall(store, ['email']);
    await smtp.close();
    sender.close();
    sender = createEmailSender({ smtpUrl: smtp.url, timeoutMs: 3_000 });
    await outbox().kick();
    const row = await rowOf(f.id);
    expect(row).toMatchObject({ status: 'pending', attempts: 1, nextAttemptAt: T0 + 35 * SECOND });
    expect(row.lastError).toMatch(/^SMTP E[A-Z]+$/);
  });

  it('leaves the callback out of the subject when there is no number, and logs in with the URL credentials', async () => {
    sender.close();
    sender = createEmailSender({ smtpUrl: `smtp://bookings%40riverside.example:canary-pw@127.0.0.1:${smtp.port}`, timeoutMs: 3_000 });
    clinic = { ...clinic, email: { to: ['desk@riverside.example'], from: null } };
    const { followUp: f } = await finishedCall(store, ['email'], { followUp: { callerNumber: null } });
    await outbox().kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'delivered' });
    expect(smtp.logins).toEqual(['bookings@riverside.example']);
    const mail = smtp.mails[0]!;
    expect(mail.from).toBe('bookings@riverside.example'); // the SMTP user, when the clinic sets no from
    expect(headers(mail.raw).subject).toBe('[Riverside Vet] Appointment request: Bella (dog)');
    expect(part(mail.raw, 'text/plain')).toMatch(/Caller: +Ana García\n/);
  });

  it('takes a clinic sender with its own display name as written', async () => {
    clinic = { ...clinic, email: { to: ['desk@riverside.example'], from: 'Riverside front desk <desk@riverside.example>' } };
    const { followUp: f } = await finishedCall(store, ['email']);
    await outbox().kick();
    const mail = smtp.mails[0]!;
    expect(mail.from).toBe('desk@riverside.example');
    const h = headers(mail.raw);
    expect(h.from).toBe('Riverside front desk <desk@riverside.example>');
    expect(h['message-id']).toBe(`<vetline-${f.id}@riverside.example>`);
  });

  it('fails e-mail deliveries at once when SMTP_URL is not set', async () => {
    const { followUp: f } = await finishedCall(store, ['email']);
    const o = createOutbox({ store, clinic: () => clinic, logger: capturedLogger().logger, now: clock.now });
    outboxes.push(o);
    await o.kick();
    expect(await rowOf(f.id)).toMatchObject({ status: 'failed', lastError: 'e-mail delivery needs SMTP_URL, which is not set' });
  });
});

describe('rendering', () => {
  const asFollowUp = (over: Partial<FollowUp> = {}): FollowUp => ({ ...followUp(), status: 'new', handledBy: null, notes: [], updatedAt: T0, ...over });

  it('subjects name the type, the pet or caller, and the callback number only when present', () => {
    expect(emailSubject(followUpPayload(asFollowUp({ type: 'refill_request', petSpecies: null }), null), 'Riverside Vet')).toBe(
      `[Riverside Vet] Refill request: Bella — call back ${CALLER}`,
    );
    expect(emailSubject(followUpPayload(asFollowUp({ type: 'message', recipient: 'Dr. Lee', petName: null, petSpecies: null, callerNumber: null }), null), 'Riverside Vet')).toBe(
      '[Riverside Vet] Message for Dr. Lee: Ana García',
    );
    const emergency = asFollowUp({ type: 'emergency', urgency: 'emergency', emergency: { trigger: 'speech', detail: 'bleeding', script: 'emergency', sentTo: 'emergencyLine', connected: true } });
    expect(emailSubject(followUpPayload(emergency, null), 'Riverside Vet')).toBe(`[Riverside Vet] EMERGENCY: Bella (dog) — call back ${CALLER}`);
    expect(renderEmail(followUpPayload(emergency, null), 'Riverside Vet').text).toMatch(/Emergency: +speech: bleeding\nTransferred to: +emergencyLine \(connected\)/);
    const f = followUp();
    expect(emailSubject(callSummaryPayload(summaryOf(f)), 'Riverside Vet')).toBe(`[Riverside Vet] Call summary: completed — call back ${CALLER}`);
  });

  it('a subject never carries a line break (no header injection from caller words)', () => {
    const s = emailSubject(followUpPayload(asFollowUp({ petName: 'Bella\r\nBcc: x@evil.example' }), null), 'Riverside\nVet');
    expect(s).not.toMatch(/[\r\n]/);
  });

  it('the summary reads "(not written yet)" until there is one, and a call summary carries its transcript', () => {
    expect(renderEmail(followUpPayload(asFollowUp(), null), 'Riverside Vet').text).toContain('Summary:\n(not written yet)');
    const text = renderEmail(callSummaryPayload(summaryOf(followUp())), 'Riverside Vet').text;
    expect(text).toContain('Transcript:\nAssistant: Riverside Vet, how can I help?\nCaller: My dog Bella is limping.');
  });

  it('classifies nodemailer errors: reply 5xx permanent, 4xx and connection errors retried', () => {
    expect(classifySmtpError({ code: 'EAUTH', responseCode: 535, response: '535 5.7.8 Authentication failed' })).toEqual({
      ok: false,
      permanent: true,
      error: 'SMTP 535 EAUTH: 535 5.7.8 Authentication failed',
    });
    expect(classifySmtpError({ code: 'EENVELOPE', responseCode: 452, response: '452 4.2.2 Mailbox full' })).toMatchObject({ permanent: false });
    expect(classifySmtpError({ code: 'ECONNECTION' })).toEqual({ ok: false, permanent: false, error: 'SMTP ECONNECTION' });
    expect(classifySmtpError({ code: 'ETIMEDOUT' })).toMatchObject({ permanent: false });
    expect(classifySmtpError({ code: 'EENVELOPE' })).toMatchObject({ permanent: true });
    expect(classifySmtpError({ code: 'EAUTH', responseCode: 535, response: '535 bad password canary-pw' }, ['canary-pw']).ok === false).toBe(true);
    const masked = classifySmtpError({ code: 'EAUTH', responseCode: 535, response: '535 bad password canary-pw' }, ['canary-pw']);
    expect(JSON.stringify(masked)).not.toContain('canary-pw');
  });
});
