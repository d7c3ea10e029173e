/**
 * GET /desk: the front-desk inbox, where clinic staff work through what calls left for them
 * (appointment and refill requests, messages, emergencies), and its JSON API. Self-hosted like the
 * inspector: plain HTML/CSS/JS from ./public, nothing from a CDN. docs/desk.md is the user guide.
 *
 * | route                                          | what                                                   |
 * |------------------------------------------------|--------------------------------------------------------|
 * | GET   /desk                                    | the page (or, with tokens and no session, the sign-in form) |
 * | POST  /desk/login, /desk/logout                | set / clear the session cookie                         |
 * | GET   /desk/assets/:name                       | desk.js, desk.css                                      |
 * | GET   /desk/api/session                        | who am I: scope, clinic, clinics, features             |
 * | GET   /desk/api/followups                      | the list (`status`, `type`, `from`, `to`, `clinic`, `limit`) |
 * | GET   /desk/api/followups/:id                  | one follow-up, its call (summary, transcript, recordings) and deliveries |
 * | PATCH /desk/api/followups/:id                  | `{ status?, note?, handledBy? }`                       |
 * | GET   /desk/api/events                         | Server-Sent Events: `followups` when the scope's data changed |
 * | GET   /desk/api/recordings/:callSid/:recordingSid | a call recording's audio (only with `fetchRecording`) |
 *
 * Access and scopes: see access.ts. A clinic's token sees only its clinic: another clinic's ids
 * answer exactly like unknown ones (404). Logs carry ids and codes, never numbers, names or words.
 */
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import formbody from '@fastify/formbody';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ErrorCode } from '../errors.js';
import { refuseLocalOnly } from '../http/dev-gate.js';
import { createLoginLimiter, LOGIN_LIMIT, type SharedLimitStore } from '../http/login-limit.js';
import { FOLLOW_UP_STATUSES, type FollowUp, type FollowUpStatus, type FollowUpStore } from '../store/types.js';
import {
  authenticate,
  deskClearedCookie,
  deskSessionCookie,
  deskSessionValue,
  originAllowed,
  scopeClinic,
  scopeOfToken,
  scopeSees,
  type DeskAccess,
  type DeskAuth,
  type DeskScope,
} from './access.js';
import type { DeskEvents } from './events.js';
import { HANDLED_BY_MAX, NOTE_MAX, parseChange, parseListQuery, validId, type ListFilter } from './validate.js';
import { deskOrder, followUpDetail, followUpViews } from './views.js';

export const DESK_PATH = '/desk';

export interface DeskDeps {
  store: FollowUpStore;
  access: DeskAccess;
  events: DeskEvents;
  clinicName(id: string): string | null;
  /** Optional: stream a call recording's audio for the page's link; absent → no link shown. */
  fetchRecording?(recordingSid: string, signal: AbortSignal): Promise<{ body: Buffer; contentType: string }>;
  logger: Logger;
  /** Production → the Secure cookie flag (also set whenever the request came over https). */
  secureCookies: boolean;
  /** Server-Sent Events limits; defaults in DESK_SSE_DEFAULTS (tests shorten them). */
  sse?: { maxClients?: number; heartbeatMs?: number };
  /** REDIS_URL: failed sign-ins counted across instances (http/login-limit.ts). */
  loginLimitStore?: SharedLimitStore;
}

export const DESK_SSE_DEFAULTS = {
  /** Open event streams per process; the next one is answered 503 VET_E_DESK_BUSY. */
  maxClients: 100,
  /** A comment line this often keeps proxies from closing an idle stream. */
  heartbeatMs: 15_000,
  /** A client that stopped reading is dropped once this much is queued for it. */
  maxQueuedBytes: 64 * 1024,
} as const;

/** A recording fetch (Twilio's media) gives up after this. */
const RECORDING_TIMEOUT_MS = 30_000;

const PUBLIC_DIR = new URL('./public/', import.meta.url);
const ASSETS: Record<string, string> = {
  'desk.js': 'text/javascript; charset=utf-8',
  'desk.css': 'text/css; charset=utf-8',
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; media-src 'self'; " +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  // Not `no-referrer`: Chromium then sends `Origin: null` on the sign-in form's POST, which the
  // origin check could not tell from a sandboxed attacker. Nothing leaves for other sites either way.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
} as const;

const OPEN_BANNER =
  '<div class="dk-banner" id="open-banner" role="alert"><strong>development: open to anyone.</strong> ' +
  'No desk token is configured, so every clinic is shown without signing in. Set a clinic\'s <code>desk.tokenEnv</code> or <code>INSPECTOR_TOKEN</code>.</div>';

const LoginBody = z.object({ token: z.string().max(512) });

const MESSAGES = {
  auth: 'Send Authorization: Bearer <your clinic\'s desk token> (or the operator\'s INSPECTOR_TOKEN), or sign in at /desk.',
  origin: 'Cross-site request refused: change follow-ups from the desk page itself, or use Authorization: Bearer <token> without a cookie.',
  notFound: 'No follow-up with this id for your clinic.',
  recordingNotFound: 'No such recording for your clinic.',
  busy: 'Too many live desk pages are open on this server; close some, the page retries by itself.',
  tooManyFailures: 'Too many wrong tokens from your address: try again later.',
  clinicParam: 'clinic= is for the operator token only; a clinic token always sees its own clinic.',
  id: 'The id must be 1–64 letters, digits, dashes or underscores.',
  json: 'Send JSON with Content-Type: application/json.',
} as const;

const isJson = (req: FastifyRequest) => /^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '');

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(message: string | null): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Vetline front desk: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="${DESK_PATH}/assets/desk.css"></head>
<body class="dk-login"><form method="post" action="${DESK_PATH}/login" class="dk-login-form"><h1>Vetline front desk</h1>
<label for="token">Your clinic's desk token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
${message ? `<p class="dk-error" role="alert">${escapeHtml(message)}</p>` : ''}<button type="submit" class="dk-primary">Sign in</button>
<p class="dk-hint">Ask whoever set up Vetline for your clinic for the token.</p></form></body></html>`;
}

/** `{ code, message }`: the code is stable (docs/errors.md), the message says what to do. */
function fail(reply: FastifyReply, status: number, code: ErrorCode, message: string) {
  return reply.code(status).send({ code, message });
}

const OPEN: readonly FollowUpStatus[] = ['new', 'in_progress'];

/** The store's queries for a filter and a scope, merged in the desk's order. */
async function listFor(store: FollowUpStore, scope: DeskScope, filter: ListFilter): Promise<FollowUp[]> {
  const clinicId = scopeClinic(scope) ?? filter.clinic;
  const base = {
    clinicId,
    limit: filter.limit,
    ...(filter.type ? { type: filter.type } : {}),
    ...(filter.from !== null ? { from: filter.from } : {}),
    ...(filter.to !== null ? { to: filter.to } : {}),
  };
  // One query per status, each limited: within one status the store's order is the desk's, so the
  // merged top `limit` is exact (done ones after every open one, which one store order cannot say).
  const statuses = filter.status === 'open' ? OPEN : filter.status === 'all' ? FOLLOW_UP_STATUSES : [filter.status];
  const lists = await Promise.all(statuses.map((status) => store.listFollowUps({ ...base, status })));
  // Defence in depth: a clinic scope never returns another clinic's row, whatever the store did.
  const rows = lists.flat().filter((f) => scopeSees(scope, f.clinicId));
  return rows.sort(deskOrder).slice(0, filter.limit);
}

export async function registerDesk(app: FastifyInstance, deps: DeskDeps): Promise<void> {
  const { access } = deps;
  if (access.mode === 'disabled') {
    deps.logger.info({ desk: 'disabled' }, 'front desk disabled: production without any desk token or INSPECTOR_TOKEN');
    return;
  }
  const sse = { ...DESK_SSE_DEFAULTS, ...deps.sse };
  const template = await readFile(new URL('index.html', PUBLIC_DIR), 'utf8');
  const page = template.replace('<!--BANNER-->', () => (access.mode === 'open' ? OPEN_BANNER : ''));
  const assets = new Map<string, { body: string; type: string }>();
  for (const [name, type] of Object.entries(ASSETS)) assets.set(name, { body: await readFile(new URL(name, PUBLIC_DIR), 'utf8'), type });

  const auths = new WeakMap<FastifyRequest, DeskAuth>();
  const authOf = (req: FastifyRequest): DeskAuth => {
    const auth = auths.get(req);
    if (!auth) throw new Error('desk route without its guard');
    return auth;
  };
  const streams = new Set<ServerResponse>();
  const recordingsAvailable = deps.fetchRecording !== undefined;
  const clinicName = (id: string) => deps.clinicName(id);
  const secure = (req: FastifyRequest) => deps.secureCookies || req.protocol === 'https';

  // Open event streams would keep app.close() waiting: end them first.
  app.addHook('preClose', (done) => {
    for (const res of streams) res.end();
    streams.clear();
    done();
  });

  await app.register(async (scope) => {
    if (!scope.hasContentTypeParser('application/x-www-form-urlencoded')) await scope.register(formbody);
    scope.addHook('onRequest', (_req, reply, next) => {
      reply.headers(SECURITY_HEADERS);
      next();
    });
    scope.setErrorHandler((error: FastifyError, req, reply) => {
      const status = typeof error.statusCode === 'number' ? error.statusCode : 500;
      if (status >= 400 && status < 500) {
        req.log.info({ code: 'VET_E_BAD_REQUEST', statusCode: status, fastifyCode: error.code }, 'desk request rejected');
        if (status === 413) return fail(reply, 413, 'VET_E_BODY_TOO_LARGE', 'The request body is too large.');
        if (status === 415) return fail(reply, 415, 'VET_E_BAD_REQUEST', MESSAGES.json);
        return fail(reply, status, 'VET_E_BAD_REQUEST', 'The request body is not valid JSON.');
      }
      req.log.error({ err: error, code: 'VET_E_INTERNAL' }, 'desk request failed');
      return fail(reply, 500, 'VET_E_INTERNAL', 'Unexpected error; the details are in the server log.');
    });

    const logins = await createLoginLimiter(scope, LOGIN_LIMIT, deps.loginLimitStore);
    const opts = { config: { rateLimit: false as const } };
    /** Open mode: the development convenience refused to this request (a proxy, another host), or null. */
    const refusedLocally = (req: FastifyRequest) => (access.mode === 'open' ? access.gate.check(req) : null);
    /** Every API route: a valid token or session (401 otherwise), and for mutations the origin check. */
    const guard = async (req: FastifyRequest, reply: FastifyReply) => {
      const refused = refusedLocally(req);
      if (refused !== null) return refuseLocalOnly(req, reply, refused);
      const auth = authenticate(access, req);
      if (!auth) {
        reply.header('www-authenticate', 'Bearer realm="vetline-desk"');
        return fail(reply, 401, 'VET_E_DESK_AUTH', MESSAGES.auth);
      }
      if (req.method !== 'GET' && req.method !== 'HEAD' && !originAllowed(req, auth.via)) {
        req.log.warn({ code: 'VET_E_DESK_AUTH', via: auth.via }, 'desk cross-site request refused');
        return fail(reply, 403, 'VET_E_DESK_AUTH', MESSAGES.origin);
      }
      auths.set(req, auth);
      return undefined;
    };
    const guarded = { ...opts, onRequest: guard };
    /** The webhooks' 16 KiB whatever the app's default: a 2000-character note is at most 8 KB of UTF-8. */
    const bodyLimit = 16 * 1024;

    scope.get(DESK_PATH, opts, async (req, reply) => {
      const refused = refusedLocally(req);
      if (refused !== null) return refuseLocalOnly(req, reply, refused);
      if (!authenticate(access, req)) return reply.code(401).type('text/html; charset=utf-8').send(loginPage(null));
      return reply.type('text/html; charset=utf-8').send(page);
    });

    scope.post(`${DESK_PATH}/login`, { ...opts, bodyLimit }, async (req, reply) => {
      if (access.mode !== 'token') return reply.redirect(DESK_PATH, 303);
      if (!originAllowed(req, 'login')) {
        req.log.warn({ code: 'VET_E_DESK_AUTH', ip: req.ip }, 'desk cross-site sign-in refused');
        return fail(reply, 403, 'VET_E_DESK_AUTH', MESSAGES.origin);
      }
      const json = isJson(req);
      const retryAfterS = await logins.blockedFor(req);
      if (retryAfterS !== null) {
        req.log.info({ code: 'VET_E_RATE_LIMITED', ip: req.ip }, 'desk sign-in blocked: too many failures');
        reply.header('retry-after', retryAfterS);
        if (json) return fail(reply, 429, 'VET_E_RATE_LIMITED', MESSAGES.tooManyFailures);
        return reply.code(429).type('text/html; charset=utf-8').send(loginPage(MESSAGES.tooManyFailures));
      }
      const form = LoginBody.safeParse(req.body);
      const found = form.success ? scopeOfToken(access, form.data.token.trim()) : null;
      if (!form.success || !found) {
        await logins.failed(req);
        req.log.warn({ code: 'VET_E_DESK_AUTH', ip: req.ip }, 'desk sign-in refused');
        if (json) return fail(reply, 401, 'VET_E_DESK_AUTH', 'That token is not a desk token of this server.');
        return reply.code(401).type('text/html; charset=utf-8').send(loginPage('That token is not right.'));
      }
      req.log.info({ scope: found.kind, clinicId: scopeClinic(found) }, 'desk sign-in');
      reply.header('set-cookie', deskSessionCookie(deskSessionValue(access, found), secure(req)));
      return json ? reply.code(204).send() : reply.redirect(DESK_PATH, 303);
    });

    // Signing out ends the session on the server too (a copy of the cookie is worth nothing after it).
    scope.post(`${DESK_PATH}/logout`, opts, async (req, reply) => {
      if (!originAllowed(req, 'login')) return fail(reply, 403, 'VET_E_DESK_AUTH', MESSAGES.origin);
      const session = authenticate(access, req)?.session;
      if (session && access.mode === 'token') access.sessions.revoke(session);
      return reply.header('set-cookie', deskClearedCookie).redirect(DESK_PATH, 303);
    });

    scope.get<{ Params: { name: string } }>(`${DESK_PATH}/assets/:name`, opts, async (req, reply) => {
      // Static code and styles only (no data): served to the sign-in page too.
      const asset = assets.get(req.params.name);
      if (!asset) return fail(reply, 404, 'VET_E_NOT_FOUND', 'No such asset.');
      return reply.type(asset.type).send(asset.body);
    });

    scope.get(`${DESK_PATH}/api/session`, guarded, (req) => {
      const { scope: s } = authOf(req);
      const clinicId = scopeClinic(s);
      const known = access.mode === 'token' ? [...access.clinicTokens.keys()] : [];
      return {
        access: access.mode,
        scope: s.kind,
        clinic: clinicId === null ? null : { id: clinicId, name: clinicName(clinicId) },
        clinics: clinicId === null ? known.map((id) => ({ id, name: clinicName(id) })) : [],
        recordings: recordingsAvailable,
        limits: { note: NOTE_MAX, handledBy: HANDLED_BY_MAX },
      };
    });

    scope.get(`${DESK_PATH}/api/followups`, guarded, async (req, reply) => {
      const { scope: s } = authOf(req);
      const filter = parseListQuery(req.query);
      if (!filter.ok) return fail(reply, 400, 'VET_E_BAD_REQUEST', filter.message);
      if (s.kind === 'clinic' && filter.value.clinic !== null && filter.value.clinic !== s.clinicId) {
        return fail(reply, 400, 'VET_E_BAD_REQUEST', MESSAGES.clinicParam);
      }
      const rows = await listFor(deps.store, s, filter.value);
      return { followUps: await followUpViews(deps.store, rows, clinicName) };
    });

    /** The follow-up if this scope may see it; null otherwise (unknown and foreign look the same). */
    const visible = async (s: DeskScope, id: string): Promise<FollowUp | null> => {
      const f = await deps.store.getFollowUp(id);
      return f !== null && scopeSees(s, f.clinicId) ? f : null;
    };

    scope.get<{ Params: { id: string } }>(`${DESK_PATH}/api/followups/:id`, guarded, async (req, reply) => {
      const { scope: s } = authOf(req);
      if (!validId(req.params.id)) return fail(reply, 400, 'VET_E_BAD_REQUEST', MESSAGES.id);
      const f = await visible(s, req.params.id);
      if (!f) return fail(reply, 404, 'VET_E_NOT_FOUND', MESSAGES.notFound);
      return followUpDetail(deps.store, f, clinicName, recordingsAvailable);
    });

    scope.patch<{ Params: { id: string } }>(`${DESK_PATH}/api/followups/:id`, { ...guarded, bodyLimit }, async (req, reply) => {
      const { scope: s } = authOf(req);
      if (!validId(req.params.id)) return fail(reply, 400, 'VET_E_BAD_REQUEST', MESSAGES.id);
      // JSON only: a form body (which the app may parse for webhooks) never changes a follow-up.
      if (!isJson(req)) return fail(reply, 415, 'VET_E_BAD_REQUEST', MESSAGES.json);
      const change = parseChange(req.body);
      if (!change.ok) return fail(reply, 400, 'VET_E_BAD_REQUEST', change.message);
      // The store enforces the clinic too: a clinic token cannot change another clinic's row.
      const updated = await deps.store.updateFollowUp(req.params.id, scopeClinic(s), change.value, Date.now());
      if (!updated || !scopeSees(s, updated.clinicId)) return fail(reply, 404, 'VET_E_NOT_FOUND', MESSAGES.notFound);
      req.log.info({ followUpId: updated.id, clinicId: updated.clinicId, status: updated.status, noted: change.value.note !== undefined }, 'desk follow-up changed');
      deps.events.publish(updated.clinicId);
      const [view] = await followUpViews(deps.store, [updated], clinicName);
      return view;
    });

    // No HEAD twin: it would hold a stream open that can never carry an event.
    scope.get(`${DESK_PATH}/api/events`, { ...guarded, exposeHeadRoute: false }, (req, reply) => {
      const { scope: s } = authOf(req);
      if (streams.size >= sse.maxClients) {
        req.log.warn({ code: 'VET_E_DESK_BUSY', streams: streams.size }, 'desk event stream refused');
        reply.header('retry-after', '30');
        return fail(reply, 503, 'VET_E_DESK_BUSY', MESSAGES.busy);
      }
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', connection: 'close', 'x-accel-buffering': 'no' });
      streams.add(res);
      const write = (chunk: string) => {
        if (res.writableEnded || res.destroyed) return;
        if (res.writableLength > sse.maxQueuedBytes) {
          req.log.info('desk event stream dropped: the page stopped reading');
          res.destroy();
          return;
        }
        res.write(chunk);
      };
      write(`retry: 3000\nevent: ready\ndata: ${JSON.stringify({ scope: s.kind })}\n\n`);
      const off = deps.events.subscribe((clinicId) => {
        if (scopeSees(s, clinicId)) write(`event: followups\ndata: ${JSON.stringify({ clinicId })}\n\n`);
      });
      const heartbeat = setInterval(() => write(': heartbeat\n\n'), sse.heartbeatMs).unref();
      const cleanup = () => {
        clearInterval(heartbeat);
        off();
        streams.delete(res);
      };
      res.on('close', cleanup);
      res.on('error', (err) => req.log.debug({ err }, 'desk event stream error'));
      return reply;
    });

    scope.get<{ Params: { callSid: string; recordingSid: string } }>(
      `${DESK_PATH}/api/recordings/:callSid/:recordingSid`,
      guarded,
      async (req, reply) => {
        const { scope: s } = authOf(req);
        const { callSid, recordingSid } = req.params;
        if (!validId(callSid) || !validId(recordingSid)) return fail(reply, 400, 'VET_E_BAD_REQUEST', MESSAGES.id);
        if (!deps.fetchRecording) return fail(reply, 404, 'VET_E_NOT_FOUND', MESSAGES.recordingNotFound);
        const summary = await deps.store.getCallSummary(callSid);
        if (!summary || !scopeSees(s, summary.clinicId) || !summary.recordings.some((r) => r.recordingSid === recordingSid)) {
          return fail(reply, 404, 'VET_E_NOT_FOUND', MESSAGES.recordingNotFound);
        }
        const gone = new AbortController();
        req.raw.on('close', () => gone.abort());
        let audio: { body: Buffer; contentType: string };
        try {
          audio = await deps.fetchRecording(recordingSid, AbortSignal.any([gone.signal, AbortSignal.timeout(RECORDING_TIMEOUT_MS)]));
        } catch (err) {
          req.log.warn({ err, code: 'VET_E_TWILIO_REST', callSid, recordingSid }, 'desk recording fetch failed');
          return fail(reply, 502, 'VET_E_TWILIO_REST', 'The recording could not be fetched from Twilio; try again in a minute.');
        }
        const type = /^audio\/[\w.+-]+$/i.test(audio.contentType) ? audio.contentType : 'application/octet-stream';
        return reply.type(type).header('content-disposition', `inline; filename="${recordingSid}"`).send(audio.body);
      },
    );
  });

  deps.logger.info({ desk: access.mode, clinics: access.mode === 'token' ? access.clinicTokens.size : null }, `front desk at ${DESK_PATH}`);
}
