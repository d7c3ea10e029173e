/**
 * GET /inspector: the call inspector page, its assets, its live WebSocket and a small JSON API.
 * Self-hosted: the page, its scripts and the statechart (visualizations/call.svg, laid out by ELK at
 * `npm run visualize`, inlined here) are served from this process; nothing comes from a CDN.
 *
 * | route                          | what                                                     |
 * |--------------------------------|----------------------------------------------------------|
 * | GET  /inspector                | the page (or, with a token and no session, the login form) |
 * | POST /inspector/login, /logout | sign in (session cookie) / out (`everywhere=1`: every session) |
 * | GET  /inspector/assets/:name   | inspector.js, inspector.css, softphone.js, softphone-worklet.js |
 * | WS   /inspector/ws             | live feed: summaries, state, updates, levels; `watch` in |
 * | WS   /inspector/xstate         | XState inspection events (@statelyai/inspect shape)      |
 * | GET  /inspector/api/calls[/:callSid] | the call list / one call's detail as JSON          |
 * | POST /inspector/api/journal    | a call journal (JSON Lines) replayed into a call's detail |
 *
 * Access rules: see access.ts; failed sign-ins are limited per address (src/http/login-limit.ts).
 * The softphone is offered only while webhook signatures are off (development or local mode without
 * TWILIO_AUTH_TOKEN): it calls /twilio/voice and /twilio/ws like Twilio would.
 */
import { readFile } from 'node:fs/promises';
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { z } from 'zod';
import type { AppConfig } from '../config/env.js';
import type { Tenant } from '../config/tenant.schema.js';
import { createDevGate, deny } from '../http/dev-gate.js';
import { createLoginLimiter, LOGIN_LIMIT, type SharedLimitStore } from '../http/login-limit.js';
import {
  checkAccess, clearedCookie, inspectorAccess, safeEqual, sameOrigin, sessionCookie, sessionOf, type InspectorAccess,
} from './access.js';
import { JournalError, parseJournal } from '../replay/replay.js';
import type { FeedClient, InspectorFeed } from './feed.js';
import { journalDetail } from './journal.js';
import { maskPhones } from './mask.js';

export const INSPECTOR_PATH = '/inspector';

export interface InspectorDeps {
  feed: InspectorFeed;
  config: Pick<AppConfig, 'nodeEnv' | 'mode' | 'publicBaseUrl' | 'inspector' | 'webhookValidation' | 'twilio'>;
  /** Built by server.ts and shared with /twilio/sessions; default: from `config`. */
  access?: InspectorAccess;
  tenants: { all(): readonly Tenant[] };
  /** The ELK-laid-out statechart; default visualizations/call.svg. */
  chartSvg?: URL;
  /** REDIS_URL: failed sign-ins counted across instances (http/login-limit.ts). */
  loginLimitStore?: SharedLimitStore;
}

const PUBLIC_DIR = new URL('./public/', import.meta.url);
const DEFAULT_SVG = new URL('../../visualizations/call.svg', import.meta.url);
const ASSETS: Record<string, string> = {
  'inspector.js': 'text/javascript; charset=utf-8',
  'inspector.css': 'text/css; charset=utf-8',
  'softphone.js': 'text/javascript; charset=utf-8',
  'softphone-worklet.js': 'text/javascript; charset=utf-8',
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
    "media-src 'self' blob:; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
} as const;

/** A journal is bounded at 5 MB by its writer (docs/journal.md), plus its outcome line. */
export const JOURNAL_BODY_LIMIT = 6 * 1024 * 1024;
const JOURNAL_TYPES = ['application/x-ndjson', 'application/jsonl'];

const ClientMessage = z.object({ type: z.literal('watch'), callSid: z.string().max(64).nullable() });
const LoginForm = z.object({ token: z.string().max(512) });
const LogoutForm = z.object({ everywhere: z.literal('1').optional() });

/** The SVG as an inline fragment: no XML declaration or comments. */
async function loadChart(url: URL): Promise<string> {
  try {
    const svg = await readFile(url, 'utf8');
    return svg.replace(/^<\?xml[^>]*\?>\s*/, '').replace(/<!--[\s\S]*?-->\s*/g, '');
  } catch {
    return '<p class="vi-missing">The statechart is missing: run <code>npm run visualize</code> (visualizations/call.svg).</p>';
  }
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(message: string | null): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Vetline inspector: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;place-items:center;height:100vh;margin:0}
form{background:#1e293b;padding:24px 28px;border-radius:10px;display:grid;gap:12px;min-width:320px}
input,button{font:inherit;padding:8px 10px;border-radius:6px;border:1px solid #475569;background:#0f172a;color:inherit}
button{background:#2563eb;border-color:#2563eb;cursor:pointer}.err{color:#fca5a5}</style></head>
<body><form method="post" action="${INSPECTOR_PATH}/login"><strong>Vetline call inspector</strong>
<label>Inspector token <input type="password" name="token" autocomplete="current-password" required autofocus></label>
${message ? `<span class="err">${escapeHtml(message)}</span>` : ''}<button type="submit">Open</button></form></body></html>`;
}

export async function registerInspector(app: FastifyInstance, deps: InspectorDeps): Promise<InspectorAccess> {
  const access = deps.access ?? inspectorAccess(deps.config, createDevGate(deps.config));
  if (access.mode === 'disabled') {
    app.log.info({ inspector: 'disabled', mode: deps.config.mode }, 'inspector disabled: no INSPECTOR_TOKEN, and this mode has no development conveniences');
    return access;
  }
  if (!app.hasDecorator('websocketServer')) await app.register(websocket);
  app.addHook('onClose', (_instance, done) => {
    deps.feed.close();
    done();
  });

  const [template, chart] = await Promise.all([readFile(new URL('index.html', PUBLIC_DIR), 'utf8'), loadChart(deps.chartSvg ?? DEFAULT_SVG)]);
  const page = template.replace('<!--CHART-->', () => chart);
  const assets = new Map<string, { body: string; type: string }>();
  for (const [name, type] of Object.entries(ASSETS)) assets.set(name, { body: await readFile(new URL(name, PUBLIC_DIR), 'utf8'), type });

  const softphone = deps.config.webhookValidation === 'off-development';
  const clinics = deps.tenants.all().map((t) => ({ id: t.id, name: t.name }));
  const hello = () => ({
    type: 'hello' as const,
    access: access.mode,
    clinics,
    calls: deps.feed.summaries(),
    softphone: softphone
      ? {
          accountSid: deps.config.twilio.accountSid ?? `AC${'0'.repeat(32)}`,
          clinics: deps.tenants.all().flatMap((t) => (t.phoneNumbers[0] ? [{ id: t.id, name: t.name, number: t.phoneNumbers[0], shown: maskPhones(t.phoneNumbers[0]) }] : [])),
        }
      : null,
  });

  await app.register(async (scope) => {
    scope.addHook('onRequest', (_req, reply, next) => {
      reply.headers(SECURITY_HEADERS);
      next();
    });
    const logins = await createLoginLimiter(scope, LOGIN_LIMIT, deps.loginLimitStore);
    const opts = { config: { rateLimit: false as const } };
    const html = (reply: FastifyReply, status: number, message: string | null) => reply.code(status).type('text/html; charset=utf-8').send(loginPage(message));
    const guard = async (req: FastifyRequest, reply: FastifyReply) => {
      const verdict = checkAccess(access, req);
      return verdict.ok ? undefined : deny(req, reply, verdict);
    };
    const guardSocket = async (req: FastifyRequest, reply: FastifyReply) => {
      if (!sameOrigin(req)) return reply.code(403).send();
      return guard(req, reply);
    };

    scope.get(INSPECTOR_PATH, opts, async (req, reply) => {
      const verdict = checkAccess(access, req);
      if (verdict.ok) return reply.type('text/html; charset=utf-8').send(page);
      return verdict.status === 403 ? deny(req, reply, verdict) : html(reply, 401, null);
    });

    scope.post(`${INSPECTOR_PATH}/login`, opts, async (req, reply) => {
      if (access.mode !== 'token') return reply.redirect(INSPECTOR_PATH, 303);
      if (!sameOrigin(req)) {
        req.log.warn({ ip: req.ip }, 'inspector cross-site sign-in refused');
        return reply.code(403).send();
      }
      const retryAfterS = await logins.blockedFor(req);
      if (retryAfterS !== null) {
        req.log.info({ code: 'VET_E_RATE_LIMITED', ip: req.ip }, 'inspector sign-in blocked: too many failures');
        const minutes = Math.ceil(retryAfterS / 60);
        return html(reply.header('retry-after', retryAfterS), 429, `Too many wrong tokens from your address: try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`);
      }
      const form = LoginForm.safeParse(req.body);
      if (!form.success || !safeEqual(form.data.token, access.token)) {
        await logins.failed(req);
        req.log.warn({ ip: req.ip }, 'inspector login refused');
        return html(reply, 401, 'That token is not right.');
      }
      const secure = req.protocol === 'https' || deps.config.nodeEnv === 'production';
      return reply.header('set-cookie', sessionCookie(access, secure)).redirect(INSPECTOR_PATH, 303);
    });

    // Sign out ends this session on the server too; `everywhere=1` (signed in, or with the bearer
    // token) ends every session issued so far. Without a valid session it only clears the cookie.
    scope.post(`${INSPECTOR_PATH}/logout`, opts, async (req, reply) => {
      if (!sameOrigin(req)) return reply.code(403).send();
      if (access.mode === 'token') {
        const everywhere = LogoutForm.safeParse(req.body ?? {}).data?.everywhere === '1';
        const session = sessionOf(access, req);
        if (everywhere && checkAccess(access, req).ok) {
          access.sessions.revokeAll();
          req.log.info({ ip: req.ip }, 'inspector: every session signed out');
        } else if (session) access.sessions.revoke(session);
      }
      return reply.header('set-cookie', clearedCookie).redirect(INSPECTOR_PATH, 303);
    });

    scope.get<{ Params: { name: string } }>(`${INSPECTOR_PATH}/assets/:name`, { ...opts, preValidation: guard }, async (req, reply) => {
      const asset = assets.get(req.params.name);
      if (!asset) return reply.code(404).send({ code: 'VET_E_NOT_FOUND' });
      return reply.type(asset.type).send(asset.body);
    });

    scope.get(`${INSPECTOR_PATH}/api/calls`, { ...opts, preValidation: guard }, (_req, reply) => reply.send({ calls: deps.feed.summaries() }));

    scope.get<{ Params: { callSid: string } }>(`${INSPECTOR_PATH}/api/calls/:callSid`, { ...opts, preValidation: guard }, async (req, reply) => {
      const detail = deps.feed.detail(req.params.callSid);
      return detail ? detail : reply.code(404).send({ code: 'VET_E_NOT_FOUND' });
    });

    // Journal upload: its own scope, so the JSON Lines parser and the larger body limit apply to
    // this route only. Access is checked on request, before the body is read.
    scope.register((upload, _o, done) => {
      upload.addContentTypeParser(JOURNAL_TYPES, { parseAs: 'string' }, (_req, body, next) => next(null, body));
      upload.post<{ Querystring: { name?: string } }>(
        `${INSPECTOR_PATH}/api/journal`,
        { ...opts, bodyLimit: JOURNAL_BODY_LIMIT, onRequest: guard },
        async (req, reply) => {
          if (typeof req.body !== 'string') {
            return reply.code(400).send({ code: 'VET_E_BAD_REQUEST', message: `send the journal as text/plain or ${JOURNAL_TYPES[0]}` });
          }
          const name = (req.query.name ?? '').replace(/[^\w.-]/g, '_').slice(0, 120) || 'journal';
          let journal;
          try {
            journal = parseJournal(req.body, name);
          } catch (err) {
            if (!(err instanceof JournalError)) throw err;
            req.log.info({ code: 'VET_E_BAD_REQUEST', line: err.line }, 'inspector journal refused');
            return reply.code(400).send({ code: 'VET_E_BAD_REQUEST', message: err.message });
          }
          const clinic = deps.tenants.all().find((t) => t.id === journal.header.tenantId)?.name ?? journal.header.tenantId;
          return reply.send(journalDetail(journal, clinic));
        },
      );
      done();
    });

    scope.get(`${INSPECTOR_PATH}/ws`, { ...opts, websocket: true, preValidation: guardSocket }, (socket, req) => {
      const client: FeedClient = {
        watching: null,
        send: (message) => sendJson(socket, message),
        ready: () => socket.bufferedAmount < 1 << 20,
      };
      sendJson(socket, hello());
      const detach = deps.feed.attach(client);
      const ping = setInterval(() => socket.ping(), 25_000).unref();
      socket.on('message', (data, isBinary) => {
        const parsed = isBinary ? null : parseJson(textOf(data));
        const message = ClientMessage.safeParse(parsed);
        if (message.success) deps.feed.watch(client, message.data.callSid);
      });
      socket.on('error', (err) => req.log.debug({ err }, 'inspector socket error'));
      socket.on('close', () => {
        clearInterval(ping);
        detach();
      });
    });

    scope.get(`${INSPECTOR_PATH}/xstate`, { ...opts, websocket: true, preValidation: guardSocket }, (socket, req) => {
      const off = deps.feed.onStately((event) => {
        if (socket.bufferedAmount < 4 << 20) sendJson(socket, event);
      });
      socket.on('error', (err) => req.log.debug({ err }, 'inspection socket error'));
      socket.on('close', off);
    });
  });

  app.log.info({ inspector: access.mode, softphone }, `inspector at ${INSPECTOR_PATH}`);
  return access;
}

function sendJson(socket: WebSocket, message: unknown): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
}

function textOf(data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return (Buffer.isBuffer(data) ? data : Buffer.from(new Uint8Array(data))).toString('utf8');
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}
