/**
 * The real TwilioRest (rest-types.ts): the official twilio client, one operation = one bounded
 * attempt. Per operation: `timeoutMs` covers everything, the SDK's 429 retries included; the
 * caller's AbortSignal rejects at once and also cancels the socket. Per client: a breaker opens
 * for 30 s after 5 consecutive outages (5xx, 429 after retries, network error, timeout). A 4xx
 * other than 429 is Twilio answering, not an outage: it fails the operation and counts as a success.
 *
 * Errors are TwilioRestError (a VetError VET_E_TWILIO_REST), message `<operation> failed: <detail>`,
 * built from our own words and numbers only (no token, SID of the account, phone number or Twilio
 * free text); `retryable` says whether trying again later may succeed.
 *
 * SMS (sendSms, the delivery outbox) has its own breaker: a Messaging outage or a burst of
 * retried confirmations never opens the breaker that live calls' transfers and hang-ups go through.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { BrokenCircuitError, ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import type { Logger } from 'pino';
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import { BUDGETS } from '../../machines/call/budgets.js';
import { VetError } from '../errors.js';
import type { TwilioMessaging, TwilioRest } from './rest-types.js';

export interface TwilioRestOptions {
  accountSid: string;
  authToken: string;
  /** Replaces `https://api.twilio.com` in every request (tests: `http://127.0.0.1:PORT`). */
  baseUrl?: string;
  /** Bound on one operation, the SDK's 429 retries included. Default 5000 (docs/design/reliability.md F9). */
  timeoutMs?: number;
  logger?: Logger;
}

export const TWILIO_REST_TIMEOUT_MS = BUDGETS.restClientMs;
/** docs/design/reliability.md F11: 5 consecutive failures → open 30 s, one half-open probe. */
export const TWILIO_REST_BREAKER = { consecutiveFailures: 5, openMs: 30_000 } as const;
/** 429 retries inside the SDK (full-jitter backoff of 200, 400, 800 ms at most; Retry-After is ignored). */
const MAX_429_RETRIES = 3;

type Operation = 'updateCallTwiml' | 'hangup' | 'startRecording' | 'sendSms';

/** Twilio Call SIDs: CA + 32 hex. Checked before use: the SDK puts the SID in the path unescaped. */
const CALL_SID = /^CA[0-9a-f]{32}$/i;
const E164 = /^\+[1-9]\d{6,14}$/;
/** Twilio's limit on a message body (it splits into segments itself). */
export const SMS_MAX_CHARS = 1600;

/**
 * Every rejection of createTwilioRest's operations. `retryable`: an outage (5xx, 429 after the SDK's
 * retries, network, timeout, breaker open) rather than Twilio refusing the request (4xx) or an
 * invalid argument. `status`: the HTTP status when Twilio answered, else null.
 */
export class TwilioRestError extends VetError {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status: number | null,
    options?: ErrorOptions,
  ) {
    super('VET_E_TWILIO_REST', message, options);
  }
}

/**
 * The signal of the operation in progress, read by the axios interceptor below. The SDK has no
 * per-request signal; AsyncLocalStorage carries it from `run()` into the SDK's request chain.
 */
const requestSignal = new AsyncLocalStorage<AbortSignal>();

/**
 * The SDK's own RequestClient, with two additions: the operation's AbortSignal reaches axios (so an
 * abort or timeout closes the socket and stops 429 retries), and with a base URL every request URI
 * (already `https://api.twilio.com/2010-04-01/...`, after edge/region) is re-rooted on it.
 */
class TwilioHttpClient extends twilio.RequestClient {
  readonly #baseUrl: string | null;

  constructor(opts: RequestClient.RequestClientOptions, baseUrl: string | null) {
    super(opts);
    this.#baseUrl = baseUrl;
    this.axios.interceptors.request.use((config) => {
      const signal = requestSignal.getStore();
      if (signal) config.signal = signal;
      return config;
    });
  }

  override request<TData>(opts: RequestClient.RequestOptions<TData>) {
    if (this.#baseUrl === null) return super.request(opts);
    const { pathname, search } = new URL(opts.uri);
    return super.request({ ...opts, uri: `${this.#baseUrl}${pathname}${search}` });
  }
}

/** A classified failure inside the breaker; `outage` decides whether the breaker counts it. */
class Failure extends Error {
  constructor(
    readonly detail: string,
    readonly outage: boolean,
    options: ErrorOptions,
    readonly status: number | null = null,
  ) {
    super(detail, options);
  }
}

type Outcome<T> = { ok: true; value: T } | { ok: false; failure: Failure };

export function createTwilioRest(opts: TwilioRestOptions): TwilioRest & TwilioMessaging {
  const timeoutMs = opts.timeoutMs ?? TWILIO_REST_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new VetError('VET_E_CONFIG', 'Twilio REST timeoutMs must be a positive integer');
  }
  if (!/^AC[0-9a-f]{32}$/i.test(opts.accountSid)) {
    throw new VetError('VET_E_CONFIG', 'Twilio account SID must be AC followed by 32 hex digits');
  }
  if (opts.authToken === '') throw new VetError('VET_E_CONFIG', 'Twilio auth token is empty');
  const baseUrl = opts.baseUrl === undefined ? null : parseBaseUrl(opts.baseUrl);
  const log = opts.logger;

  // With `httpClient` given, the client's own timeout/autoRetry/maxRetries options are ignored
  // (BaseTwilio builds a RequestClient only when none is passed): they belong here.
  const httpClient = new TwilioHttpClient(
    { timeout: timeoutMs, autoRetry: true, maxRetries: MAX_429_RETRIES },
    baseUrl,
  );
  const client = twilio(opts.accountSid, opts.authToken, { httpClient });

  const newBreaker = (provider: string) => {
    const b = circuitBreaker(
      handleWhen((e) => e instanceof Failure && e.outage),
      {
        halfOpenAfter: TWILIO_REST_BREAKER.openMs,
        breaker: new ConsecutiveBreaker(TWILIO_REST_BREAKER.consecutiveFailures),
      },
    );
    b.onBreak(() => log?.error({ provider }, 'twilio rest breaker open'));
    b.onHalfOpen(() => log?.info({ provider }, 'twilio rest breaker half-open'));
    b.onReset(() => log?.info({ provider }, 'twilio rest breaker closed'));
    return b;
  };
  const callBreaker = newBreaker('twilio-rest');
  const smsBreaker = newBreaker('twilio-messaging');
  type Breaker = typeof callBreaker;

  /** A call operation: the CallSid checked, then run on the calls' breaker. */
  function onCall<T>(op: Operation, callSid: string, signal: AbortSignal, call: () => Promise<T>): Promise<T> {
    if (!CALL_SID.test(callSid)) return Promise.reject(new TwilioRestError(`${op} failed: invalid CallSid`, false, null));
    return run(op, callBreaker, { callSid }, signal, call);
  }

  async function run<T>(op: Operation, breaker: Breaker, context: { callSid?: string }, signal: AbortSignal, call: () => Promise<T>): Promise<T> {
    if (signal.aborted) throw cancelled(op, signal);
    const deadline = AbortSignal.timeout(timeoutMs);
    const attemptSignal = AbortSignal.any([signal, deadline]);

    const guarded = breaker.execute(async (): Promise<Outcome<T>> => {
      try {
        const value = await raceAbort(requestSignal.run(attemptSignal, call), attemptSignal);
        return { ok: true, value };
      } catch (err) {
        if (signal.aborted) throw err; // not a Failure: the breaker neither counts nor resets
        const failure = deadline.aborted
          ? new Failure(`timeout after ${timeoutMs} ms`, true, { cause: deadline.reason })
          : classify(err);
        if (failure.outage) throw failure;
        return { ok: false, failure };
      }
    });

    let outcome: Outcome<T>;
    try {
      // Also bounds the wait behind a half-open probe, which cockatiel runs without our signal.
      outcome = await raceAbort(guarded, attemptSignal);
    } catch (err) {
      if (signal.aborted) throw cancelled(op, signal);
      const failure =
        err instanceof Failure ? err
        : err instanceof BrokenCircuitError ? new Failure('circuit open', false, { cause: err })
        : deadline.aborted ? new Failure(`timeout after ${timeoutMs} ms`, true, { cause: deadline.reason })
        : classify(err);
      throw fail(op, context, failure);
    }
    if (!outcome.ok) throw fail(op, context, outcome.failure);
    return outcome.value;
  }

  function fail(op: Operation, context: { callSid?: string }, failure: Failure): TwilioRestError {
    log?.warn({ provider: 'twilio-rest', op, ...context, detail: failure.detail }, 'twilio rest request failed');
    // Retryable: an outage, or the breaker open (it closes again).
    const retryable = failure.outage || failure.cause instanceof BrokenCircuitError;
    return new TwilioRestError(`${op} failed: ${failure.detail}`, retryable, failure.status, { cause: failure.cause });
  }

  return {
    async updateCallTwiml(callSid, twiml, signal) {
      await onCall('updateCallTwiml', callSid, signal, () => client.calls(callSid).update({ twiml }));
    },
    async hangup(callSid, signal) {
      await onCall('hangup', callSid, signal, () => client.calls(callSid).update({ status: 'completed' }));
    },
    async startRecording(callSid, statusCallbackUrl, signal) {
      const recording = await onCall('startRecording', callSid, signal, () =>
        client.calls(callSid).recordings.create({
          recordingChannels: 'dual',
          recordingStatusCallback: statusCallbackUrl,
          recordingStatusCallbackEvent: ['completed'],
        }),
      );
      const sid: unknown = recording.sid;
      if (typeof sid !== 'string' || !/^RE[0-9a-f]{32}$/i.test(sid)) {
        throw new TwilioRestError('startRecording failed: response without a Recording SID', false, null);
      }
      return { recordingSid: sid };
    },
    async sendSms(to, from, body, signal) {
      // Checked here so a bad value is refused without a request, and named without being echoed.
      const invalid =
        !E164.test(to) ? 'invalid To number'
        : !E164.test(from) ? 'invalid From number'
        : body.trim() === '' ? 'empty body'
        : body.length > SMS_MAX_CHARS ? `body over ${SMS_MAX_CHARS} characters`
        : null;
      if (invalid !== null) throw new TwilioRestError(`sendSms failed: ${invalid}`, false, null);
      const message = await run('sendSms', smsBreaker, {}, signal, () => client.messages.create({ to, from, body }));
      const sid: unknown = message.sid;
      if (typeof sid !== 'string' || !/^(SM|MM)[0-9a-f]{32}$/i.test(sid)) {
        // Twilio answered 2xx: the message may well be queued, so this is not worth a retry (a duplicate SMS).
        throw new TwilioRestError('sendSms failed: response without a Message SID', false, null);
      }
      return { messageSid: sid };
    },
  };
}

function parseBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new VetError('VET_E_CONFIG', 'Twilio REST baseUrl is not a URL');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '') {
    throw new VetError('VET_E_CONFIG', 'Twilio REST baseUrl must be an http(s) origin, optionally with a path');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function cancelled(op: Operation, signal: AbortSignal): TwilioRestError {
  return new TwilioRestError(`${op} cancelled`, true, null, { cause: signal.reason });
}

/**
 * An SDK rejection → Failure. RestException and TwilioServiceException carry the HTTP status and
 * Twilio's code; everything else is transport. Axios errors hold the request config, Authorization
 * header included (the token, base64): they never become a cause, only their code is kept.
 */
function classify(err: unknown): Failure {
  const e = (typeof err === 'object' && err !== null ? err : {}) as {
    status?: unknown;
    code?: unknown;
    isAxiosError?: unknown;
    name?: unknown;
  };
  if (e.isAxiosError !== true && typeof e.status === 'number') {
    const code = typeof e.code === 'number' && e.code > 0 ? ` ${e.code}` : '';
    const outage = e.status === 429 || e.status >= 500;
    return new Failure(`HTTP ${e.status}${code}`, outage, { cause: err }, e.status);
  }
  if (e.isAxiosError === true) {
    const code = typeof e.code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(e.code) ? e.code : 'ERROR';
    const cause = Object.assign(new Error(`network ${code}`), { code });
    return new Failure(`network ${code}`, true, { cause });
  }
  const name = typeof e.name === 'string' && /^\w+$/.test(e.name) ? e.name : 'error';
  return new Failure(`unexpected ${name}`, true, { cause: err });
}

/**
 * `work`, or a rejection as soon as the signal aborts; `work` is never left unobserved. Callers
 * tell abort from deadline by which signal fired, not by this rejection.
 */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      const reason: unknown = signal.reason;
      reject(reason instanceof Error ? reason : new Error('aborted', { cause: reason }));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
  });
}
