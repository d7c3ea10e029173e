/**
 * E-mail channel (SMTP_URL, nodemailer): the payload as a short plain-text + simple HTML message
 * to the clinic's `followUps.email.to` (docs/delivery.md "E-mail").
 *
 * SMTP replies: 5xx → permanent (mailbox unknown, relay denied, authentication refused), 4xx →
 * retry (greylisting, mailbox busy); connection errors and timeouts → retry. When only some
 * recipients are refused the mail is delivered (to the others) with a warning. Every attempt of one
 * payload carries the same Message-ID, so mail clients can fold the rare duplicate.
 */
import nodemailer from 'nodemailer';
import type { DeliveryPayload, PayloadType } from './payload.js';
import type { EmergencyDetail } from '../store/types.js';
import { safeErrorText, type EmailSender, type SendResult } from './types.js';

export const EMAIL_TIMEOUT_MS = 30_000;

export interface EmailSenderOptions {
  /** `smtp://` or `smtps://` URL (AppConfig.smtpUrl). */
  smtpUrl: string;
  /** Bound on one attempt (connect, greeting, send). Default 30 000. */
  timeoutMs?: number;
  /**
   * Sender when the clinic sets no `from`. Default: the SMTP user when it is an address (relays
   * usually insist on it), else `vetline@<SMTP host>`.
   */
  defaultFrom?: string;
}

export function createEmailSender(opts: EmailSenderOptions): EmailSender {
  const timeoutMs = opts.timeoutMs ?? EMAIL_TIMEOUT_MS;
  const url = new URL(opts.smtpUrl);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const defaultFrom = opts.defaultFrom ?? (/^[^@\s]+@[^@\s]+$/.test(user) ? user : `vetline@${url.hostname.replace(/^\[|\]$/g, '')}`);
  const phase = Math.min(timeoutMs, 10_000);
  const transport = nodemailer.createTransport({
    url: opts.smtpUrl,
    connectionTimeout: phase,
    greetingTimeout: phase,
    socketTimeout: timeoutMs,
  });
  const secrets = [password, opts.smtpUrl].filter((s) => s !== '');

  return {
    async send({ to, from, clinicName, payload }, signal): Promise<SendResult> {
      if (to.length === 0) return { ok: false, permanent: true, error: 'no e-mail recipients configured' };
      // The clinic's `from` may carry its own display name ("Front desk <desk@clinic.example>").
      const sender = from ?? defaultFrom;
      const address = addressOf(sender);
      const mail = renderEmail(payload, clinicName);
      const deadline = AbortSignal.timeout(timeoutMs);
      try {
        const info = await transport.sendMail({
          from: sender.includes('<') ? sender : { name: `${oneLine(clinicName, 60)} (Vetline)`, address },
          to: [...to],
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
          messageId: `<vetline-${payload.id.replace(/[^\w.-]/g, '')}@${domainOf(address)}>`,
          headers: { 'X-Vetline-Id': payload.id, 'X-Vetline-Type': payload.type },
          signal: AbortSignal.any([signal, deadline]),
        });
        // Some recipients refused, at least one accepted: delivered (a retry would duplicate it for
        // those who have it), with a warning naming how many and the first reply code.
        if (info.rejected.length === 0) return { ok: true };
        const code = info.rejectedErrors?.[0]?.responseCode;
        return { ok: true, note: `${info.rejected.length} of ${to.length} recipients refused${code === undefined ? '' : ` (SMTP ${code})`}` };
      } catch (err) {
        if (deadline.aborted) return { ok: false, permanent: false, error: `SMTP timeout after ${timeoutMs} ms` };
        return classifySmtpError(err, secrets);
      }
    },
    close() {
      transport.close();
    },
  };
}

/** nodemailer's error → SendResult: by SMTP reply code when the server answered, else by error code. */
export function classifySmtpError(err: unknown, secrets: readonly string[] = []): SendResult {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { responseCode?: unknown; response?: unknown; code?: unknown };
  const code = typeof e.code === 'string' && /^[A-Z][A-Z0-9_]{1,30}$/.test(e.code) ? e.code : 'ERROR';
  if (typeof e.responseCode === 'number' && e.responseCode >= 400 && e.responseCode < 600) {
    const reply = typeof e.response === 'string' ? e.response.split(/\r?\n/)[0] ?? '' : '';
    return { ok: false, permanent: e.responseCode >= 500, error: safeErrorText(`SMTP ${e.responseCode} ${code}: ${reply}`, secrets) };
  }
  // No reply code: the message itself or the configuration is wrong (permanent), or the network is (retry).
  const permanent = ['EENVELOPE', 'EMESSAGE', 'ECONFIG', 'ENOAUTH', 'EMAXRECIPIENTS'].includes(code);
  return { ok: false, permanent, error: safeErrorText(`SMTP ${code}`, secrets) };
}

const TYPE_LABEL: Record<PayloadType, string> = {
  appointment_request: 'Appointment request',
  refill_request: 'Refill request',
  message: 'Message',
  emergency: 'EMERGENCY',
  call_summary: 'Call summary',
};

/** One line, control characters removed, at most `max` characters. */
function oneLine(text: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ').replace(/\s+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}

/** `Name <a@b>` → `a@b`; a bare address as it is. */
function addressOf(mailbox: string): string {
  return (/<([^<>]+)>\s*$/.exec(mailbox)?.[1] ?? mailbox).trim();
}

function domainOf(address: string): string {
  const domain = address.split('@').pop() ?? '';
  return /^[A-Za-z0-9.-]+$/.test(domain) ? domain : 'vetline.invalid';
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

/** `Bella (dog)`, `Bella`, `a dog`, or null. */
function petLabel(p: DeliveryPayload): string | null {
  const name = p.pet.name ? oneLine(p.pet.name, 40) : '';
  const species = p.pet.species ? oneLine(p.pet.species, 30) : '';
  if (name && species) return `${name} (${species})`;
  return name || species || null;
}

/**
 * "[Riverside Vet] Appointment request: Bella (dog) — call back +15550100123". The callback part
 * only when the payload has a number; the subject never has line breaks.
 */
export function emailSubject(p: DeliveryPayload, clinicName: string): string {
  let label = TYPE_LABEL[p.type];
  if (p.type === 'message' && p.recipient) label += ` for ${oneLine(p.recipient, 40)}`;
  const about = p.type === 'call_summary' ? (p.outcome ? oneLine(p.outcome, 40) : null) : (petLabel(p) ?? (p.caller.name ? oneLine(p.caller.name, 40) : null));
  const callBack = p.caller.number ? ` — call back ${oneLine(p.caller.number, 20)}` : '';
  return oneLine(`[${oneLine(clinicName, 60)}] ${label}${about ? `: ${about}` : ''}${callBack}`, 200);
}

/** The labelled fields shown in both bodies, in order; absent values are left out. */
/** The answer to "Is your pet in danger right now?" (an uncertain trigger asks it first). */
const CONFIRMATION_LABEL: Record<Exclude<NonNullable<EmergencyDetail['confirmation']>, 'notAsked'>, string> = {
  saidYes: 'caller said yes',
  pressedYes: 'caller pressed 1 (yes)',
  emergencyKey: 'caller pressed the emergency key',
  clearKeyword: 'caller described an emergency',
  noAnswer: 'no answer (treated as yes)',
  callEnded: 'the call ended before an answer: no instructions were played',
};

function fields(p: DeliveryPayload): [string, string][] {
  const rows: [string, string | null][] = [
    ['Caller', [p.caller.name, p.caller.number].filter((v) => v).join(', ') || null],
    ['Pet', petLabel(p)],
    ['For', p.recipient],
    ['Reason', p.reason],
    ['Preferred time', p.preferredTime],
    ['Urgency', p.urgency],
    ['Outcome', p.outcome],
  ];
  if (p.emergency) {
    const e = p.emergency;
    rows.push(['Emergency', `${e.trigger}: ${e.detail}${e.certainty ? ` (${e.certainty})` : ''}`]);
    if (e.confirmation && e.confirmation !== 'notAsked') rows.push(['Confirmed', CONFIRMATION_LABEL[e.confirmation]]);
    rows.push(['Transferred to', e.sentTo === null ? 'not transferred (no emergency line)' : `${e.sentTo}${e.connected === null ? '' : e.connected ? ' (connected)' : ' (not connected)'}`]);
  }
  return rows.filter((r): r is [string, string] => r[1] !== null && r[1] !== '');
}

export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

export function renderEmail(p: DeliveryPayload, clinicName: string): RenderedEmail {
  const subject = emailSubject(p, clinicName);
  const rows = fields(p);
  const width = Math.max(...rows.map(([k]) => k.length), 0) + 2;
  const footer = `Call ${p.callSid} · ${p.createdAt} · id ${p.id}`;
  const transcript = (p.transcript ?? []).map((l) => `${l.role === 'caller' ? 'Caller' : 'Assistant'}: ${l.text}`);

  const text = [
    `${TYPE_LABEL[p.type]} — ${clinicName}`,
    '',
    ...rows.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`),
    ...(p.message ? ['', 'Message:', p.message] : []),
    '',
    'Summary:',
    p.summary ?? '(not written yet)',
    ...(transcript.length > 0 ? ['', 'Transcript:', ...transcript] : []),
    '',
    '--',
    footer,
    '',
  ].join('\n');

  const cell = (v: string) => escapeHtml(v).replace(/\n/g, '<br>');
  const html = [
    '<!doctype html><html><body style="font-family:sans-serif;font-size:14px">',
    `<h2 style="margin:0 0 12px">${cell(TYPE_LABEL[p.type])} — ${cell(clinicName)}</h2>`,
    '<table cellpadding="4" style="border-collapse:collapse">',
    ...rows.map(([k, v]) => `<tr><th align="left" valign="top">${cell(k)}</th><td>${cell(v)}</td></tr>`),
    '</table>',
    ...(p.message ? [`<h3>Message</h3><p>${cell(p.message)}</p>`] : []),
    `<h3>Summary</h3><p>${p.summary === null ? '<em>(not written yet)</em>' : cell(p.summary)}</p>`,
    ...(transcript.length > 0 ? [`<h3>Transcript</h3><p>${transcript.map(cell).join('<br>')}</p>`] : []),
    `<hr><p style="color:#666;font-size:12px">${cell(footer)}</p>`,
    '</body></html>',
  ].join('\n');

  return { subject, text, html };
}
