/**
 * What the HTTP edge is given and its fixed limits: shared by the app (app.ts) and the Twilio
 * routes (twilio-routes.ts), so neither imports the other.
 */
import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { CallerAdmission, CallListing, CallRegistry } from '../calls/types.js';
import type { Tenant } from '../config/tenant.schema.js';
import type { ProviderHealthSnapshot } from '../providers/resilience.js';
import type { ValidationMode } from '../twilio/signature.js';
import type { AccessVerdict, DevGate } from './dev-gate.js';
import type { SharedLimitStore } from './login-limit.js';

/** Prometheus scrape path (src/metrics.ts renders it; server.ts serves it; the edge does not log it). */
export const METRICS_PATH = '/metrics';

/** What the edge needs, kept narrow so src/main.ts can adapt AppConfig / TenantDirectory to it. */
export interface EdgeDeps {
  /** PUBLIC_BASE_URL: the https origin Twilio calls. Signatures, TwiML and stream URLs use only this. */
  publicBaseUrl: string;
  /** TWILIO_AUTH_TOKEN (primary). Null only with validation `off-development`. */
  authToken: string | null;
  /** TWILIO_ACCOUNT_SID; when set, every webhook's AccountSid must equal it. */
  accountSid: string | null;
  validation: ValidationMode;
  /**
   * With validation `off-development`, which unsigned requests are let through (src/http/dev-gate.ts);
   * the others fail like a bad signature. Default: the strict `local` rules (this machine only).
   */
  devGate?: DevGate;
  tenants: { byNumber(e164: string): Tenant | null };
  registry: CallRegistry;
  /** Per-caller limits at /twilio/voice (server.ts builds them); absent: none (edge tests). */
  callers?: CallerAdmission;
  logger: Logger;
  /** Per client IP, failed signatures only. */
  rateLimit: { maxFailuresPerMinute: number; banMinutes: number };
  /**
   * REDIS_URL set: the Redis client @fastify/rate-limit keeps the failure counts in (its Redis store),
   * so failures on one instance count on every instance. Absent: counted in this process.
   */
  rateLimitRedis?: SharedLimitStore;
  /**
   * REDIS_URL set: the live calls other instances hold (the shared call directory), listed on
   * GET /twilio/sessions with this instance's own. Rejects when Redis cannot be read.
   */
  otherInstances?: { instanceId: string; calls(): Promise<(CallListing & { instance: string })[]> };
  version: string;
  /** Worker processes alive on this machine (`WORKERS`, src/cluster), for /twilio/health; absent: 1. */
  workers?(): number;
  draining(): boolean;
  /** Cloud providers' breakers and recent record, shown on /twilio/health; absent: none. */
  providerHealth?(): ProviderHealthSnapshot[];
  /**
   * Who may list live calls on GET /twilio/sessions (server.ts: the inspector's access rules, so
   * production never lists calls without INSPECTOR_TOKEN). Absent: open (edge tests only).
   */
  sessionsAccess?(req: FastifyRequest): AccessVerdict;
  /** The load balancer's addresses/CIDRs (F14). Never `true` or a hop count. Default: trust no proxy. */
  trustProxy?: readonly string[];
}

/**
 * Server timeouts (docs/design/reliability.md F6). Fastify 5 defaults `requestTimeout` and `connectionTimeout`
 * to 0; `headersTimeout` stays Node's 60 s and the checker runs every 30 s, so a trickled request
 * lives on. All four are set at construction (the `http` options are read only by the server
 * constructor), so src/main.ts needs to apply nothing; it may assert them on `app.server`.
 */
export const SERVER_TIMEOUTS = {
  /** Whole request (headers + body). Twilio gives up at 15 s anyway. */
  requestTimeoutMs: 15_000,
  /** Headers must arrive first; Node requires headersTimeout ≤ requestTimeout. */
  headersTimeoutMs: 10_000,
  /** How often Node checks the two above (default 30 s would let a slowloris live 30 s longer). */
  connectionsCheckingIntervalMs: 1_000,
  /** Idle socket timeout (socket.setTimeout); upgraded WebSockets are not covered (F5). */
  connectionTimeoutMs: 30_000,
  /** `/twilio/voice` answers fallback TwiML at 8 s, well inside Twilio's 15 s. */
  voiceHandlerTimeoutMs: 8_000,
} as const;
