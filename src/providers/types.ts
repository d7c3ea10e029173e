/**
 * The provider set a call runs with, and the staff summarizer: what src/providers builds
 * (createProviders) and the call layer consumes.
 */
import type { Tenant } from '../config/tenant.schema.js';
import type { SummaryInput } from './agent/openai-summary.js';
import type { AgentProvider } from './agent/types.js';
import type { ProviderHealth } from './resilience.js';
import type { SttProvider } from './stt/types.js';
import type { TtsProvider } from './tts/types.js';
import type { VadProvider } from './vad/types.js';

export interface Providers {
  vad: VadProvider;
  stt: SttProvider;
  tts: TtsProvider;
  agent: AgentProvider;
  /** A clinic's own choice (tenant `providers`); absent: every clinic uses the ones above. */
  select?(tenant: Tenant): Pick<Providers, 'stt' | 'tts' | 'agent'>;
  /**
   * The embedded providers (no key, no network, no cost): a clinic's calls once its daily provider
   * budget is used up (src/calls/provider-budget.ts). Absent: calls never switch, and all usage counts.
   */
  embedded?: Pick<Providers, 'stt' | 'tts' | 'agent'>;
  /** Breakers and recent record of the cloud providers, for /twilio/health and /metrics. */
  health?: readonly ProviderHealth[];
}

/** Writes the staff summary of a finished call (docs/follow-ups.md). */
export interface CallSummarizer {
  readonly name: string;
  summarize(input: Omit<SummaryInput, 'model'>, signal: AbortSignal): Promise<string>;
}
