/**
 * Assembles the engine from already-built parts (config, clinics, providers, prompts, Twilio REST):
 * the HTTP edge, the Media Stream route and the call registry. Never listens; main.ts does, tests
 * call `app.listen({ port: 0 })` or `inject`.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { Registry } from './calls/registry.js';
import type { Prompts } from './calls/child-actors.js';
import type { RecordingTranscriber } from './calls/recording-transcriber.js';
import type { Providers, SessionTap } from './calls/session.js';
import type { AppConfig } from './config/env.js';
import type { TenantDirectory } from './config/tenants.js';
import { buildApp } from './http/app.js';
import { registerStreamRoute } from './http/stream-route.js';
import { inspectorAccess, isAuthorized } from './inspector/access.js';
import { InspectorFeed } from './inspector/feed.js';
import { registerInspector } from './inspector/plugin.js';
import type { JournalFactory } from './journal/writer.js';
import { createEngineMetrics, METRICS_PATH, type EngineMetrics } from './observability/metrics.js';
import type { TwilioRest } from './twilio/rest-types.js';
import { streamCounters, type MediaStreamOptions } from './twilio/stream-socket.js';
import { TWILIO_PATHS } from './twilio/twiml.js';

export interface EngineDeps {
  config: AppConfig;
  tenants: TenantDirectory;
  providers: Providers;
  prompts: Prompts;
  rest: TwilioRest | null;
  logger: Logger;
  version: string;
  streamOptions?: MediaStreamOptions;
  /** Post-call transcription of completed recordings (main.ts builds it when Twilio credentials exist). */
  transcriber?: RecordingTranscriber;
  /** Call journal (main.ts opens JOURNAL_DIR); null or absent: calls are not journaled. */
  journal?: JournalFactory | null;
  /** Per-call state/command tap (tests). */
  tap?: SessionTap;
}

export interface Engine {
  app: FastifyInstance;
  registry: Registry;
  metrics: EngineMetrics;
}

export async function buildServer(deps: EngineDeps): Promise<Engine> {
  const { config } = deps;
  // The inspector's live feed; not even built when the inspector is disabled (production, no token).
  const feed = inspectorAccess(config).mode === 'disabled' ? null : new InspectorFeed({ logger: deps.logger });
  const registry = new Registry({
    providers: deps.providers,
    prompts: deps.prompts,
    rest: deps.rest,
    publicBaseUrl: config.publicBaseUrl,
    logger: deps.logger,
    accountSid: config.twilio.accountSid,
    maxCalls: config.maxCalls,
    ...(deps.transcriber ? { transcriber: deps.transcriber } : {}),
    ...(deps.journal ? { journal: deps.journal } : {}),
    ...(deps.tap ? { tap: deps.tap } : {}),
    ...(feed ? { onActivity: feed.onActivity } : {}),
  });
  feed?.useSessions(registry);
  const signature = { publicBaseUrl: config.publicBaseUrl, authToken: config.twilio.authToken, validation: config.webhookValidation };
  const app = await buildApp({
    ...signature,
    accountSid: config.twilio.accountSid,
    tenants: deps.tenants,
    registry,
    logger: deps.logger,
    rateLimit: config.rateLimit,
    version: deps.version,
    draining: () => registry.isDraining,
    ...(config.trustProxy ? { trustProxy: config.trustProxy } : {}),
  });
  await registerStreamRoute(app, { signature, registry, ...(deps.streamOptions ? { streamOptions: deps.streamOptions } : {}) });
  if (feed) await registerInspector(app, { feed, config, tenants: deps.tenants });

  // Prometheus scrape (docs/operations.md "Metrics"): open like /twilio/health unless INSPECTOR_TOKEN
  // is set, then `Authorization: Bearer <token>` is required. Never expose it publicly.
  const metrics = createEngineMetrics({
    calls: registry,
    streams: deps.streamOptions?.counters ?? streamCounters,
    journal: deps.journal ?? null,
  });
  const token = config.inspector.token;
  app.get(METRICS_PATH, { config: { rateLimit: false } }, async (req, reply) => {
    if (token !== null && !isAuthorized({ mode: 'token', token }, req)) return reply.code(401).send();
    const text = await metrics.render();
    return reply.type(metrics.register.contentType).header('cache-control', 'no-store').send(text);
  });
  // Fallback key-menu answers (the menu Twilio runs when the stream fails or ends with an error).
  app.addHook('onResponse', (req, reply, done) => {
    if (req.routeOptions.url === TWILIO_PATHS.dtmf && reply.statusCode === 200) metrics.dtmfFallback();
    done();
  });
  app.addHook('onClose', (_app, done) => {
    metrics.close();
    done();
  });
  return { app, registry, metrics };
}
