/**
 * The HTTP edge: `buildApp(deps)` builds a Fastify instance with the Twilio webhook routes and never
 * listens (tests use `inject`; src/main.ts listens). The lead adds `/twilio/ws`, `/metrics` and
 * `/inspector` to the returned instance.
 */
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import formbody from '@fastify/formbody';
import { isVetError, VetError } from '../errors.js';
import { loggablePath } from '../observability/logger.js';
import type { ErrorCode } from '../errors.js';
import { TWILIO_PATHS, unavailableTwiml } from '../twilio/twiml.js';
import { METRICS_PATH, SERVER_TIMEOUTS, type EdgeDeps } from './edge.js';
import { registerTwilioRoutes } from './twilio-routes.js';

/** Webhook bodies are a few hundred bytes; 16 KiB is ample and bounds memory per request (F6). */
export const BODY_LIMIT_BYTES = 16 * 1024;

const pathOf = loggablePath;

/**
 * Fastify's request log prints the URL with its query string, the Host header and the client
 * address (F17). This logs method + path only; health probes and metric scrapes are not logged at all.
 */
class EdgeLogController extends LogController {
  override isLogDisabled(request: FastifyRequest): boolean {
    const path = pathOf(request.url);
    return path === TWILIO_PATHS.health || path === METRICS_PATH;
  }
  override incomingRequest(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) return;
    request.log.info({ method: request.method, path: pathOf(request.url) }, 'incoming request');
  }
  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const fields = { method: request.method, path: pathOf(request.url), statusCode: reply.statusCode,
      responseTimeMs: Math.round(reply.elapsedTime) };
    if (error) reply.log.error({ ...fields, err: error }, 'request errored');
    else reply.log.info(fields, 'request completed');
  }
  override defaultErrorLog(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    reply.log.error({ path: pathOf(request.url), statusCode: reply.statusCode, err: error }, 'request failed');
  }
  override routeNotFound(request: FastifyRequest): void {
    request.log.info({ method: request.method, path: pathOf(request.url) }, 'route not found');
  }
  override writeHeadError(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    reply.log.warn({ path: pathOf(request.url), err: error }, 'writeHead failed');
  }
}

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  VET_E_SIGNATURE: 403,
  VET_E_ACCOUNT_MISMATCH: 403,
  VET_E_RATE_LIMITED: 429,
  VET_E_BAD_REQUEST: 400,
  VET_E_BODY_TOO_LARGE: 413,
  VET_E_NOT_FOUND: 404,
};

function codeForClientError(status: number): ErrorCode {
  if (status === 413) return 'VET_E_BODY_TOO_LARGE';
  if (status === 404) return 'VET_E_NOT_FOUND';
  if (status === 429) return 'VET_E_RATE_LIMITED';
  return 'VET_E_BAD_REQUEST';
}

/** Bodies are `{ code }` only: no message, no stack, nothing echoed from the request. */
function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (error.code === 'FST_ERR_HANDLER_TIMEOUT' && request.routeOptions.url === TWILIO_PATHS.voice) {
    // A 5xx here makes Twilio play "application error". The handler itself is synchronous, so this
    // only fires while the body is still arriving, before the signature was checked: answer with
    // TwiML that names no clinic and no number.
    request.log.error({ code: 'VET_E_INTERNAL', timeoutMs: SERVER_TIMEOUTS.voiceHandlerTimeoutMs }, 'voice webhook timed out');
    // `connection: close` frees the socket now instead of at requestTimeout (the body never finished).
    return reply.code(200).type('text/xml').header('connection', 'close').send(unavailableTwiml());
  }
  if (isVetError(error)) {
    const status = STATUS_BY_CODE[error.code] ?? 500;
    if (status >= 500) request.log.error({ err: error, code: error.code }, 'request failed');
    else request.log.info({ code: error.code, statusCode: status }, 'request rejected');
    return reply.code(status).send({ code: status >= 500 ? 'VET_E_INTERNAL' : error.code });
  }
  const status = typeof error.statusCode === 'number' ? error.statusCode : 500;
  if (status >= 400 && status < 500) {
    const code = codeForClientError(status);
    // Fastify's own 4xx (bad form, 413, 415): the Fastify code is enough, the message may quote input.
    request.log.info({ code, statusCode: status, fastifyCode: error.code }, 'request rejected');
    return reply.code(status).send({ code });
  }
  request.log.error({ err: error, code: 'VET_E_INTERNAL' }, 'unhandled error');
  return reply.code(500).send({ code: 'VET_E_INTERNAL' });
}

function checkDeps(deps: EdgeDeps): void {
  const bad = (why: string): never => {
    throw new VetError('VET_E_CONFIG', `buildApp: ${why}`);
  };
  let url: URL;
  try {
    url = new URL(deps.publicBaseUrl);
  } catch {
    return bad('publicBaseUrl is not a URL');
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && deps.validation === 'off-development')) {
    bad('publicBaseUrl must be https (http only with the development bypass)');
  }
  if (url.username || url.password || url.search || url.hash || url.pathname !== '/') {
    bad('publicBaseUrl must be an origin only (no path, query, credentials)');
  }
  if (deps.validation === 'on' && !deps.authToken) bad('signature validation is on but no auth token is set');
  const tp: unknown = deps.trustProxy ?? [];
  if (!Array.isArray(tp) || !tp.every((x) => typeof x === 'string')) {
    bad('trustProxy must be a list of proxy addresses or CIDRs, never true or a hop count');
  }
  const { maxFailuresPerMinute, banMinutes } = deps.rateLimit;
  if (!Number.isInteger(maxFailuresPerMinute) || maxFailuresPerMinute < 1) bad('rateLimit.maxFailuresPerMinute must be ≥ 1');
  if (!Number.isInteger(banMinutes) || banMinutes < 1) bad('rateLimit.banMinutes must be ≥ 1');
}

export async function buildApp(deps: EdgeDeps): Promise<FastifyInstance> {
  checkDeps(deps);
  const trust = deps.trustProxy ?? [];
  // Typed as Fastify's base logger so the instance type stays the plain `FastifyInstance`.
  const logger: FastifyBaseLogger = deps.logger;
  const app = Fastify({
    loggerInstance: logger,
    logController: new EdgeLogController(),
    bodyLimit: BODY_LIMIT_BYTES,
    // The stream token is a path parameter (/twilio/ws/<token>, ~300 characters); longer → 414.
    routerOptions: { maxParamLength: 512 },
    // Status callbacks and menu actions must still be served during drain (docs/design/reliability.md §3).
    return503OnClosing: false,
    requestTimeout: SERVER_TIMEOUTS.requestTimeoutMs,
    connectionTimeout: SERVER_TIMEOUTS.connectionTimeoutMs,
    http: {
      headersTimeout: SERVER_TIMEOUTS.headersTimeoutMs,
      requestTimeout: SERVER_TIMEOUTS.requestTimeoutMs,
      connectionsCheckingInterval: SERVER_TIMEOUTS.connectionsCheckingIntervalMs,
    },
    trustProxy: trust.length > 0 ? [...trust] : false,
  });
  await app.register(formbody);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    request.log.info({ method: request.method, path: pathOf(request.url) }, 'route not found');
    return reply.code(404).send({ code: 'VET_E_NOT_FOUND' });
  });
  if (deps.validation === 'off-development') {
    deps.logger.warn(
      { webhookValidation: 'off-development' },
      'TWILIO WEBHOOK SIGNATURES ARE NOT VALIDATED (development bypass): anyone can fake calls. Never run this in production.',
    );
  }
  await registerTwilioRoutes(app, deps);
  return app;
}
