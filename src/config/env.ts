/**
 * Environment → AppConfig, parsed once at start-up (src/main.ts) and passed down frozen.
 * A bad value stops start-up with VET_E_CONFIG: one line per bad variable, naming it and the fix.
 * Secret values never appear in those lines (they are also scrubbed from every other line).
 */
import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { inspect } from 'node:util';
import type { LevelWithSilent } from 'pino';
import { z } from 'zod';
import { VetError } from '../errors.js';
import { baseUrl, HOSTNAME, integer, modelName, oneOf, parseUrl, provider, proxyEntry, readJournalS3Url, secret, strongToken, strongTokenRequired, variable, type JournalS3Target } from './env-values.js';
import { engineMode, type EngineMode, type ModeDecision } from './mode.js';

export type { EngineMode } from './mode.js';

export type NodeEnv = 'development' | 'production' | 'test';
export type SttProviderName = 'openai' | 'elevenlabs' | 'local' | 'fake';
export type TtsProviderName = 'elevenlabs' | 'local' | 'fake';
export type AgentProviderName = 'openai' | 'local' | 'fake';
export type VadProviderName = 'energy' | 'local' | 'fake';

/**
 * Deeply frozen. Absent optional values are `null`. `JSON.stringify(config)` and `util.inspect`
 * show secrets as "[set]" (a non-enumerable `toJSON`), so logging the config is safe.
 */
export interface AppConfig {
  readonly nodeEnv: NodeEnv;
  /**
   * How far the engine trusts a request without credentials (src/config/mode.ts): development
   * conveniences only in `development` (VETLINE_DEV=1) and `local` (loopback, per request).
   */
  readonly mode: EngineMode;
  /** Why this mode, one line for the start-up log. */
  readonly modeReason: string;
  readonly port: number;
  readonly host: string;
  /** Origin Twilio calls (no trailing slash). Signed URL = publicBaseUrl + raw path, never the Host header. */
  readonly publicBaseUrl: string;
  readonly logLevel: LevelWithSilent;
  readonly twilio: { readonly accountSid: string | null; readonly authToken: string | null };
  /** 'on' whenever a token is set; 'off-development' only in development or local mode without one (log it loudly). */
  readonly webhookValidation: 'on' | 'off-development';
  readonly openai: {
    readonly apiKey: string | null;
    readonly baseUrl: string | null;
    /** Transcription model and how it is used: a Realtime session per call, or one request per utterance. */
    readonly sttModel: string;
    readonly sttMode: 'realtime' | 'batch';
  };
  readonly elevenlabs: {
    readonly apiKey: string | null;
    readonly baseUrl: string | null;
    /** Voice for clinics without `voice.cloud`. */
    readonly voiceId: string;
    readonly modelId: string;
    /** Scribe Realtime model for speech to text (`STT_PROVIDER=elevenlabs`). */
    readonly sttModel: string;
    /** `http`: one streamed request per sentence; `websocket`: the stream-input socket. */
    readonly transport: 'http' | 'websocket';
  };
  readonly tenantsDir: string;
  readonly journalDir: string;
  /** `auto` already resolved: cloud when its key is set, else local. */
  readonly providers: {
    readonly stt: SttProviderName;
    readonly tts: TtsProviderName;
    readonly agent: AgentProviderName;
    readonly vad: VadProviderName;
  };
  /** Per-IP limit on requests that fail validation (signature, shape); over it the IP is banned. */
  readonly rateLimit: { readonly maxFailuresPerMinute: number; readonly banMinutes: number };
  readonly maxCalls: number;
  /** Worker threads for the embedded recognizer and synthesizer (default: the number of cores). */
  readonly speechWorkers: number;
  /**
   * WORKERS: engine processes behind one port (node:cluster, src/cluster); 1 runs the engine in this
   * process alone. `auto`: the cores available. With several, an unset SPEECH_WORKERS is divided among them.
   */
  readonly workers: number;
  /** After SIGTERM, live calls may go on this long before they are ended politely. */
  readonly drainTimeoutMs: number;
  /** Journals older than this are deleted (0: keep forever). */
  readonly journalRetentionDays: number;
  /** Fastify `trustProxy` as an address/CIDR list; null = trust no proxy headers. */
  readonly trustProxy: readonly string[] | null;
  readonly inspector: { readonly token: string | null };
  /** METRICS_TOKEN: a bearer token for GET /metrics only (INSPECTOR_TOKEN is accepted there too). */
  readonly metricsToken: string | null;
  /**
   * STREAM_TOKEN_SECRET: HMAC key of the Media Stream tokens. Null: a random key per process, right
   * for one process only; several processes or instances must share one (calls/stream-token.ts).
   */
  readonly streamTokenSecret: string | null;
  /**
   * SMTP server for follow-up e-mails (src/delivery/email.ts): `smtp://` (STARTTLS when offered)
   * or `smtps://` (TLS), credentials percent-encoded in the URL. Null: no e-mail delivery.
   * Holds a password: shown as "[set]" when the config is logged.
   */
  readonly smtpUrl: string | null;
  /** DATABASE_URL: null → SQLite `data/vetline.db`; `sqlite:<path>`; `postgres://…` (may hold a password). */
  readonly databaseUrl: string | null;
  /** CALLER_KEY_SECRET: HMAC key of caller numbers for the per-caller limits; null: random per process. */
  readonly callerKeySecret: string | null;
  /**
   * REDIS_URL (`redis://` or `rediss://`, Redis 7 or Valkey): state shared between instances (src/redis).
   * Null: one process, everything in memory. May hold a password: shown without it when logged.
   */
  readonly redisUrl: string | null;
  /** REDIS_HEARTBEAT_MS: how often an instance rewrites its live calls; an instance silent for 3 beats drops out. */
  readonly redisHeartbeatMs: number;
  /** JOURNAL_S3_URL: finished journals are also copied there (src/journal/s3-shipper.ts); null: kept in JOURNAL_DIR only. */
  readonly journalS3: JournalS3Target | null;
  /** AWS_REGION: the region S3 requests are signed for (AWS S3 redirects a wrong one; S3-compatible storage mostly ignores it). */
  readonly awsRegion: string;
}

const SECRET_VARS = ['TWILIO_AUTH_TOKEN', 'OPENAI_API_KEY', 'ELEVENLABS_API_KEY', 'INSPECTOR_TOKEN', 'METRICS_TOKEN', 'STREAM_TOKEN_SECRET', 'SMTP_URL', 'CALLER_KEY_SECRET', 'REDIS_URL'] as const;

/** ElevenLabs' premade "Rachel": calm, clear, available on every plan. */
export const DEFAULT_ELEVENLABS_VOICE = '21m00Tcm4TlvDq8ikWAM';

/**
 * `STT_PROVIDER=auto`: the first cloud recognizer whose key is set, in this order, else `local`.
 * Scribe first: it sends partials while the caller talks, OpenAI's transcription models only after
 * the commit (docs/providers.md, "Which recognizer by default").
 */
export const STT_AUTO_ORDER = ['elevenlabs', 'openai'] as const;

/** The schema depends on facts read first (the mode, the keys), so cross-variable rules report with the rest. */
const envSchema = (decision: ModeDecision, hasOpenAiKey: boolean, hasElevenLabsKey: boolean, hasRedis: boolean) => {
  const production = decision.mode === 'production';
  const required = (what: string) => `required when NODE_ENV=production (${what})`;
  const authToken = (fix: string) => secret('copy the primary auth token from the Twilio console', fix);
  const origin = variable(
    (t) => {
      const u = parseUrl(t);
      const schemes = production ? ['https:'] : ['https:', 'http:'];
      // Equal to its own origin: no path, query, fragment, credentials, default port or upper case.
      return u && schemes.includes(u.protocol) && u.origin === t ? t : undefined;
    },
    `must be an ${production ? 'https' : 'https (or, outside production, http)'} origin with a lower-case host and no path, query or trailing slash`,
    (t) => `set PUBLIC_BASE_URL=https://${parseUrl(t)?.host || 'vetline.example.com'}`,
    production ? { missing: `${required('Twilio signatures are checked against it')}; set PUBLIC_BASE_URL=https://<public host>` } : {},
  );
  return z.object({
    NODE_ENV: oneOf('NODE_ENV', ['development', 'production', 'test'], 'development'),
    VETLINE_DEV: variable((t) => (t === '1' ? true : t === '0' ? false : undefined), 'must be 1 or 0', 'set VETLINE_DEV=1 for development or unset it')
      .optional()
      .superRefine((on, ctx) => {
        if (on && production) {
          ctx.addIssue({ code: 'custom', message: 'cannot be 1 when NODE_ENV=production (development conveniences: unsigned webhooks, an open inspector); unset VETLINE_DEV' });
        }
      }),
    PORT: integer('PORT', 1, 65535, 3000),
    HOST: variable(
      (t) => (isIP(t) !== 0 || HOSTNAME.test(t) ? t : undefined),
      'must be an IP address or a lower-case host name',
      'set HOST=127.0.0.1 (0.0.0.0 in a container) or unset it',
    ).default('127.0.0.1'),
    PUBLIC_BASE_URL: production ? origin : origin.optional(),
    TWILIO_ACCOUNT_SID: variable(
      // Canonical form (Twilio sends lower-case hex): a SID pasted in upper case matches webhooks and streams alike.
      (t) => (/^AC[0-9a-f]{32}$/i.test(t) ? `AC${t.slice(2).toLowerCase()}` : undefined),
      'must be "AC" followed by 32 hex digits (value not shown)',
      'copy the Account SID from the Twilio console or unset it',
      { secret: true }, // not a secret, but easily swapped with the auth token: never echo it
    ).optional(),
    TWILIO_AUTH_TOKEN: production
      ? authToken(`${required('webhook signatures are checked with it')}; set TWILIO_AUTH_TOKEN to the account's primary auth token`)
      : decision.mode === 'protected'
        ? authToken(
            `required when the engine is reachable beyond this machine (${decision.exposed.join(' and ')}): webhooks must be signed; ` +
              "set TWILIO_AUTH_TOKEN to the account's primary auth token, or VETLINE_DEV=1 to run unsigned for development",
          )
        : secret('copy the primary auth token from the Twilio console, or unset it').optional(),
    OPENAI_API_KEY: secret('paste the key without surrounding whitespace, or unset it').optional(),
    ELEVENLABS_API_KEY: secret('paste the key without surrounding whitespace, or unset it').optional(),
    OPENAI_BASE_URL: baseUrl('OPENAI_BASE_URL', 'https://api.openai.com/v1'),
    ELEVENLABS_BASE_URL: baseUrl('ELEVENLABS_BASE_URL', 'https://api.elevenlabs.io'),
    OPENAI_STT_MODEL: modelName('OPENAI_STT_MODEL', 'gpt-4o-mini-transcribe'),
    OPENAI_STT_MODE: oneOf('OPENAI_STT_MODE', ['realtime', 'batch'], 'realtime'),
    ELEVENLABS_VOICE_ID: modelName('ELEVENLABS_VOICE_ID', DEFAULT_ELEVENLABS_VOICE),
    ELEVENLABS_MODEL: modelName('ELEVENLABS_MODEL', 'eleven_flash_v2_5'),
    ELEVENLABS_STT_MODEL: modelName('ELEVENLABS_STT_MODEL', 'scribe_v2_realtime'),
    ELEVENLABS_TRANSPORT: oneOf('ELEVENLABS_TRANSPORT', ['http', 'websocket'], 'http'),
    LOG_LEVEL: oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    TENANTS_DIR: z.string().default('config/tenants'),
    JOURNAL_DIR: z.string().default('data/journals'),
    STT_PROVIDER: provider('STT_PROVIDER', ['auto', 'local', 'openai', 'elevenlabs', 'fake'], {
      openai: ['OPENAI_API_KEY', hasOpenAiKey], elevenlabs: ['ELEVENLABS_API_KEY', hasElevenLabsKey],
    }),
    TTS_PROVIDER: provider('TTS_PROVIDER', ['auto', 'local', 'elevenlabs', 'fake'], { elevenlabs: ['ELEVENLABS_API_KEY', hasElevenLabsKey] }),
    AGENT_PROVIDER: provider('AGENT_PROVIDER', ['auto', 'local', 'openai', 'fake'], { openai: ['OPENAI_API_KEY', hasOpenAiKey] }),
    VAD_PROVIDER: oneOf('VAD_PROVIDER', ['auto', 'local', 'energy', 'fake'], 'auto'),
    RATE_LIMIT_MAX_FAILURES: integer('RATE_LIMIT_MAX_FAILURES', 1, 10_000, 10),
    RATE_LIMIT_BAN_MINUTES: integer('RATE_LIMIT_BAN_MINUTES', 1, 1440, 10),
    MAX_CALLS: integer('MAX_CALLS', 1, 100_000, 500),
    SPEECH_WORKERS: integer('SPEECH_WORKERS', 1, 64, Math.min(64, availableParallelism())),
    WORKERS: variable(
      (t) => (t === 'auto' ? Math.min(64, availableParallelism()) : /^\d{1,2}$/.test(t) && Number(t) >= 1 && Number(t) <= 64 ? Number(t) : undefined),
      'must be an integer 1-64 or auto',
      'set WORKERS=auto (one per core), WORKERS=1 (one process) or unset it',
    ).default(1),
    DRAIN_TIMEOUT_MS: integer('DRAIN_TIMEOUT_MS', 0, 3_600_000, 30_000),
    JOURNAL_RETENTION_DAYS: integer('JOURNAL_RETENTION_DAYS', 0, 36_500, 30),
    TRUST_PROXY: variable(
      (t) => {
        const list = t.split(',').map((e) => e.trim()).filter((e) => e !== '');
        return list.length > 0 && list.every(proxyEntry) ? list : undefined;
      },
      'must be a comma-separated list of proxy addresses or CIDRs such as 10.0.0.0/8, never true or a hop count (a forged X-Forwarded-For would then be believed)',
      "set TRUST_PROXY to the load balancer's address range, or unset it",
    ).optional(),
    INSPECTOR_TOKEN: strongToken(),
    METRICS_TOKEN: strongToken(),
    // Every process and instance that may receive a call's stream must verify the token its webhook minted.
    STREAM_TOKEN_SECRET: production
      ? strongTokenRequired(`${required('the Media Stream tokens are signed with it, and every worker and instance must share it')}; generate one with \`openssl rand -hex 32\``)
      : hasRedis
        ? strongTokenRequired('required when REDIS_URL is set (instances share calls: a stream reaching another instance than its webhook must verify its token there); set the same value on every instance, generated with `openssl rand -hex 32`')
        : strongToken(),
    SMTP_URL: variable(
      (t) => {
        const u = parseUrl(t);
        const ok = u && /^smtps?:$/.test(u.protocol) && u.hostname !== '' && /^\/?$/.test(u.pathname) && !u.search && !u.hash && /^\S+$/.test(t);
        return ok ? t : undefined;
      },
      'must be an smtp:// or smtps:// URL with a host and no path, query or fragment (value not shown: it may hold a password)',
      'set SMTP_URL=smtps://user:password@smtp.example.com (percent-encode special characters in the password) or unset it',
      { secret: true },
    ).optional(),
    // Phone numbers are few enough to try them all: a weak key would make the hashes reversible.
    CALLER_KEY_SECRET: strongToken(),
    REDIS_URL: variable(
      (t) => {
        const u = parseUrl(t);
        const db = u ? u.pathname.replace(/^\//, '') : '';
        const ok = u && /^rediss?:$/.test(u.protocol) && u.hostname !== '' && /^\d{0,2}$/.test(db) && !u.search && !u.hash && /^\S+$/.test(t);
        return ok ? t : undefined;
      },
      'must be a redis:// or rediss:// URL with a host, an optional database number and no query (value not shown: it may hold a password)',
      'set REDIS_URL=redis://:password@redis.example.com:6379/0 (percent-encode special characters in the password), or unset it to run one instance alone',
      { secret: true },
    ).optional(),
    REDIS_HEARTBEAT_MS: integer('REDIS_HEARTBEAT_MS', 100, 60_000, 5_000),
    JOURNAL_S3_URL: variable(
      (t) => readJournalS3Url(t, production),
      `must be s3://<bucket>[/<prefix>] or, for S3-compatible storage, ${production ? 'https' : 'https (or, outside production, http)'}://<host>[:<port>]/<bucket>[/<prefix>], ` +
        'with a valid bucket name and no credentials, query or fragment (value not shown)',
      'set JOURNAL_S3_URL=s3://my-bucket/journals and give the credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the machine\'s role), or unset it',
      { secret: true }, // someone may have pasted credentials into it
    ).optional(),
    AWS_REGION: variable(
      (t) => (/^[a-z]{2}(-[a-z0-9]+){1,3}$/.test(t) ? t : undefined),
      'must be a region name such as eu-west-1',
      'set AWS_REGION=us-east-1 or unset it',
    ).default('us-east-1'),
    DATABASE_URL: variable(
      (t) => (/^sqlite:\S+$/.test(t) || (/^postgres(ql)?:\/\/\S+$/.test(t) && parseUrl(t) !== null) ? t : undefined),
      'must be sqlite:<path> or a postgres:// URL (value not shown: it may hold a password)',
      'set DATABASE_URL=sqlite:data/vetline.db or DATABASE_URL=postgres://user:password@host/db, or unset it for the embedded SQLite file',
      { secret: true },
    ).optional(),
  });
};

/** Every variable loadEnv reads (docs/configuration.md documents each; a test checks). */
export const ENV_VARS = Object.freeze(Object.keys(envSchema({ mode: 'local', reason: '', exposed: [] }, false, false, false).shape));

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** `smtps://user:secret@host` → `smtps://user:[set]@host`: the server and account stay visible. */
function withoutPassword(url: string): string {
  const u = new URL(url);
  if (u.password === '') return url;
  return `${u.protocol}//${u.username}:[set]@${u.host}`;
}

/** What the config looks like in logs: secrets reduced to whether they are set. */
function withoutSecrets(c: AppConfig) {
  const set = (v: string | null) => (v === null ? null : '[set]');
  return {
    ...c,
    twilio: { ...c.twilio, authToken: set(c.twilio.authToken) },
    openai: { ...c.openai, apiKey: set(c.openai.apiKey) },
    elevenlabs: { ...c.elevenlabs, apiKey: set(c.elevenlabs.apiKey) },
    inspector: { token: set(c.inspector.token) },
    metricsToken: set(c.metricsToken),
    streamTokenSecret: set(c.streamTokenSecret),
    smtpUrl: c.smtpUrl === null ? null : withoutPassword(c.smtpUrl),
    callerKeySecret: set(c.callerKeySecret),
    databaseUrl: c.databaseUrl === null || c.databaseUrl.startsWith('sqlite:') ? c.databaseUrl : withoutPassword(c.databaseUrl),
    redisUrl: c.redisUrl === null ? null : withoutPassword(c.redisUrl),
  };
}

export function loadEnv(env: NodeJS.ProcessEnv): AppConfig {
  // Empty (or blank) counts as unset, so `FOO=` in a .env file means "use the default".
  const raw: Record<string, string | undefined> = {};
  for (const name of ENV_VARS) {
    const v = env[name];
    raw[name] = v === undefined || v.trim() === '' ? undefined : v;
  }
  // The mode is decided from the values as given; an invalid HOST or PUBLIC_BASE_URL reports its own
  // line and does not add a second one (such as "TWILIO_AUTH_TOKEN required") to the message.
  const validHost = (t: string | undefined): t is string => t !== undefined && (isIP(t) !== 0 || HOSTNAME.test(t));
  const validOrigin = (t: string | undefined): t is string => t !== undefined && /^https?:$/.test(parseUrl(t)?.protocol ?? '') && parseUrl(t)?.origin === t;
  const derivedBaseUrl = (host: string, port: string | number) => `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const modeHost = validHost(raw.HOST) ? raw.HOST : '127.0.0.1';
  const decision = engineMode({
    nodeEnv: raw.NODE_ENV,
    vetlineDev: raw.VETLINE_DEV === '1',
    host: modeHost,
    publicBaseUrl: validOrigin(raw.PUBLIC_BASE_URL) ? raw.PUBLIC_BASE_URL : derivedBaseUrl(modeHost, /^\d{1,5}$/.test(raw.PORT ?? '') ? (raw.PORT ?? '') : 3000),
  });
  const parsed = envSchema(decision, raw.OPENAI_API_KEY !== undefined, raw.ELEVENLABS_API_KEY !== undefined, raw.REDIS_URL !== undefined).safeParse(raw);

  if (!parsed.success) {
    const lines = new Map<string, string>(); // first problem per variable: one line each
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      if (!lines.has(name)) lines.set(name, `${name}: ${issue.message}`);
    }
    let message = [...lines.values()].join('\n');
    // Belt and braces: a secret pasted into the wrong variable must not be echoed either.
    for (const name of SECRET_VARS) {
      const s = raw[name];
      if (s !== undefined && s.length >= 4) message = message.split(s).join('[secret]');
    }
    throw new VetError('VET_E_CONFIG', message);
  }

  const e = parsed.data;
  const config: AppConfig = {
    nodeEnv: e.NODE_ENV,
    mode: decision.mode,
    modeReason: decision.reason,
    port: e.PORT,
    host: e.HOST,
    publicBaseUrl: e.PUBLIC_BASE_URL ?? derivedBaseUrl(e.HOST, e.PORT),
    logLevel: e.LOG_LEVEL,
    twilio: { accountSid: e.TWILIO_ACCOUNT_SID ?? null, authToken: e.TWILIO_AUTH_TOKEN ?? null },
    webhookValidation: e.TWILIO_AUTH_TOKEN === undefined ? 'off-development' : 'on',
    openai: { apiKey: e.OPENAI_API_KEY ?? null, baseUrl: e.OPENAI_BASE_URL ?? null, sttModel: e.OPENAI_STT_MODEL, sttMode: e.OPENAI_STT_MODE },
    elevenlabs: {
      apiKey: e.ELEVENLABS_API_KEY ?? null,
      baseUrl: e.ELEVENLABS_BASE_URL ?? null,
      voiceId: e.ELEVENLABS_VOICE_ID,
      modelId: e.ELEVENLABS_MODEL,
      sttModel: e.ELEVENLABS_STT_MODEL,
      transport: e.ELEVENLABS_TRANSPORT,
    },
    tenantsDir: e.TENANTS_DIR,
    journalDir: e.JOURNAL_DIR,
    providers: {
      stt: e.STT_PROVIDER === 'auto' ? (STT_AUTO_ORDER.find((p) => (p === 'openai' ? e.OPENAI_API_KEY : e.ELEVENLABS_API_KEY)) ?? 'local') : e.STT_PROVIDER,
      tts: e.TTS_PROVIDER === 'auto' ? (e.ELEVENLABS_API_KEY ? 'elevenlabs' : 'local') : e.TTS_PROVIDER,
      agent: e.AGENT_PROVIDER === 'auto' ? (e.OPENAI_API_KEY ? 'openai' : 'local') : e.AGENT_PROVIDER,
      vad: e.VAD_PROVIDER === 'auto' ? 'local' : e.VAD_PROVIDER, // no cloud VAD
    },
    rateLimit: { maxFailuresPerMinute: e.RATE_LIMIT_MAX_FAILURES, banMinutes: e.RATE_LIMIT_BAN_MINUTES },
    maxCalls: e.MAX_CALLS,
    // Each worker process has its own speech threads: share the cores unless SPEECH_WORKERS says otherwise.
    speechWorkers: env.SPEECH_WORKERS === undefined && e.WORKERS > 1 ? Math.max(1, Math.floor(e.SPEECH_WORKERS / e.WORKERS)) : e.SPEECH_WORKERS,
    workers: e.WORKERS,
    drainTimeoutMs: e.DRAIN_TIMEOUT_MS,
    journalRetentionDays: e.JOURNAL_RETENTION_DAYS,
    trustProxy: e.TRUST_PROXY ?? null,
    inspector: { token: e.INSPECTOR_TOKEN ?? null },
    metricsToken: e.METRICS_TOKEN ?? null,
    streamTokenSecret: e.STREAM_TOKEN_SECRET ?? null,
    smtpUrl: e.SMTP_URL ?? null,
    databaseUrl: e.DATABASE_URL ?? null,
    callerKeySecret: e.CALLER_KEY_SECRET ?? null,
    redisUrl: e.REDIS_URL ?? null,
    redisHeartbeatMs: e.REDIS_HEARTBEAT_MS,
    journalS3: e.JOURNAL_S3_URL ?? null,
    awsRegion: e.AWS_REGION,
  };
  const safe = () => withoutSecrets(config);
  Object.defineProperty(config, 'toJSON', { value: safe });
  Object.defineProperty(config, inspect.custom, { value: safe });
  return deepFreeze(config);
}
