/**
 * Starts a real engine on 127.0.0.1 (port 0) for end-to-end tests: real config parsing, the
 * shipped example clinics, real HTTP/WebSocket stack; providers and Twilio REST are injected.
 *
 * The environment is NODE_ENV=test with PUBLIC_BASE_URL https://voice.test and a Twilio token
 * (signatures on), plus VETLINE_DEV=1 unless `dev: false`: most tests read /twilio/sessions,
 * /metrics and the inspector without a token, as a developer does. Tests of access rules pass
 * `dev: false` (and NODE_ENV=production, or an empty NODE_ENV for `npm start`'s local mode).
 */
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Prompts } from '../../src/calls/child-actors.js';
import type { CallHandoff } from '../../src/calls/handoff.js';
import type { SessionTap } from '../../src/calls/session.js';
import type { TokenUseStore } from '../../src/calls/stream-token.js';
import type { Providers } from '../../src/providers/types.js';
import { loadEnv } from '../../src/config/env.js';
import { loadTenants, type TenantDirectory } from '../../src/config/tenants.js';
import { createJournalFactory, type JournalFactory } from '../../src/journal/writer.js';
import { createLogger } from '../../src/observability/logger.js';
import { openSharedState, type SharedState } from '../../src/redis/index.js';
import { buildServer, type Engine, type FollowUpDeps } from '../../src/server.js';
import type { TwilioRest } from '../../src/twilio/rest-types.js';
import type { MediaStreamOptions } from '../../src/twilio/stream-socket.js';

export const TEST_BASE_URL = 'https://voice.test';
export const TEST_TOKEN = 'test-auth-token-0123456789abcdef';
export const TEST_ACCOUNT = `AC${'a'.repeat(32)}`;
/** STREAM_TOKEN_SECRET of engines started with NODE_ENV=production. */
export const TEST_STREAM_TOKEN_SECRET = 'test-stream-token-secret-9f3a7c1e5b2d8046';
export const TENANTS_DIR = fileURLToPath(new URL('../../config/tenants', import.meta.url));

export interface TestEngine extends Engine {
  url: string;
  logs: string[];
  /** Set when `journalDir` was given. */
  journal: JournalFactory | null;
  /** Set when `env` has REDIS_URL (src/redis): what this engine shares with the others. */
  shared: SharedState | null;
  close(): Promise<void>;
}

export async function startEngine(opts: {
  providers: Providers;
  prompts: Prompts;
  rest?: TwilioRest | null;
  env?: Record<string, string>;
  /** VETLINE_DEV=1 (development conveniences: open inspector, call list, metrics, desk). Default true. */
  dev?: boolean;
  streamOptions?: MediaStreamOptions;
  /** Opt-in: journal every call into this directory (docs/journal.md). */
  journalDir?: string;
  /** Opt-in: every state change and command of every call. */
  tap?: SessionTap;
  /** Environment the clinic files' `secretEnv`/`tokenEnv` are read from (default: none). */
  tenantEnv?: NodeJS.ProcessEnv;
  /** Opt-in follow-through (store, outbox, desk), built from the loaded clinics. */
  followUps?: (tenants: TenantDirectory) => FollowUpDeps;
  /** Shared single use of stream tokens and the takeover of calls answered elsewhere (several engines as workers). */
  tokenUses?: TokenUseStore;
  handoff?: CallHandoff;
}): Promise<TestEngine> {
  const config = loadEnv({
    NODE_ENV: 'test',
    PUBLIC_BASE_URL: TEST_BASE_URL,
    TWILIO_AUTH_TOKEN: TEST_TOKEN,
    TWILIO_ACCOUNT_SID: TEST_ACCOUNT,
    TENANTS_DIR,
    LOG_LEVEL: 'debug',
    ...(opts.dev === false ? {} : { VETLINE_DEV: '1' }),
    // Production requires one (docs/configuration.md); elsewhere the engine makes a key of its own.
    ...(opts.env?.NODE_ENV === 'production' ? { STREAM_TOKEN_SECRET: TEST_STREAM_TOKEN_SECRET } : {}),
    ...opts.env,
  });
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = createLogger({ level: config.logLevel, destination });
  const tenants = await loadTenants(config.tenantsDir, { env: opts.tenantEnv ?? {}, nodeEnv: config.nodeEnv });
  const journal = opts.journalDir ? await createJournalFactory({ dir: opts.journalDir, engineVersion: 'test', logger }) : null;
  const shared = config.redisUrl ? await openSharedState({ url: config.redisUrl, heartbeatMs: config.redisHeartbeatMs, logger }) : null;
  const engine = await buildServer({
    shared,
    config,
    tenants,
    providers: opts.providers,
    prompts: opts.prompts,
    rest: opts.rest ?? null,
    logger,
    version: 'test',
    ...(opts.streamOptions ? { streamOptions: opts.streamOptions } : {}),
    ...(journal ? { journal } : {}),
    ...(opts.tap ? { tap: opts.tap } : {}),
    ...(opts.followUps ? { followUps: opts.followUps(tenants) } : {}),
    ...(opts.tokenUses ? { tokenUses: opts.tokenUses } : {}),
    ...(opts.handoff ? { handoff: opts.handoff } : {}),
  });
  const address = await engine.app.listen({ port: 0, host: '127.0.0.1' });
  const close = async () => {
    await engine.app.close();
    await journal?.flushAll();
    await shared?.close();
  };
  return { ...engine, url: address, logs, journal, shared, close };
}

export const FIXTURE_TENANTS_DIR = fileURLToPath(new URL('../fixtures/tenants', import.meta.url));

/**
 * The engine as `npm start` runs it without keys (energy VAD, offline recognizer and synthesizer,
 * rule-based receptionist, pre-rendered prompts), on the short test clinics.
 */
export async function startLocalEngine(opts: Omit<Parameters<typeof startEngine>[0], 'providers' | 'prompts'> = {}): Promise<TestEngine> {
  const [{ localAgent }, { createLocalStt }, { createLocalTts }, { PromptCache }, { energyVad }] = await Promise.all([
    import('../../src/providers/agent/local.js'),
    import('../../src/providers/stt/local.js'),
    import('../../src/providers/tts/local.js'),
    import('../../src/providers/tts/prompt-cache.js'),
    import('../../src/providers/vad/energy.js'),
  ]);
  const tts = createLocalTts();
  const prompts = new PromptCache(tts);
  await prompts.warm((await loadTenants(FIXTURE_TENANTS_DIR)).all());
  return startEngine({
    ...opts,
    providers: { vad: energyVad, stt: await createLocalStt(), tts, agent: localAgent },
    prompts,
    env: { TENANTS_DIR: FIXTURE_TENANTS_DIR, ...opts.env },
  });
}
