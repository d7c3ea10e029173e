/**
 * The staff summary of a finished call, written by the OpenAI chat model (the same deployment key
 * and model as the clinic's receptionist). Streamed like the receptionist's replies and joined, so
 * one client and one wire format serve both. Errors are ProviderErrors without server text; the
 * caller (src/calls/follow-through.ts) falls back to its template summary on any failure.
 */
import OpenAI, { APIError } from 'openai';
import { ProviderError, failureForStatus } from '../errors.js';
import { vendorFetch } from '../vendor-fetch.js';

const PROVIDER = 'openai';
/** A summary is a few sentences; this bounds the cost of a runaway answer. */
const MAX_SUMMARY_TOKENS = 220;

export interface SummaryInput {
  clinicName: string;
  transcript: readonly { role: 'caller' | 'agent'; text: string }[];
  /** What the engine recorded (requests, emergency, outcome) as plain sentences: the model must not contradict them. */
  facts: string;
  /** Chat model (the clinic's `providers.model`). */
  model: string;
}

export interface OpenAiSummarizer {
  readonly name: string;
  summarize(input: SummaryInput, signal: AbortSignal): Promise<string>;
}

export function createOpenAiSummarizer(opts: { apiKey: string; baseUrl?: string | null }): OpenAiSummarizer {
  const client = new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseUrl ?? null, maxRetries: 0, timeout: 10_000, logLevel: 'off', fetch: vendorFetch });
  return {
    name: PROVIDER,
    async summarize(input, signal) {
      const conversation = input.transcript.map((t) => `${t.role === 'caller' ? 'Caller' : 'Receptionist'}: ${t.text}`).join('\n');
      let text = '';
      try {
        const stream = await client.chat.completions.create({
          model: input.model,
          stream: true,
          max_completion_tokens: MAX_SUMMARY_TOKENS,
          messages: [
            {
              role: 'system',
              content:
                `You write call notes for the staff of ${input.clinicName}, a veterinary clinic. In at most three short ` +
                'sentences of plain text, say who called, about which pet, what they need and what the clinic should do next. ' +
                'Keep to the recorded facts; never add medical advice; no markdown.',
            },
            { role: 'user', content: `Recorded facts: ${input.facts}\n\nConversation:\n${conversation}` },
          ],
        }, { signal });
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      } catch (err) {
        if (err instanceof APIError && typeof err.status === 'number') {
          throw new ProviderError(PROVIDER, failureForStatus(err.status), `openai summary: HTTP ${err.status}`);
        }
        throw new ProviderError(PROVIDER, signal.aborted ? 'timeout' : 'network', 'openai summary: request failed');
      }
      return text.trim();
    },
  };
}
