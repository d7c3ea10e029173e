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
import { inspectorAccess } from './inspector/access.js';
import { InspectorFeed } from './inspector/feed.js';
import { registerInspector } from './inspector/plugin.js';
import type { JournalFactory } from './journal/writer.js';
import type { TwilioRest } from './twilio/rest-types.js';
import type { MediaStreamOptions } from './twilio/stream-socket.js';

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
  return { app, registry };
}
