/**
 * Assembles the engine from already-built parts (config, clinics, providers, prompts, Twilio REST):
 * the HTTP edge, the Media Stream route and the call registry. Never listens; main.ts does, tests
 * call `app.listen({ port: 0 })` or `inject`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { applyRelayed, relayingRegistry } from './calls/callback-relay.js';
import { CallerLimits } from './calls/caller-limits.js';
import { registerLimitMetrics } from './calls/limit-metrics.js';
import { ProviderBudget } from './calls/provider-budget.js';
import { Registry, type CallSeed } from './calls/registry.js';
import type { Prompts } from './calls/child-actors.js';
import type { RecordingTranscriber } from './calls/recording-transcriber.js';
import type { SessionTap } from './calls/session.js';
import { FollowThrough } from './calls/follow-through.js';
import type { CallHandoff } from './calls/handoff.js';
import type { ClusterView } from './cluster/worker.js';
import type { EdgeDeps } from './http/edge.js';
import { StreamTokens, type TokenUseStore } from './calls/stream-token.js';
import type { Outbox } from './delivery/outbox.js';
import type { ClinicDelivery } from './delivery/types.js';
import { registerDeliveryMetrics } from './delivery/metrics.js';
import { clinicDeskTokens, deskAccess } from './desk/access.js';
import { DeskEvents } from './desk/events.js';
import { registerDesk } from './desk/plugin.js';
import type { CallSummarizer, Providers } from './providers/types.js';
import type { FollowUpStore } from './store/types.js';
import type { AppConfig } from './config/env.js';
import { devConveniences, type EngineMode } from './config/mode.js';
import type { Tenant } from './config/tenant.schema.js';
import type { TenantDirectory } from './config/tenants.js';
import { buildApp } from './http/app.js';
import { createDevGate, deny, type AccessVerdict, type DevGate } from './http/dev-gate.js';
import { METRICS_PATH } from './http/edge.js';
import { registerStreamRoute, STREAM_ROUTE } from './http/stream-route.js';
import { checkAccess, inspectorAccess } from './inspector/access.js';
import { bearerOf, matchesAny } from './inspector/credentials.js';
import { InspectorFeed } from './inspector/feed.js';
import { registerInspector } from './inspector/plugin.js';
import type { JournalFactory } from './journal/writer.js';
import { RATE_LIMIT_NAMESPACE, registerSharedMetrics, type SharedState } from './redis/index.js';
import { createEngineMetrics, type EngineMetrics } from './metrics.js';
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
  /**
   * Follow-through (docs/follow-ups.md): the clinic's store, the delivery outbox and each clinic's
   * delivery settings. main.ts always builds it; absent (unit and load tests), calls keep their
   * requests in their own record and journal only, and /desk is not served.
   */
  followUps?: FollowUpDeps;
  /**
   * REDIS_URL (src/redis): what instances share (stream-token use, failure counts, the call
   * directory, live updates). Absent: one process keeps all of it in memory. The opener closes it.
   */
  shared?: SharedState | null;
  /**
   * Where stream tokens' single use is recorded (stream-token.ts). Absent: this process's memory,
   * right for one process; workers share the primary's (src/cluster), instances a shared store.
   * With `shared` (REDIS_URL) Redis' store is used instead.
   */
  tokenUses?: TokenUseStore;
  /**
   * Takes over calls answered by another worker or instance (calls/handoff.ts). Absent: one process.
   * With `shared` (REDIS_URL) the take-over goes through Redis instead, reaching every instance.
   */
  handoff?: CallHandoff;
  /** The other workers of this machine (`WORKERS` > 1, src/cluster): health, call listing and metrics cover them. */
  cluster?: ClusterView;
}

export interface FollowUpDeps {
  store: FollowUpStore;
  /** Null when nothing is delivered anywhere (no clinic has a channel): follow-ups still reach the desk. */
  outbox: Outbox | null;
  /** A clinic's delivery settings with secrets resolved (the same function the outbox uses). */
  clinicDelivery(clinicId: string): ClinicDelivery | null;
  /** Staff summaries by the model for clinics with a cloud receptionist; absent: the template. */
  summarizer?: (tenant: Tenant) => CallSummarizer | null;
  /** Streams a call recording for the desk's link (Twilio credentials needed). */
  fetchRecording?: (recordingSid: string, signal: AbortSignal) => Promise<{ body: Buffer; contentType: string }>;
}

export interface Engine {
  app: FastifyInstance;
  registry: Registry;
  metrics: EngineMetrics;
  /** Live desk updates (null without follow-through). */
  deskEvents: DeskEvents | null;
  /** End-of-call follow-up writing (null without follow-through). */
  followThrough: FollowThrough | null;
  /** Start the drain (SIGTERM); calling it again returns the same drain. */
  drain(timeoutMs: number): Drain;
}

/** Readiness probe: 503 while draining, so the load balancer stops sending calls. Liveness is /twilio/health. */
export const READY_PATH = '/twilio/ready';
/** How often the drain looks whether the last call has ended (docs/design/reliability.md §3 step 3). */
const DRAIN_POLL_MS = 250;

export interface Drain {
  /** Resolves once every call is over (or handed off), the server is closed and journals are flushed. */
  readonly done: Promise<void>;
  /** A second signal: stop waiting and hand the remaining calls off now. */
  handOffNow(): void;
}

/** What each mode means, for the start-up line (docs/configuration.md "Modes"). */
const MODE_MEANING: Record<EngineMode, string> = {
  production: 'tokens required for the inspector, /twilio/sessions, /metrics and the desk; webhooks signed',
  protected: 'not production, but reachable beyond this machine: production access rules (tokens; webhooks signed)',
  development: 'development conveniences (unsigned webhooks without TWILIO_AUTH_TOKEN; inspector, /twilio/sessions, /metrics, desk and softphone without a token) for requests naming this server',
  local: 'development conveniences (unsigned webhooks without TWILIO_AUTH_TOKEN; inspector, /twilio/sessions, /metrics, desk and softphone without a token) for requests from this machine only',
};

/** GET /metrics: a bearer METRICS_TOKEN or INSPECTOR_TOKEN when either is set; else the development conveniences' rule. */
function metricsAccess(config: AppConfig, gate: DevGate): (req: Parameters<DevGate['check']>[0]) => AccessVerdict {
  const tokens = [config.metricsToken, config.inspector.token].filter((t): t is string => t !== null);
  return (req) => {
    if (tokens.length > 0) {
      const bearer = bearerOf(req.headers.authorization);
      return bearer !== null && matchesAny(bearer, tokens) ? { ok: true } : { ok: false, status: 401 };
    }
    if (!gate.enabled) return { ok: false, status: 401 };
    const why = gate.check(req);
    return why === null ? { ok: true } : { ok: false, status: 403, why };
  };
}

export async function buildServer(deps: EngineDeps): Promise<Engine> {
  const { config } = deps;
  deps.logger[devConveniences(config.mode) ? 'warn' : 'info'](
    { mode: config.mode, reason: config.modeReason },
    `mode ${config.mode}: ${MODE_MEANING[config.mode]}`,
  );
  // Which requests may use the development conveniences (none outside development and local mode).
  const gate = createDevGate(config);
  // The inspector's live feed; not even built when the inspector is disabled (production, no token).
  const access = inspectorAccess(config, gate);
  const shared = deps.shared ?? null;
  // With REDIS_URL, other instances' calls are heard only while a page is open here; the first page
  // asks them for their live calls once subscribed (docs/operations.md "Several instances").
  const feed = access.mode === 'disabled' ? null : new InspectorFeed({
    logger: deps.logger,
    ...(shared
      ? {
          relay: (message) => shared.bus.publishWhenHeard('inspector', message),
          onPages: (count) => {
            const listening = shared.bus.interest('inspector', count > 0);
            if (count === 1) void listening.then(() => shared.bus.publish('inspector-sync', null));
          },
        }
      : deps.cluster
        ? { relay: (message) => deps.cluster?.inspector.relay(message), onPages: (count) => deps.cluster?.inspector.pages(count) }
        : {}),
  });
  // WORKERS > 1 without Redis: the other workers' calls through the cluster primary (src/cluster).
  if (feed && !shared) deps.cluster?.inspector.on((message) => feed.remote(message), () => feed.resync());
  if (feed && shared) {
    shared.bus.on('inspector', (message) => feed.remote(message));
    shared.bus.on('inspector-sync', () => {
      shared.bus.heard('inspector');
      feed.resync();
    });
  }
  const fu = deps.followUps ?? null;
  const deskEvents = fu
    ? new DeskEvents({
        onError: (err) => deps.logger.error({ err, code: 'VET_E_INTERNAL' }, 'desk listener failed'),
        ...(shared
          ? { relay: (clinicId: string) => shared.bus.publish('desk', clinicId) }
          : deps.cluster
            ? { relay: (clinicId: string) => deps.cluster?.desk.relay(clinicId) }
            : {}),
      })
    : null;
  if (deskEvents && !shared) deps.cluster?.desk.on((clinicId) => deskEvents.deliver(clinicId));
  if (deskEvents && shared) shared.bus.on('desk', (clinicId) => typeof clinicId === 'string' && deskEvents.deliver(clinicId));
  const followThrough = fu
    ? new FollowThrough({
        store: fu.store,
        channels: (tenant) => {
          const d = fu.clinicDelivery(tenant.id);
          return { webhook: d?.webhook != null, email: d?.email != null, sms: d?.sms != null };
        },
        ...(fu.summarizer ? { summarizer: fu.summarizer } : {}),
        changed: (clinicId) => deskEvents?.publish(clinicId),
        due: () => void fu.outbox?.kick(),
        logger: deps.logger,
      })
    : null;
  const budget = new ProviderBudget({ tenants: deps.tenants.all(), logger: deps.logger });
  // Shared by every worker when STREAM_TOKEN_SECRET is set; else a key of this process (one process only).
  const streamTokens = new StreamTokens({
    secret: config.streamTokenSecret,
    accountSid: config.twilio.accountSid,
    clinicExists: (id) => deps.tenants.byId(id) !== null,
    // REDIS_URL: single use across every instance (SET NX PX); it takes the place of a per-process store.
    ...(shared ? { uses: shared.tokenUses } : deps.tokenUses ? { uses: deps.tokenUses } : {}),
  });
  const registry = new Registry({
    streamTokens,
    providers: deps.providers,
    prompts: deps.prompts,
    rest: deps.rest,
    publicBaseUrl: config.publicBaseUrl,
    logger: deps.logger,
    accountSid: config.twilio.accountSid,
    maxCalls: config.maxCalls,
    tenantById: (id) => deps.tenants.byId(id),
    ...(deps.transcriber ? { transcriber: deps.transcriber } : {}),
    ...(deps.journal ? { journal: deps.journal } : {}),
    ...(deps.tap ? { tap: deps.tap } : {}),
    ...(feed ? { onActivity: feed.onActivity } : {}),
    ...(followThrough ? { followThrough } : {}),
    budget,
  });
  feed?.useSessions(registry);
  // REDIS_URL: a call whose stream reached another instance is asked for over Redis, and this
  // instance gives up the calls it holds waiting when another asks (every worker is an instance).
  if (shared) {
    shared.handoff.serve((callSid) => registry.release(callSid));
    shared.bus.on('callbacks', (callback) => void applyRelayed(registry, callback));
  }
  const handoff: CallHandoff | undefined = shared ? { take: async (callSid) => asSeed(await shared.handoff.take(callSid)) } : deps.handoff;
  const directory = shared?.directory(() => registry.list(), () => registry.activeCount) ?? null;
  const callers = new CallerLimits({ secret: config.callerKeySecret, liveCalls: (clinic, key, except) => registry.liveCallsFrom(clinic, key, except) });
  const signature = { publicBaseUrl: config.publicBaseUrl, authToken: config.twilio.authToken, validation: config.webhookValidation };
  const app = await buildApp({
    ...signature,
    accountSid: config.twilio.accountSid,
    tenants: deps.tenants,
    // REDIS_URL: a callback for a call another instance holds is relayed to it (calls/callback-relay.ts).
    // WORKERS > 1 without Redis: through the cluster primary to the other workers (src/cluster).
    registry: shared
      ? relayingRegistry(registry, (callback) => shared.bus.publish('callbacks', callback))
      : deps.cluster
        ? relayingRegistry(registry, (callback) => deps.cluster?.relay(callback))
        : registry,
    callers,
    logger: deps.logger,
    rateLimit: config.rateLimit,
    ...(shared ? { rateLimitRedis: { client: shared.rateLimitClient, nameSpace: `${RATE_LIMIT_NAMESPACE}twilio:` } } : {}),
    ...otherCalls(deps.cluster, shared && directory ? { instanceId: shared.instanceId, calls: () => directory.list() } : null),
    ...(deps.cluster ? { workers: () => deps.cluster?.workers() ?? 1 } : {}),
    version: deps.version,
    draining: () => registry.isDraining,
    providerHealth: () => (deps.providers.health ?? []).map((h) => h.snapshot()),
    devGate: gate,
    // Call listings follow the inspector's rules: the token when set, nothing in production without one.
    sessionsAccess: (req) => checkAccess(access, req),
    ...(config.trustProxy ? { trustProxy: config.trustProxy } : {}),
  });
  await registerStreamRoute(app, {
    signature, registry, devGate: gate,
    ...(deps.streamOptions ? { streamOptions: deps.streamOptions } : {}),
    ...(handoff ? { handoff } : {}),
  });
  const loginStore = (surface: string) => (shared ? { loginLimitStore: { client: shared.rateLimitClient, nameSpace: `${RATE_LIMIT_NAMESPACE}login:${surface}:` } } : {});
  if (feed) await registerInspector(app, { feed, config, tenants: deps.tenants, access, ...loginStore('inspector') });
  if (fu && deskEvents) {
    await registerDesk(app, {
      store: fu.store,
      access: deskAccess({ gate, operatorToken: config.inspector.token, clinicTokens: clinicDeskTokens(deps.tenants) }),
      events: deskEvents,
      clinicName: (id) => deps.tenants.byId(id)?.name ?? null,
      ...(fu.fetchRecording ? { fetchRecording: fu.fetchRecording } : {}),
      logger: deps.logger,
      secureCookies: config.nodeEnv === 'production',
      ...loginStore('desk'),
    });
  }

  // Prometheus scrape (docs/operations.md "Metrics"): `Authorization: Bearer <METRICS_TOKEN or
  // INSPECTOR_TOKEN>`; without either, only as a development convenience (metricsAccess).
  const metrics = createEngineMetrics({
    calls: registry,
    streams: deps.streamOptions?.counters ?? streamCounters,
    journal: deps.journal ?? null,
    ...(deps.providers.health ? { providers: deps.providers.health } : {}),
  });
  if (fu?.outbox) registerDeliveryMetrics(metrics.register, fu.outbox);
  registerLimitMetrics(metrics.register, { callers, budget });
  if (shared) registerSharedMetrics(metrics.register, shared);
  const scrapeAccess = metricsAccess(config, gate);
  app.get(METRICS_PATH, { config: { rateLimit: false } }, async (req, reply) => {
    const verdict = scrapeAccess(req);
    if (!verdict.ok) return deny(req, reply, verdict);
    // With workers, every worker's registry summed by the primary (prom-client's AggregatorRegistry).
    const text = deps.cluster ? await deps.cluster.metrics() : await metrics.render();
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
  registerDrainRoutes(app, registry);
  let drain: Drain | null = null;
  const startDrain = (timeoutMs: number) =>
    (drain ??= drainEngine({ app, registry, journal: deps.journal ?? null, logger: deps.logger, followThrough, outbox: fu?.outbox ?? null }, timeoutMs));
  return { app, registry, metrics, deskEvents, followThrough, drain: startDrain };
}

/** A seed another instance released (src/redis/handoff.ts carries it as JSON): checked field by field. */
function asSeed(v: unknown): CallSeed | null {
  if (typeof v !== 'object' || v === null) return null;
  const { from, callerKey } = v as Record<string, unknown>;
  const nullableString = (x: unknown): x is string | null => x === null || typeof x === 'string';
  return nullableString(from) && nullableString(callerKey) ? { from, callerKey } : null;
}

/** Readiness, and the refusal of stray stream upgrades while draining (docs/design/reliability.md §3 steps 1–2). */
function registerDrainRoutes(app: FastifyInstance, registry: Registry): void {
  app.get(READY_PATH, { logLevel: 'silent', config: { rateLimit: false } }, (_req, reply) =>
    registry.isDraining ? reply.code(503).send({ status: 'draining' }) : reply.send({ status: 'ready' }),
  );
  // 503 at the upgrade: Twilio then runs the verbs after </Connect> (the clinic's menu), and no
  // socket is left for close() to wait on.
  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.url !== STREAM_ROUTE || registry.acceptsStreamUpgrades()) return undefined;
    req.log.info('stream upgrade refused: draining');
    return reply.code(503).send();
  });
}

/**
 * SIGTERM (docs/design/reliability.md §3): no new calls (the registry refuses them, readiness fails); live calls
 * go on until they end or `timeoutMs` passes; the rest are handed to the front desk; then the server
 * closes and journals are flushed. main.ts exits after `done`, behind its own hard-exit timer.
 */
function drainEngine(
  parts: {
    app: FastifyInstance; registry: Registry; journal: JournalFactory | null; logger: EngineDeps['logger'];
    followThrough: FollowThrough | null; outbox: Outbox | null;
  },
  timeoutMs: number,
): Drain {
  const { app, registry, journal, logger, followThrough, outbox } = parts;
  registry.startDraining();
  const skip = new AbortController();
  const done = (async () => {
    const deadline = performance.now() + timeoutMs;
    while (registry.activeCount > 0 && !skip.signal.aborted && performance.now() < deadline) {
      await sleep(DRAIN_POLL_MS, undefined, { signal: skip.signal }).catch(() => undefined);
    }
    if (registry.activeCount > 0) {
      logger.info({ activeCalls: registry.activeCount, early: skip.signal.aborted }, 'drain deadline: handing calls off');
      await registry.handOffAll();
    }
    // Every call's summary and follow-ups are written before the server goes; deliveries in flight
    // finish or keep their lease (the next start-up retries them).
    await followThrough?.idle();
    await outbox?.stop();
    await app.close();
    await journal?.flushAll();
  })();
  return { done, handOffNow: () => skip.abort() };
}

/**
 * /twilio/sessions beyond this process: the other workers (named `worker-<n>`), or with Redis the
 * other instances (every worker heartbeats its own calls there, so the directory already has them).
 */
function otherCalls(cluster: ClusterView | undefined, instances: NonNullable<EdgeDeps['otherInstances']> | null): Pick<EdgeDeps, 'otherInstances'> {
  if (instances) return { otherInstances: instances };
  return cluster ? { otherInstances: { instanceId: cluster.workerId, calls: () => cluster.otherCalls() } } : {};
}
