/**
 * Twilio webhook routes (docs/design/twilio.md §1, §2; docs/design/architecture.md §7). Every webhook runs:
 * form content type (415, before the body is read) → body limit (413) → signature (403, empty body;
 * only these failures count toward the per-IP limiter) → zod on the form (400) → AccountSid (403) →
 * tenant from the signed `To` only (F16). Routes reach calls only through `CallRegistry`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteShorthandOptions } from 'fastify';
import rateLimit, { normalizeIP } from '@fastify/rate-limit';
import { z } from 'zod';
import { openAt } from '../config/hours.js';
import type { Tenant } from '../config/tenant.schema.js';
import type { CallerVerdict } from '../calls/caller-limits.js';
import type { CallListing, OpenCallResult } from '../calls/types.js';
import { identifiableCaller } from '../twilio/caller-id.js';
import type { ErrorCode } from '../errors.js';
import { SIGNATURE_HEADER, originOf, verifyWebhook, webSocketOrigin } from '../twilio/signature.js';
import { sameSid } from '../twilio/sid.js';
import {
  MENU_MAX_ATTEMPTS, TWILIO_PATHS, busyTwiml, callerLimitedTwiml, dialResultTwiml, hangupTwiml, menuActionFor, menuResultTwiml,
  notInServiceTwiml, streamTwiml, unavailableTwiml,
} from '../twilio/twiml.js';
import { createDevGate, deny } from './dev-gate.js';
import { SERVER_TIMEOUTS, type EdgeDeps } from './edge.js';

// ---------- form schemas: strings only (a repeated field arrives as an array → 400), unknown keys ignored ----------

const FormFields = z.record(z.string(), z.string());
const sid = (prefix: string) => z.string().regex(new RegExp(`^${prefix}[0-9a-fA-F]{32}$`));
const CallSid = sid('CA');
const AccountSid = sid('AC');
const Phone = z.string().min(1).max(64);
const Short = z.string().max(64);

const VoiceForm = z.object({ CallSid, AccountSid, To: Phone, From: Phone.optional() });
const DtmfForm = z.object({ CallSid, AccountSid: AccountSid.optional(), To: Phone, Digits: Short.optional() });
const DialForm = z.object({ CallSid, AccountSid: AccountSid.optional(), To: Phone, DialCallStatus: Short.optional() });
const StatusForm = z.object({
  CallSid, AccountSid: AccountSid.optional(), CallStatus: Short.optional(), SequenceNumber: Short.optional(),
  // <Stream statusCallback> posts these instead of CallStatus (docs/design/twilio.md §1.3).
  StreamEvent: Short.optional(), StreamSid: Short.optional(), StreamError: z.string().max(1000).optional(),
});
const RecordingForm = z.object({
  CallSid, AccountSid: AccountSid.optional(), RecordingSid: sid('RE'), RecordingStatus: Short.min(1),
  RecordingUrl: z.string().max(2000).optional(), RecordingDuration: Short.optional(), RecordingChannels: Short.optional(),
});
const MenuQuery = z.object({ attempt: z.string().regex(/^\d{1,2}$/).optional(), last: z.literal('1').optional() });

function parseForm<S extends z.ZodType>(schema: S, body: unknown): z.output<S> | null {
  const strings = FormFields.safeParse(body ?? {});
  if (!strings.success) return null;
  const parsed = schema.safeParse(strings.data);
  return parsed.success ? parsed.data : null;
}

const intOrNull = (s: string | undefined) => (s !== undefined && /^\d{1,9}$/.test(s) ? Number(s) : null);

// ---------- replies ----------

const xml = (reply: FastifyReply, twiml: string) => reply.code(200).type('text/xml').send(twiml);
const empty = (reply: FastifyReply) => reply.code(200).send();
const refuse = (reply: FastifyReply, status: number, code: ErrorCode) => reply.code(status).send({ code });

// ---------- failed-signature limiter ----------

type Verdict = { kind: 'counted' } | { kind: 'limited'; retryAfterS: number } | { kind: 'banned'; retryAfterS: number; fresh: boolean };

/**
 * Only failed signatures count, so genuine Twilio traffic (wide shared cloud ranges, F16; or every
 * request from the load balancer's IP if trustProxy is wrong) is never throttled: a request is
 * validated first, and the limiter is consulted only once it has failed. @fastify/rate-limit supports
 * this directly via `createRateLimit()` (count on failure; `{ increment: false }` to peek), with its
 * bounded LRU store and IPv6 /64 keying. Two windows:
 *  - per minute: `maxFailuresPerMinute` failures answered 403 (empty), then 429 VET_E_RATE_LIMITED;
 *  - strikes over `banMinutes`: after another `maxFailuresPerMinute` failures answered 429, the address
 *    is banned (403 VET_E_RATE_LIMITED); each further failure renews the ban (`continueExceeding`).
 * With REDIS_URL the counts live in Redis (the plugin's Redis store), shared by every instance. Its
 * children made by `createRateLimit` share one key prefix, so each window names its own keys; and a
 * Redis error counts nothing (`skipOnError`): the request is still refused for its bad signature.
 */
async function createFailureGate(scope: FastifyInstance, cfg: EdgeDeps['rateLimit'], redis: EdgeDeps['rateLimitRedis']) {
  await scope.register(rateLimit, { global: false, ...(redis ? { redis: redis.client, nameSpace: redis.nameSpace, skipOnError: true } : {}) });
  const keyed = (window: string) => ({ keyGenerator: (req: FastifyRequest) => `${window}:${normalizeIP(req.ip)}` });
  const perMinute = scope.createRateLimit({ max: cfg.maxFailuresPerMinute, timeWindow: 60_000, ...keyed('minute') });
  // `continueExceeding` is honoured by createRateLimit at runtime (options are merged into the store's
  // child, index.js createLimiterArgs) but missing from CreateRateLimitOptions' type.
  const strikeOptions: Parameters<FastifyInstance['createRateLimit']>[0] & { continueExceeding: boolean } = {
    max: cfg.maxFailuresPerMinute, timeWindow: cfg.banMinutes * 60_000, continueExceeding: true, ...keyed('strikes'),
  };
  const strikes = scope.createRateLimit(strikeOptions);
  const banSeconds = cfg.banMinutes * 60;
  return async (req: FastifyRequest): Promise<Verdict> => {
    const peek = await strikes(req, { increment: false });
    if (!peek.isAllowed && peek.isExceeded) {
      await strikes(req); // renews the ban window
      return { kind: 'banned', retryAfterS: banSeconds, fresh: false };
    }
    const minute = await perMinute(req);
    if (minute.isAllowed || !minute.isExceeded) return { kind: 'counted' };
    const strike = await strikes(req);
    if (!strike.isAllowed && strike.isExceeded) return { kind: 'banned', retryAfterS: banSeconds, fresh: true };
    return { kind: 'limited', retryAfterS: Math.max(1, minute.ttlInSeconds) };
  };
}

// ---------- the plugin ----------

export async function registerTwilioRoutes(app: FastifyInstance, deps: EdgeDeps): Promise<void> {
  await app.register(async (scope) => {
    const base = originOf(deps.publicBaseUrl);
    const sigCfg = { publicBaseUrl: base, authToken: deps.authToken, validation: deps.validation };
    const recordFailure = await createFailureGate(scope, deps.rateLimit, deps.rateLimitRedis);
    const devGate = deps.devGate ?? createDevGate({ mode: 'local', publicBaseUrl: base });

    /** Twilio posts forms only; refuse anything else before reading a byte of body (F6). */
    const formOnly = async (req: FastifyRequest, reply: FastifyReply) => {
      const ct = req.headers['content-type'];
      const media = typeof ct === 'string' ? (ct.split(';')[0] ?? '').trim().toLowerCase() : '';
      if (media !== 'application/x-www-form-urlencoded') return refuse(reply, 415, 'VET_E_BAD_REQUEST');
      return undefined;
    };

    const signed = async (req: FastifyRequest, reply: FastifyReply) => {
      const body: unknown = req.body;
      const params = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
      // Unsigned (development bypass) only for the requests the mode allows; the rest fail like a bad signature.
      const bypassRefused = deps.validation === 'off-development' ? devGate.check(req) : null;
      const result = bypassRefused === null ? verifyWebhook(sigCfg, { rawUrl: req.raw.url ?? '', header: req.headers[SIGNATURE_HEADER], params }) : null;
      if (result?.ok) return undefined;
      const reason = result ? result.reason : `development bypass refused (${bypassRefused})`;
      const verdict = await recordFailure(req);
      const path = req.routeOptions.url;
      switch (verdict.kind) {
        case 'counted':
          req.log.warn({ code: 'VET_E_SIGNATURE', reason, path, ip: req.ip }, 'webhook signature rejected');
          return reply.code(403).send();
        case 'limited':
          req.log.debug({ code: 'VET_E_RATE_LIMITED', path, ip: req.ip }, 'failed-signature limit exceeded');
          return refuse(reply.header('retry-after', verdict.retryAfterS), 429, 'VET_E_RATE_LIMITED');
        case 'banned':
          if (verdict.fresh) req.log.warn({ code: 'VET_E_RATE_LIMITED', ip: req.ip, banMinutes: deps.rateLimit.banMinutes }, 'address banned');
          return refuse(reply.header('retry-after', verdict.retryAfterS), 403, 'VET_E_RATE_LIMITED');
      }
    };

    // `rateLimit: false` also opts these routes out of any global limiter the lead may register.
    const webhook: RouteShorthandOptions = { onRequest: formOnly, preValidation: signed, config: { rateLimit: false } };
    const open: RouteShorthandOptions = { config: { rateLimit: false } };

    /** Configured account, then the tenant's own account when it names one. */
    const accountOk = (accountSid: string | undefined, tenant: Tenant | null) => {
      if (deps.accountSid && (accountSid === undefined || !sameSid(accountSid, deps.accountSid))) return false;
      if (tenant?.accountSid && (accountSid === undefined || !sameSid(accountSid, tenant.accountSid))) return false;
      return true;
    };
    const mismatch = (req: FastifyRequest, reply: FastifyReply) => {
      req.log.warn({ code: 'VET_E_ACCOUNT_MISMATCH', path: req.routeOptions.url }, 'webhook from another account');
      return refuse(reply, 403, 'VET_E_ACCOUNT_MISMATCH');
    };
    const badRequest = (req: FastifyRequest, reply: FastifyReply) => {
      req.log.info({ code: 'VET_E_BAD_REQUEST', path: req.routeOptions.url }, 'malformed webhook form');
      return refuse(reply, 400, 'VET_E_BAD_REQUEST');
    };
    const query = (req: FastifyRequest) => {
      const q = MenuQuery.safeParse(req.query);
      return q.success ? q.data : {};
    };

    scope.post(TWILIO_PATHS.voice, { ...webhook, handlerTimeout: SERVER_TIMEOUTS.voiceHandlerTimeoutMs }, async (req, reply) => {
      const form = parseForm(VoiceForm, req.body);
      if (!form) return badRequest(req, reply);
      if (!accountOk(form.AccountSid, null)) return mismatch(req, reply);
      const tenant = deps.tenants.byNumber(form.To);
      const log = req.log.child({ callSid: form.CallSid, tenantId: tenant?.id ?? null });
      if (!tenant) {
        log.warn({ code: 'VET_E_UNKNOWN_NUMBER', pii: { to: form.To } }, 'call for a number no clinic claims');
        return xml(reply, notInServiceTwiml());
      }
      if (!accountOk(form.AccountSid, tenant)) return mismatch(req, reply);
      const ctx = { baseUrl: base, callerId: form.To };
      let result: OpenCallResult;
      let caller: CallerVerdict = { kind: 'admitted', key: null };
      try {
        if (deps.callers) caller = await deps.callers.admit({ callSid: form.CallSid, tenant, from: identifiableCaller(form.From) });
        if (caller.kind === 'limited') {
          // Never the number: the clinic and which limit are enough to see a dialer in the logs.
          const openNow = openAt(tenant.hours, Date.now());
          log.info({ limit: caller.limit, openNow }, 'caller over the per-caller limit; front desk or key menu instead of the assistant');
          return xml(reply, callerLimitedTwiml(tenant, ctx, openNow));
        }
        result = deps.registry.open({ callSid: form.CallSid, accountSid: form.AccountSid, tenant, from: form.From ?? null, callerKey: caller.key });
      } catch (err) {
        // The caller is on the line: a 500 would play Twilio's "application error". Dial the clinic.
        log.error({ err, code: 'VET_E_INTERNAL' }, 'call admission failed; dialling the front desk');
        return xml(reply, busyTwiml(tenant, ctx));
      }
      if (result.kind === 'refused' && caller.key !== null) {
        const key = caller.key;
        await deps.callers?.release({ callSid: form.CallSid, tenant, key }).catch((err: unknown) => log.warn({ err }, 'caller slot not released'));
      }
      log.info({ outcome: result.kind }, 'incoming call');
      switch (result.kind) {
        case 'created':
        case 'awaitingStream':
          return xml(reply, streamTwiml({
            wsUrl: webSocketOrigin(base) + TWILIO_PATHS.ws,
            streamToken: result.streamToken,
            statusCallbackUrl: base + TWILIO_PATHS.status,
            parameters: { tenantId: tenant.id },
            fallback: { tenant, baseUrl: base },
          }));
        case 'alreadyConnected':
          return xml(reply, hangupTwiml());
        case 'refused':
          log.info({ reason: result.reason }, 'call refused by registry; dialling the front desk');
          return xml(reply, busyTwiml(tenant, ctx));
      }
    });

    scope.post(TWILIO_PATHS.dtmf, webhook, async (req, reply) => {
      const form = parseForm(DtmfForm, req.body);
      if (!form) return badRequest(req, reply);
      const tenant = deps.tenants.byNumber(form.To);
      if (!accountOk(form.AccountSid, tenant)) return mismatch(req, reply);
      if (!tenant) return xml(reply, unavailableTwiml());
      const q = query(req);
      const attempt = Math.min(intOrNull(q.attempt) ?? 0, MENU_MAX_ATTEMPTS);
      const digits = form.Digits ? form.Digits : null;
      const action = menuActionFor(tenant, digits)?.action ?? 'none';
      req.log.info({ callSid: form.CallSid, tenantId: tenant.id, attempt, action }, 'fallback menu');
      return xml(reply, menuResultTwiml(tenant, { digits, attempt }, { baseUrl: base, callerId: form.To }));
    });

    scope.post(TWILIO_PATHS.dial, webhook, async (req, reply) => {
      const form = parseForm(DialForm, req.body);
      if (!form) return badRequest(req, reply);
      const tenant = deps.tenants.byNumber(form.To);
      if (!accountOk(form.AccountSid, tenant)) return mismatch(req, reply);
      const dialStatus = form.DialCallStatus ?? '';
      try {
        if (!deps.registry.dialResult({ callSid: form.CallSid, dialStatus })) {
          req.log.debug({ callSid: form.CallSid, code: 'VET_E_UNKNOWN_CALL' }, 'dial result for a call the registry does not hold');
        }
      } catch (err) {
        req.log.error({ err, callSid: form.CallSid, code: 'VET_E_INTERNAL' }, 'registry.dialResult failed');
      }
      req.log.info({ callSid: form.CallSid, tenantId: tenant?.id ?? null, dialStatus }, 'dial finished');
      if (!tenant) return xml(reply, dialStatus === 'completed' ? hangupTwiml() : unavailableTwiml());
      const lastResort = query(req).last === '1';
      return xml(reply, dialResultTwiml(tenant, { dialStatus, lastResort }, { baseUrl: base, callerId: form.To }));
    });

    scope.post(TWILIO_PATHS.status, webhook, async (req, reply) => {
      const form = parseForm(StatusForm, req.body);
      if (!form) return badRequest(req, reply);
      if (!accountOk(form.AccountSid, null)) return mismatch(req, reply);
      const callSid = form.CallSid;
      if (form.StreamEvent !== undefined) {
        const fields = { callSid, streamSid: form.StreamSid ?? null, streamEvent: form.StreamEvent };
        if (form.StreamEvent === 'stream-error') {
          // The only report of a failed handshake (31920 …): tell the registry so an awaiting call can end.
          req.log.warn({ ...fields, streamError: form.StreamError ?? null }, 'stream error reported by Twilio');
          deps.registry.status({ callSid, status: 'stream-error', sequenceNumber: null });
        } else {
          req.log.info(fields, 'stream status');
        }
        return empty(reply);
      }
      if (form.CallStatus === undefined) {
        req.log.debug({ callSid }, 'status callback without CallStatus');
        return empty(reply);
      }
      const known = deps.registry.status({ callSid, status: form.CallStatus, sequenceNumber: intOrNull(form.SequenceNumber) });
      if (!known) req.log.debug({ callSid, code: 'VET_E_UNKNOWN_CALL' }, 'status for an unknown call');
      return empty(reply);
    });

    scope.post(TWILIO_PATHS.recording, webhook, async (req, reply) => {
      const form = parseForm(RecordingForm, req.body);
      if (!form) return badRequest(req, reply);
      if (!accountOk(form.AccountSid, null)) return mismatch(req, reply);
      const known = deps.registry.recording({
        callSid: form.CallSid,
        recording: {
          recordingSid: form.RecordingSid,
          status: form.RecordingStatus,
          url: form.RecordingUrl ?? null,
          durationSeconds: intOrNull(form.RecordingDuration),
          channels: intOrNull(form.RecordingChannels),
        },
      });
      if (!known) req.log.debug({ callSid: form.CallSid, code: 'VET_E_UNKNOWN_CALL' }, 'recording for an unknown call');
      return empty(reply);
    });

    scope.get(TWILIO_PATHS.health, open, (_req, reply) => reply.send({
      status: deps.draining() ? 'draining' : 'ok',
      uptimeSeconds: Math.floor(process.uptime()),
      activeCalls: deps.registry.activeCount,
      workers: deps.workers?.() ?? 1,
      version: deps.version,
      webhookValidation: deps.validation,
      providers: deps.providerHealth?.() ?? [],
      ...(deps.validation === 'off-development'
        ? { warning: 'DEVELOPMENT BYPASS: Twilio webhook signatures are NOT validated' }
        : {}),
    }));

    // Field by field, so nothing the registry might add (numbers, transcripts) leaks by accident.
    // CallSids and clinic ids are not public: 401 unless the caller may (INSPECTOR_TOKEN, see server.ts).
    // With REDIS_URL every instance's calls, each naming its `instance`; `incomplete` when Redis could not be read.
    const listed = (c: CallListing, instance?: string) => ({
      callSid: c.callSid, tenantId: c.tenantId, state: c.state, startedAt: c.startedAt,
      durationMs: c.durationMs, stateDurationMs: c.stateDurationMs, ...(instance === undefined ? {} : { instance }),
    });
    scope.get(TWILIO_PATHS.sessions, open, async (req, reply) => {
      const verdict = deps.sessionsAccess?.(req) ?? { ok: true };
      if (!verdict.ok) return deny(req, reply, verdict);
      const others = deps.otherInstances;
      const calls = deps.registry.list().map((c) => listed(c, others?.instanceId));
      if (!others) return reply.send({ calls });
      try {
        return reply.send({ calls: [...calls, ...(await others.calls()).map((c) => listed(c, c.instance))] });
      } catch (err) {
        req.log.warn({ code: 'VET_E_REDIS', err: { message: (err as Error).message } }, 'call directory unreadable; listing this instance only');
        return reply.send({ calls, incomplete: true });
      }
    });
  });
}
