/**
 * Plays Twilio's side of webhook signing with the real package (docs/design/twilio.md §5): tests sign exactly
 * as Twilio does, production checks stay on. Default import only: the named ESM import throws.
 */
import twilio from 'twilio';
import type { InjectOptions } from 'fastify';

export type FormParams = Record<string, string | string[]>;

/** `application/x-www-form-urlencoded` body; array values become repeated fields. */
export function formBody(params: FormParams): string {
  const body = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) body.append(key, v);
  }
  return body.toString();
}

export interface SignedFormOptions {
  /** PUBLIC_BASE_URL of the app under test, e.g. `https://voice.test`. */
  baseUrl: string;
  token: string;
  /** Path (and query) requested, e.g. `/twilio/dtmf?attempt=1`. */
  path: string;
  params: FormParams;
  /** Extra or overriding headers (e.g. a forged `x-forwarded-host`). */
  headers?: Record<string, string>;
  /** Sign this URL instead of `baseUrl + path` (wrong-URL negatives). */
  signUrl?: string;
  /** Sign these params instead of the ones sent (tampering negatives). */
  signParams?: FormParams;
  /** Client address seen by the app (rate-limit tests). */
  remoteAddress?: string;
}

/** `app.inject()` options for a POST signed like Twilio signs it. */
export function signedForm(opts: SignedFormOptions): InjectOptions {
  const signature = twilio.getExpectedTwilioSignature(
    opts.token,
    opts.signUrl ?? opts.baseUrl + opts.path,
    opts.signParams ?? opts.params,
  );
  return {
    method: 'POST',
    url: opts.path,
    payload: formBody(opts.params),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': signature,
      ...opts.headers,
    },
    ...(opts.remoteAddress ? { remoteAddress: opts.remoteAddress } : {}),
  };
}

/** X-Twilio-Signature of a Media Stream upgrade: the `wss://` URL with empty params. */
export function wsSignature(baseUrl: string, token: string, path: string): string {
  return twilio.getExpectedTwilioSignature(token, baseUrl.replace(/^https:/, 'wss:') + path, {});
}
