/**
 * What the outbox needs from a clinic and from each channel's sender. Senders never throw for a
 * failed delivery: they classify it (`permanent` or worth a retry) and describe it in a short,
 * safe `error` (status code and reason; never a secret, a phone number or more than 200 characters
 * of what the receiver said).
 */
import { scrubText } from '../observability/logger.js';
import type { DeliveryPayload } from './payload.js';

/** A clinic's delivery settings as the outbox sees them (the integrator maps the clinic file onto this). */
export interface ClinicDelivery {
  /** Shown in e-mail subjects and SMS text. */
  name: string;
  webhook: { url: string; secret: string } | null;
  email: { to: string[]; from: string | null } | null;
  /** The Twilio number (E.164) confirmations are sent from. */
  sms: { from: string } | null;
}

/** `note`: delivered, with something worth a warning (e.g. some e-mail recipients refused). */
export type SendResult = { ok: true; note?: string } | { ok: false; permanent: boolean; error: string };

export interface WebhookSender {
  send(target: { url: string; secret: string }, payload: DeliveryPayload, signal: AbortSignal): Promise<SendResult>;
}

export interface EmailSender {
  send(message: { to: readonly string[]; from: string | null; clinicName: string; payload: DeliveryPayload }, signal: AbortSignal): Promise<SendResult>;
  /** Closes the SMTP transport (idle connections). */
  close(): void;
}

export interface SmsSender {
  send(message: { to: string; from: string; body: string }, signal: AbortSignal): Promise<SendResult>;
}

export const MAX_ERROR_CHARS = 200;

/**
 * A failure's text as stored (the desk shows it) and logged: one line, E.164 numbers masked,
 * query strings dropped, the given secrets removed, at most MAX_ERROR_CHARS characters.
 */
export function safeErrorText(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= 4) out = out.split(secret).join('[secret]');
  // eslint-disable-next-line no-control-regex
  out = scrubText(out.replace(/[\u0000-\u001f\u007f]+/g, ' ')).replace(/\s+/g, ' ').trim();
  return out.length > MAX_ERROR_CHARS ? `${out.slice(0, MAX_ERROR_CHARS - 1)}…` : out;
}
