/**
 * Which requests may use the development conveniences (src/config/mode.ts; docs/configuration.md
 * "Modes"): webhooks without a signature when TWILIO_AUTH_TOKEN is unset, and the inspector,
 * /twilio/sessions, /metrics and the desk without a token.
 *
 * - `production`, `protected`: none.
 * - `development` (VETLINE_DEV=1): requests naming this server (DNS-rebinding defence: the Host
 *   header is an IP address, `localhost`, or PUBLIC_BASE_URL's host name) and, when a browser says
 *   which page sent them (`Origin`), sent by a page of this same host.
 * - `local` (NODE_ENV not production, loopback HOST and PUBLIC_BASE_URL): requests that provably come
 *   from this machine: from a loopback address, with a loopback Host header, no forwarding header
 *   (a reverse proxy on the same host would otherwise make them look local), not HTTP/1.0 (nginx's
 *   default `proxy_pass` speaks 1.0 and rewrites Host to the upstream's address), and the Origin
 *   rule above. A proxy that speaks HTTP/1.1, rewrites Host to the loopback address and adds no
 *   forwarding header cannot be told from a local browser: such a set-up needs NODE_ENV=production.
 */
import { isIP } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { devConveniences, isLoopbackHost, type EngineMode } from '../config/mode.js';

/** Why a request may not use the development conveniences. */
export type DevRefusal = 'mode' | 'forwarded' | 'http/1.0' | 'remote' | 'host' | 'origin';

export interface DevGate {
  readonly mode: EngineMode;
  /** The mode offers the conveniences at all (development, local); each request is still checked. */
  readonly enabled: boolean;
  /** null: this request may use them; otherwise why not. */
  check(req: FastifyRequest): DevRefusal | null;
}

/** Whether a request may see something guarded: 401 (no or wrong credential) or 403 (a refused development convenience). */
export type AccessVerdict = { ok: true } | { ok: false; status: 401 } | { ok: false; status: 403; why: DevRefusal };

/** Headers a proxy adds (standard, de facto and CDN ones). Any of them: the request was forwarded. */
export const FORWARDING_HEADERS = [
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-real-ip', 'via',
  'x-client-ip', 'true-client-ip', 'cf-connecting-ip',
] as const;

/** The host name of a Host header (`name:port`, `[v6]:port`), lower case; null when it is not one. */
function hostnameOf(hostHeader: string | undefined): string | null {
  if (hostHeader === undefined || hostHeader === '' || /[/@?#\\\s]/.test(hostHeader)) return null; // a name and a port, nothing else
  try {
    return new URL(`http://${hostHeader}`).hostname;
  } catch {
    return null;
  }
}

/** `Origin` is absent (not a browser, or a plain navigation) or names a page of the requested host. */
export function originMatches(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    const page = new URL(origin);
    // Both through the URL parser, so `Host: localhost:80` and `Origin: http://localhost` agree.
    return page.host === new URL(`${page.protocol}//${req.headers.host ?? ''}`).host;
  } catch {
    return false; // `null` (sandboxed frames) and garbage
  }
}

export function createDevGate(cfg: { mode: EngineMode; publicBaseUrl: string }): DevGate {
  const enabled = devConveniences(cfg.mode);
  const ownName = new URL(cfg.publicBaseUrl).hostname;
  const namesThisServer = (name: string) => isIP(name.replace(/^\[(.*)\]$/, '$1')) !== 0 || isLoopbackHost(name) || name === ownName;
  const check = (req: FastifyRequest): DevRefusal | null => {
    if (!enabled) return 'mode';
    const name = hostnameOf(req.headers.host);
    if (cfg.mode === 'local') {
      if (FORWARDING_HEADERS.some((h) => req.headers[h] !== undefined)) return 'forwarded';
      if (req.raw.httpVersion === '1.0') return 'http/1.0';
      // `socket` is missing on injected WebSocket upgrades (tests): no address, not loopback.
      if (!isLoopbackHost((req.raw.socket as typeof req.raw.socket | undefined)?.remoteAddress ?? '')) return 'remote';
      if (name === null || !isLoopbackHost(name)) return 'host';
    } else if (name === null || !namesThisServer(name)) return 'host';
    return originMatches(req) ? null : 'origin';
  };
  return { mode: cfg.mode, enabled, check };
}

const WHY: Record<DevRefusal, string> = {
  mode: 'development conveniences are off in this mode',
  forwarded: 'it came through a proxy (forwarding headers)',
  'http/1.0': 'it came over HTTP/1.0, as through a proxy',
  remote: 'it came from another machine',
  host: "its Host header does not name this server (DNS rebinding?)",
  origin: 'it was sent by a page of another site',
};

/**
 * 403 `VET_E_LOCAL_ONLY` for a request a development convenience was refused to, with what to do.
 * Logged once per request at info: it is what a misconfigured proxy looks like.
 */
/** A refused verdict as a reply: 401 with an empty body (like a failed signature), or 403 VET_E_LOCAL_ONLY. */
export function deny(req: FastifyRequest, reply: FastifyReply, verdict: Exclude<AccessVerdict, { ok: true }>): FastifyReply {
  return verdict.status === 403 ? refuseLocalOnly(req, reply, verdict.why) : reply.code(401).send();
}

export function refuseLocalOnly(req: FastifyRequest, reply: FastifyReply, why: DevRefusal): FastifyReply {
  req.log.info({ code: 'VET_E_LOCAL_ONLY', why, path: req.routeOptions.url }, 'development convenience refused');
  return reply.code(403).send({
    code: 'VET_E_LOCAL_ONLY',
    message: `Refused: ${WHY[why]}. Without a token this is served only to a browser on the engine's own machine (http://127.0.0.1:<port>); ` +
      'set INSPECTOR_TOKEN (METRICS_TOKEN for /metrics), or VETLINE_DEV=1 for development behind a proxy or tunnel.',
  });
}
