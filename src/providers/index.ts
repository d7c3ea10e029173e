/**
 * Builds the deployment's providers from the resolved provider names and the clinics' own choices,
 * and pre-renders every clinic's fixed prompts, so greetings, consent, emergency scripts and menus
 * start instantly.
 *
 * A cloud provider never runs alone: it is wrapped with its embedded counterpart as the fallback
 * (src/providers/fallback.ts) behind one circuit breaker per provider (src/providers/resilience.ts).
 * Each clinic may pick `local` or a cloud provider (tenant `providers`); `auto` follows the
 * deployment. A clinic asking for a cloud provider whose key is not set gets the embedded one, and
 * start-up says so once.
 */
import type { Logger } from 'pino';
import type { AppConfig } from '../config/env.js';
import type { Tenant } from '../config/tenant.schema.js';
import { createFakeAgent } from './agent/fake.js';
import { localAgent } from './agent/local.js';
import { createOpenAiAgent } from './agent/openai.js';
import { createOpenAiSummarizer } from './agent/openai-summary.js';
import type { AgentProvider } from './agent/types.js';
import { DEFAULT_BUDGETS, fallbackAgent, fallbackStt, fallbackTts, type ProviderBudgets } from './fallback.js';
import { DEFAULT_BREAKER, ProviderHealth, type BreakerOptions } from './resilience.js';
import { speechPool } from './speech/pool.js';
import { createFakeStt } from './stt/fake.js';
import { createElevenLabsStt } from './stt/elevenlabs.js';
import { createLocalStt } from './stt/local.js';
import { createOpenAiBatchStt, createOpenAiStt } from './stt/openai.js';
import type { SttProvider } from './stt/types.js';
import { createElevenLabsTts, loadElevenLabs } from './tts/elevenlabs.js';
import { createElevenLabsWsTts } from './tts/elevenlabs-ws.js';
import { createFakeTts } from './tts/fake.js';
import { createLocalTts } from './tts/local.js';
import { PromptCache } from './tts/prompt-cache.js';
import type { TtsProvider } from './tts/types.js';
import type { CallSummarizer, Providers } from './types.js';
import { energyVad } from './vad/energy.js';
import { createFakeVad } from './vad/fake.js';

export interface BuiltProviders {
  providers: Providers;
  prompts: PromptCache;
  /** For post-call recording transcription: OpenAI batch when a key is set, else the embedded recognizer. */
  recordingStt: SttProvider;
  /** Staff summaries by the model, for clinics whose receptionist is the OpenAI agent; null: the template. */
  summarizer: (tenant: Tenant) => CallSummarizer | null;
}

/** Test and benchmark knobs; production uses the defaults. */
export interface ProviderTuning {
  breaker?: BreakerOptions;
  budgets?: ProviderBudgets;
}

type Kind = 'stt' | 'tts' | 'agent';
type Choice = 'local' | 'fake' | 'openai' | 'elevenlabs';
type ProviderSet = { stt: SttProvider; tts: TtsProvider; agent: AgentProvider };

export async function createProviders(config: AppConfig, tenants: readonly Tenant[], logger: Logger, tuning: ProviderTuning = {}): Promise<BuiltProviders> {
  const breaker = tuning.breaker ?? DEFAULT_BREAKER;
  const budgets = tuning.budgets ?? DEFAULT_BUDGETS;
  const deployment = config.providers;
  const keyFor = (choice: Choice) => (choice === 'openai' ? config.openai.apiKey : choice === 'elevenlabs' ? config.elevenlabs.apiKey : null);

  // What each clinic asks for, with cloud choices downgraded when their key is missing.
  const choose = (tenant: Tenant | null, kind: Kind): Choice => {
    const wanted = tenant && tenant.providers[kind] !== 'auto' ? tenant.providers[kind] : deployment[kind];
    if ((wanted === 'openai' || wanted === 'elevenlabs') && !keyFor(wanted)) {
      logger.warn({ tenantId: tenant?.id, kind, requested: wanted, using: 'local' }, 'clinic asks for a cloud provider whose key is not set; using the embedded one');
      return 'local';
    }
    return wanted;
  };
  const plans = new Map<Tenant | null, Record<Kind, Choice>>();
  for (const t of [null, ...tenants]) plans.set(t, { stt: choose(t, 'stt'), tts: choose(t, 'tts'), agent: choose(t, 'agent') });
  const needed = (kind: Kind, choice: Choice) => [...plans.values()].some((p) => p[kind] === choice || (choice === 'local' && p[kind] !== 'fake'));

  const health: ProviderHealth[] = [];
  const guarded = (kind: Kind, name: string) => {
    const h = new ProviderHealth(kind, name, breaker);
    health.push(h);
    return h;
  };

  // Embedded providers: used directly, and as every cloud provider's fallback. Their engines run in
  // the speech worker threads (SPEECH_WORKERS), off the event loop.
  const speech = needed('stt', 'local') || needed('tts', 'local') ? speechPool({ workers: config.speechWorkers }) : null;
  speech?.onWorkerStopped((message) => logger.error({ code: 'VET_E_PROVIDER' }, message));
  const localStt = speech && needed('stt', 'local') ? await createLocalStt({ pool: speech, onWarning: (message) => logger.debug({ message }, 'local stt') }) : null;
  const localTts = speech && needed('tts', 'local') ? createLocalTts({ pool: speech }) : null;

  const stt = new Map<Choice, SttProvider>();
  const tts = new Map<Choice, TtsProvider>();
  const agent = new Map<Choice, AgentProvider>([['local', localAgent]]);
  if (needed('stt', 'fake')) stt.set('fake', createFakeStt());
  if (needed('tts', 'fake')) tts.set('fake', createFakeTts());
  if (needed('agent', 'fake')) agent.set('fake', createFakeAgent());
  if (localStt) stt.set('local', localStt);
  if (localTts) tts.set('local', localTts);

  const openaiKey = config.openai.apiKey;
  if (openaiKey && localStt && needed('stt', 'openai')) {
    const cloud = createOpenAiStt({ apiKey: openaiKey, baseUrl: config.openai.baseUrl, model: config.openai.sttModel, mode: config.openai.sttMode });
    stt.set('openai', fallbackStt(cloud, guarded('stt', cloud.name), localStt, budgets.sttFinalMs));
  }
  if (openaiKey && needed('agent', 'openai')) {
    const cloud = createOpenAiAgent({ apiKey: openaiKey, baseUrl: config.openai.baseUrl });
    agent.set('openai', fallbackAgent(cloud, guarded('agent', cloud.name), localAgent, budgets.agent));
  }
  const elevenKey = config.elevenlabs.apiKey;
  if (elevenKey && localStt && needed('stt', 'elevenlabs')) {
    const cloud = createElevenLabsStt({ apiKey: elevenKey, baseUrl: config.elevenlabs.baseUrl, model: config.elevenlabs.sttModel });
    stt.set('elevenlabs', fallbackStt(cloud, guarded('stt', cloud.name), localStt, budgets.sttFinalMs));
  }
  if (elevenKey && localTts && needed('tts', 'elevenlabs')) {
    await loadElevenLabs(); // 1.2–1.6 s to import: pay it at start-up, not on the first call
    const { voiceId: defaultVoice, modelId, baseUrl, transport } = config.elevenlabs;
    const options = { apiKey: elevenKey, baseUrl, modelId, defaultVoice };
    const cloud = transport === 'websocket' ? createElevenLabsWsTts(options) : createElevenLabsTts(options);
    tts.set('elevenlabs', fallbackTts(cloud, guarded('tts', cloud.name), localTts, { defaultVoice, budget: budgets.tts }));
  }

  const setFor = (plan: Record<Kind, Choice>): ProviderSet => ({ stt: stt.get(plan.stt)!, tts: tts.get(plan.tts)!, agent: agent.get(plan.agent)! });
  const base = setFor(plans.get(null)!);
  const byTenant = new Map(tenants.map((t) => [t.id, setFor(plans.get(t)!)]));
  const providers: Providers = {
    ...base,
    vad: deployment.vad === 'fake' ? createFakeVad() : energyVad,
    select: (tenant) => byTenant.get(tenant.id) ?? base,
    embedded: { stt: localStt ?? base.stt, tts: localTts ?? base.tts, agent: localAgent },
    health,
  };
  logger.info({ providers: { stt: base.stt.name, tts: base.tts.name, agent: base.agent.name, vad: providers.vad.name } }, 'providers ready');

  const prompts = new PromptCache((tenant) => providers.select!(tenant).tts);
  const warmed = await prompts.warm(tenants);
  logger.info({ clips: warmed.clips, ms: warmed.ms }, 'prompts pre-rendered');

  const recordingStt = openaiKey
    ? createOpenAiBatchStt({ apiKey: openaiKey, baseUrl: config.openai.baseUrl, model: config.openai.sttModel })
    : (localStt ?? base.stt);
  const summaryModel = openaiKey ? createOpenAiSummarizer({ apiKey: openaiKey, baseUrl: config.openai.baseUrl }) : null;
  const summarizer = (tenant: Tenant): CallSummarizer | null =>
    summaryModel && (plans.get(tenant) ?? plans.get(null))?.agent === 'openai'
      ? { name: summaryModel.name, summarize: (input, signal) => summaryModel.summarize({ ...input, model: tenant.providers.model }, signal) }
      : null;
  return { providers, prompts, recordingStt, summarizer };
}
