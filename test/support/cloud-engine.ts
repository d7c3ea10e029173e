/**
 * The engine as deployed with keys: providers built by the real `createProviders` from the real
 * config, the OpenAI and ElevenLabs adapters talking their wire protocols to local fake servers,
 * the embedded providers behind them as fallbacks. Used by the cloud end-to-end tests and figures.
 *
 * Both recognizers' fakes run and answer from the same `transcripts`: the OpenAI Realtime one per
 * commit, Scribe per utterance at its first speech. Which one the engine uses is `stt` (default:
 * what `STT_PROVIDER=auto` picks with both keys set, Scribe). ElevenLabs has one base URL for
 * synthesis and recognition, so a front (test/fakes/front.ts) routes `/v1/speech-to-text/` to the
 * Scribe fake and the rest to the synthesis fake.
 */
import { Writable } from 'node:stream';
import { loadEnv } from '../../src/config/env.js';
import { loadTenants, type TenantDirectory } from '../../src/config/tenants.js';
import { createLogger } from '../../src/observability/logger.js';
import { createProviders, type BuiltProviders, type ProviderTuning } from '../../src/providers/index.js';
import type { FollowUpDeps } from '../../src/server.js';
import type { TwilioRest } from '../../src/twilio/rest-types.js';
import { startFakeScribe, type FakeScribe } from '../fakes/elevenlabs-scribe-server.js';
import { startElevenLabsFake, type FakeElevenLabs, type FakeElevenLabsOptions } from '../fakes/elevenlabs-server.js';
import { portOf, startFront } from '../fakes/front.js';
import { startFakeOpenAi, type FakeOpenAi } from '../fakes/openai-server.js';
import type { ChatResponder } from '../fakes/openai-chat-server.js';
import { FIXTURE_TENANTS_DIR, startEngine, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from './engine.js';

export const OPENAI_KEY = 'sk-canary-openai-0123456789abcdefCANARY';
export const ELEVENLABS_KEY = 'canary-xi-key-5e4d3c2b1a09f8e7';

export interface CloudRig {
  engine: TestEngine;
  openai: FakeOpenAi;
  elevenlabs: FakeElevenLabs;
  /** Scribe Realtime (speech to text), behind the same ElevenLabs origin. */
  scribe: FakeScribe;
  /** Log lines written while the providers were built (start-up), before the engine's own. */
  startupLogs: string[];
  close(): Promise<void>;
}

export async function startCloudEngine(opts: {
  responder?: ChatResponder;
  /** Transcript for each committed utterance, in order (then ''). */
  transcripts?: string[];
  /** STT_PROVIDER for the engine (default: auto, which picks Scribe with both keys set). */
  stt?: 'openai' | 'elevenlabs';
  rest?: TwilioRest | null;
  env?: Record<string, string>;
  tuning?: ProviderTuning;
  journalDir?: string;
  /** Clinic files (default: test/fixtures/tenants), for the providers' prompts and the engine alike. */
  tenantsDir?: string;
  /** Environment the clinic files' `secretEnv`/`tokenEnv` are read from (default: none). */
  tenantEnv?: NodeJS.ProcessEnv;
  /**
   * Opt-in follow-through (store, outbox, desk), built from the loaded clinics; `summarizer` is the
   * one `createProviders` built (the model's staff summary through the fake chat server).
   */
  followUps?: (tenants: TenantDirectory, built: Pick<BuiltProviders, 'summarizer'>) => FollowUpDeps;
  /**
   * What the engine's OPENAI_BASE_URL points at, given the fake's URL (default: the fake itself);
   * e.g. a proxy in front of it that rewrites what the fake sends.
   */
  openaiFront?: (fakeUrl: string) => string | Promise<string>;
  /** How the ElevenLabs fake cuts its audio into chunks (default: 800 bytes). */
  elevenlabsChunkBytes?: FakeElevenLabsOptions['chunkBytes'];
} = {}): Promise<CloudRig> {
  const transcripts = [...(opts.transcripts ?? [])];
  const openai = await startFakeOpenAi({
    apiKey: OPENAI_KEY,
    ...(opts.responder ? { responder: opts.responder } : {}),
    transcription: { responder: () => transcripts.shift() ?? '' },
  });
  const elevenlabs = await startElevenLabsFake({
    apiKey: ELEVENLABS_KEY,
    ...(opts.elevenlabsChunkBytes !== undefined ? { chunkBytes: opts.elevenlabsChunkBytes } : {}),
  });
  const scribe = await startFakeScribe({ apiKey: ELEVENLABS_KEY, responder: () => transcripts.shift() ?? '' });
  const elevenFront = await startFront((path) => (path.startsWith('/v1/speech-to-text/') ? portOf(scribe.url) : portOf(elevenlabs.url)));
  const tenantsDir = opts.tenantsDir ?? FIXTURE_TENANTS_DIR;
  const env = {
    TENANTS_DIR: tenantsDir,
    OPENAI_API_KEY: OPENAI_KEY,
    OPENAI_BASE_URL: opts.openaiFront ? await opts.openaiFront(openai.url) : openai.url,
    ELEVENLABS_API_KEY: ELEVENLABS_KEY,
    ELEVENLABS_BASE_URL: elevenFront.origin,
    ...(opts.stt ? { STT_PROVIDER: opts.stt } : {}),
    ...opts.env,
  };
  const startupLogs: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        startupLogs.push(chunk.toString('utf8'));
        done();
      },
    }),
  });
  // The providers' config, from the environment startEngine parses too (its test defaults: signed webhooks).
  const config = loadEnv({ NODE_ENV: 'test', PUBLIC_BASE_URL: TEST_BASE_URL, TWILIO_AUTH_TOKEN: TEST_TOKEN, ...env });
  const tenants = await loadTenants(tenantsDir, { env: opts.tenantEnv ?? {}, nodeEnv: config.nodeEnv });
  const { providers, prompts, summarizer } = await createProviders(config, tenants.all(), logger, opts.tuning);
  const { followUps } = opts;
  const engine = await startEngine({
    providers,
    prompts,
    env,
    ...(opts.rest !== undefined ? { rest: opts.rest } : {}),
    ...(opts.journalDir ? { journalDir: opts.journalDir } : {}),
    ...(opts.tenantEnv ? { tenantEnv: opts.tenantEnv } : {}),
    ...(followUps ? { followUps: (loaded: TenantDirectory) => followUps(loaded, { summarizer }) } : {}),
  });
  return {
    engine,
    openai,
    elevenlabs,
    scribe,
    startupLogs,
    async close() {
      await engine.close();
      await elevenFront.close();
      await Promise.all([openai.close(), elevenlabs.close(), scribe.close()]);
    },
  };
}
