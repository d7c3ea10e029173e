/**
 * The root logger (pino; Fastify takes it as `loggerInstance`) and the per-call child.
 * Secrets and phone numbers are redacted by path; personal data belongs under `pii`, which is
 * always redacted. Messages are static by convention, and the few that embed a URL (Fastify's
 * "Route GET:/x?y not found") lose the query string and any E.164 number on the way out.
 */
import pino from 'pino';
import type { DestinationStream, Logger } from 'pino';

export const REDACT_PATHS: readonly string[] = [
  // Credentials, wherever a header bag or config object is logged.
  'req.headers["x-twilio-signature"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers["x-twilio-signature"]',
  'headers.authorization',
  'headers.cookie',
  'authToken',
  'apiKey',
  'token',
  'streamToken',
  'callToken',
  '*.authToken',
  '*.apiKey',
  '*.token',
  '*.streamToken',
  '*.callToken',
  // Media Stream `start.customParameters` carries the one-time stream token.
  'customParameters',
  '*.customParameters',
  // Phone numbers: Twilio webhook fields and our own names for them. Top-level `from`/`to` stay:
  // they are state names in 'state changed' lines.
  'body.From',
  'body.To',
  'body.Caller',
  'body.Called',
  '*.from',
  '*.to',
  '*.caller',
  // Personal data and what callers say.
  'pii',
  '*.pii',
  'transcript',
  '*.transcript',
];

const E164_ANYWHERE = /\+[1-9]\d{6,14}\b/g;

/** `+15550100123` → `+•••••••••23`: enough to tell two callers apart in a log, not to call one. */
export function maskPhone(e164: string): string {
  if (!/^\+[1-9]\d{6,14}$/.test(e164)) return '[hidden]'; // "anonymous", "client:alice", sip: URIs
  return `+${'•'.repeat(e164.length - 3)}${e164.slice(-2)}`;
}

/** Drops query strings after URL paths and masks E.164 numbers inside free text. */
export function scrubText(text: string): string {
  return text.replace(/(\/[^\s?#"'`]*)\?[^\s"'`)]*/g, '$1').replace(E164_ANYWHERE, maskPhone);
}

/**
 * A request URL as logged: no query string, and the Media Stream token (the path segment after
 * `/twilio/ws/`, a bearer credential for one call) replaced by `[token]`.
 */
export function loggablePath(url: string): string {
  const path = url.split('?')[0] ?? '';
  return path.replace(/^(\/twilio\/ws\/)[^/]+/i, '$1[token]');
}

const withoutQuery = (url: unknown) => (typeof url === 'string' ? loggablePath(url) : undefined);

/** Fastify's request, or a raw IncomingMessage: method and path only (no query, host, address, port, body). */
type RequestLike = { method?: string; url?: string; routeOptions?: { url?: string } };

export const serializers = {
  req: (req: RequestLike) => ({
    method: req.method,
    url: withoutQuery(req.url),
    ...(req.routeOptions?.url ? { route: req.routeOptions.url } : {}),
  }),
  res: (reply: { statusCode?: number }) => ({ statusCode: reply.statusCode }),
  err: (err: unknown) => {
    if (!(err instanceof Error)) return err;
    const out = pino.stdSerializers.err(err);
    out.message = scrubText(out.message);
    out.stack = scrubText(out.stack);
    return out;
  },
};

export function createLogger(opts: { level: string; destination?: DestinationStream }): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level,
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    serializers,
    hooks: {
      logMethod(args, method) {
        // Only string arguments are touched: the message and printf-style values.
        const clean = args.map((a: unknown) => (typeof a === 'string' ? scrubText(a) : a)) as typeof args;
        method.apply(this, clean);
      },
    },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

/** Ids that identify a call in logs. Phone numbers never go here (a child binds to every line). */
export interface CallLogIds {
  callSid: string;
  streamSid: string | null;
  tenantId: string;
}

/**
 * Per-call child logger, ids only. The fields are copied one by one so that passing a richer
 * object (a Twilio payload) cannot bind anything else.
 */
export function callLogger<L extends { child(bindings: Record<string, unknown>): L }>(root: L, ids: CallLogIds): L {
  return root.child({ callSid: ids.callSid, streamSid: ids.streamSid, tenantId: ids.tenantId });
}
