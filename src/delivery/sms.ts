/**
 * SMS channel: a short confirmation to the caller through Twilio Messaging (docs/delivery.md
 * "SMS"). It goes only to the caller's own number and says only the clinic's name, what was
 * received and the pet's name: never the reason, the message, or anything else the caller said.
 * Whether the caller wanted it is decided upstream (the outbox sends what it is given).
 */
import { TwilioRestError } from '../twilio/rest.js';
import type { TwilioMessaging } from '../twilio/rest-types.js';
import type { DeliveryPayload } from './payload.js';
import { safeErrorText, type SendResult, type SmsSender } from './types.js';

export function createSmsSender(messaging: TwilioMessaging): SmsSender {
  return {
    async send({ to, from, body }, signal): Promise<SendResult> {
      try {
        await messaging.sendSms(to, from, body, signal);
        return { ok: true };
      } catch (err) {
        // TwilioRestError messages are our own words and numbers ("sendSms failed: HTTP 400 21211").
        if (err instanceof TwilioRestError) return { ok: false, permanent: !err.retryable, error: safeErrorText(err.message, [to, from]) };
        return { ok: false, permanent: false, error: 'sendSms failed: unexpected error' };
      }
    },
  };
}

const WHAT: Record<DeliveryPayload['type'], string | null> = {
  appointment_request: 'appointment request',
  refill_request: 'refill request',
  message: 'message',
  emergency: 'call',
  call_summary: null,
};

/** Clinic names (from the clinic file): letters, digits and plain punctuation. */
const CLINIC_CHARS = /[^\p{L}\p{N}\p{Zs}'’.,&()-]+/gu;
/** Pet names (what the caller said): no dots or slashes either, so nothing reads as a link. */
const PET_CHARS = /[^\p{L}\p{N}\p{Zs}'’-]+/gu;

/** Without the `disallowed` characters, on one line, at most `max` characters. */
function plain(text: string, max: number, disallowed: RegExp): string {
  const clean = text
    .replace(disallowed, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return clean.length > max ? clean.slice(0, max).trim() : clean;
}

/**
 * "Riverside Vet received your appointment request for Bella; we'll call you back." Null when the
 * payload is not something a caller is told about (a call summary).
 */
export function smsBody(payload: DeliveryPayload, clinicName: string): string | null {
  const what = WHAT[payload.type];
  if (what === null) return null;
  const clinic = plain(clinicName, 60, CLINIC_CHARS) || 'The clinic';
  const pet = payload.pet.name ? plain(payload.pet.name, 40, PET_CHARS) : '';
  const about = payload.type === 'message' ? '' : pet ? ` for ${pet}` : '';
  const subject = payload.type === 'emergency' && pet ? `call about ${pet}` : `${what}${about}`;
  return `${clinic} received your ${subject}; we'll call you back.`;
}
