/**
 * Builds the deployment's providers from the resolved provider names and pre-renders every
 * clinic's fixed prompts, so greetings, consent, emergency scripts and menus start instantly.
 */
import type { Logger } from 'pino';
import type { Providers } from '../calls/session.js';
import type { AppConfig } from '../config/env.js';
import type { Tenant } from '../config/tenant.schema.js';
import { createFakeAgent } from './agent/fake.js';
import { localAgent } from './agent/local.js';
import { createFakeStt } from './stt/fake.js';
import { createLocalStt } from './stt/local.js';
import { createFakeTts } from './tts/fake.js';
import { createLocalTts } from './tts/local.js';
import { PromptCache } from './tts/prompt-cache.js';
import type { SttProvider } from './stt/types.js';
import type { TtsProvider } from './tts/types.js';
import { energyVad } from './vad/energy.js';
import { createFakeVad } from './vad/fake.js';

export interface BuiltProviders {
  providers: Providers;
  prompts: PromptCache;
}

/**
 * Cloud adapters (OpenAI, ElevenLabs) are not part of this build yet: a cloud name resolved from
 * `auto` (a key is set) falls back to the embedded provider, and says so once at start-up.
 */
export async function createProviders(config: AppConfig, tenants: readonly Tenant[], logger: Logger): Promise<BuiltProviders> {
  const names = config.providers;
  const notYet = (kind: string, name: string) =>
    logger.warn({ kind, requested: name, using: 'local' }, 'cloud provider not available in this build; using the embedded one');

  let stt: SttProvider;
  if (names.stt === 'fake') stt = createFakeStt();
  else {
    if (names.stt === 'openai') notYet('stt', names.stt);
    stt = await createLocalStt({ onWarning: (message) => logger.debug({ message }, 'local stt') });
  }

  let tts: TtsProvider;
  if (names.tts === 'fake') tts = createFakeTts();
  else {
    if (names.tts === 'elevenlabs') notYet('tts', names.tts);
    tts = createLocalTts();
  }

  if (names.agent === 'openai') notYet('agent', names.agent);
  const agent = names.agent === 'fake' ? createFakeAgent() : localAgent;
  const vad = names.vad === 'fake' ? createFakeVad() : energyVad;

  const prompts = new PromptCache(tts);
  const warmed = await prompts.warm(tenants);
  logger.info({ clips: warmed.clips, ms: warmed.ms }, 'prompts pre-rendered');
  return { providers: { vad, stt, tts, agent }, prompts };
}
