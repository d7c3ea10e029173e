/**
 * The OpenAI receptionist: Chat Completions, streamed, with four tools (transfer, end, emergency,
 * appointment request). Text deltas go out as they arrive; tool calls arrive as JSON fragments and
 * are acted on once the stream has finished. Every failure is a ProviderError whose message
 * carries no key, no server text and no transcript (server messages can quote the masked key).
 *
 * Cancellation: the turn's AbortSignal is the resilience layer's lever (first-token and inter-token
 * budgets, barge-in). Once it aborts, nothing more is emitted and the generator ends without an
 * error; the HTTP request is cancelled. A mid-stream abort ends the SDK's loop silently, so the
 * signal is checked after the loop. A backstop of `timeoutMs` without any bytes (headers or
 * chunks) fails the turn with `timeout` for callers that set no budget of their own.
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import type { Tenant } from '../../config/tenant.schema.js';
import { ProviderError, failureForStatus } from '../errors.js';
import { AGENT_TOOLS, chatMessages, systemPrompt, type ToolName } from './openai-prompt.js';
import { anonymousCall, type AgentAction, type AgentCallInfo, type AgentOutput, type AgentProvider, type AgentSession, type AgentTurn, type CallerRequest } from './types.js';
import { vendorFetch } from '../vendor-fetch.js';

const PROVIDER = 'openai';
const DEFAULT_TIMEOUT_MS = 10_000;

export interface OpenAiAgentOptions {
  apiKey: string;
  /** `https://…/v1`; null: the SDK default (or its own OPENAI_BASE_URL). */
  baseUrl?: string | null;
  /** Backstop: connection and headers, and then the longest gap between chunks. */
  timeoutMs?: number;
}

/** A tool call as streamed: fragments joined by `index`. */
interface PendingCall {
  name: string;
  args: string;
}

/** What a finished tool call turns into. */
interface ToolEffect {
  request?: CallerRequest;
  action?: AgentAction;
  /** Spoken when the model called the tool without saying anything. */
  line: string;
}

export function createOpenAiAgent(opts: OpenAiAgentOptions): AgentProvider {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // One client (one connection pool) per provider. SDK retries off: the resilience layer decides.
  // logLevel 'off': the SDK logs raw SSE data on a parse error, which would put transcripts in logs.
  // fetch: the shared vendor pool keeps the connection open between turns (vendor-fetch.ts).
  const client = new OpenAI({ apiKey: opts.apiKey, baseURL: opts.baseUrl ?? null, maxRetries: 0, timeout: timeoutMs, logLevel: 'off', fetch: vendorFetch });
  return {
    name: PROVIDER,
    startSession: (tenant, call = anonymousCall()) => new OpenAiAgentSession(client, tenant, call, timeoutMs),
  };
}

class OpenAiAgentSession implements AgentSession {
  /** Built once per call: the clinic's facts do not change mid-call. */
  private readonly system: string;
  /** Requests passed on this call, for the note that replaces dropped history (openai-prompt.ts). */
  private readonly sent: string[] = [];

  constructor(private readonly client: OpenAI, private readonly tenant: Tenant, private readonly call: AgentCallInfo, private readonly timeoutMs: number) {
    this.system = systemPrompt(tenant, call);
  }

  async *respond(turn: AgentTurn): AsyncGenerator<AgentOutput, void> {
    if (turn.signal.aborted) return;
    const backstop = new Backstop(this.timeoutMs);
    const signal = AbortSignal.any([turn.signal, backstop.signal]);
    const calls: PendingCall[] = [];
    let said = '';
    let finished = false;
    let cut = false;
    const { limits } = this.tenant;
    try {
      const stream = await this.client.chat.completions.create({
        model: this.tenant.providers.model,
        messages: chatMessages(this.system, turn.history, turn.transcript, { maxTurns: limits.historyTurns, sent: this.sent }),
        tools: [...AGENT_TOOLS],
        parallel_tool_calls: false,
        // A spoken reply or one tool call needs far less; this only stops a runaway reply (cost bound).
        max_completion_tokens: limits.maxCompletionTokens,
        stream: true,
        stream_options: { include_usage: true },
      }, { signal });
      for await (const chunk of stream) {
        backstop.rearm();
        if (turn.signal.aborted) return;
        if (chunk.usage) {
          yield { type: 'usage', inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
          if (turn.signal.aborted) return; // aborted while the consumer held the usage
        }
        const choice = chunk.choices[0];
        if (!choice) continue;
        const text = choice.delta.content ?? choice.delta.refusal;
        // Once a request tool call has begun, later text is not streamed: "I've sent it" must wait
        // until the request is committed (the fixed confirmation line is spoken after it instead).
        if (text && !calls.some((c) => REQUEST_TOOLS.has(c.name))) {
          said += text;
          yield { type: 'delta', text };
        }
        for (const part of choice.delta.tool_calls ?? []) {
          const call = (calls[part.index] ??= { name: '', args: '' });
          call.name += part.function?.name ?? '';
          call.args += part.function?.arguments ?? '';
        }
        if (choice.finish_reason) finished = true;
        if (choice.finish_reason === 'length') cut = true;
      }
    } catch (err) {
      if (turn.signal.aborted) return;
      throw backstop.fired ? backstop.error() : toProviderError(err);
    } finally {
      backstop.stop();
    }
    if (turn.signal.aborted) return;
    if (backstop.fired) throw backstop.error();
    if (!finished) throw new ProviderError(PROVIDER, 'protocol', 'openai chat: the stream ended without a finish_reason');
    if (cut) {
      // Stopped at max_completion_tokens: a tool call's arguments are incomplete, so only the words stand.
      if (said.trim() === '') throw new ProviderError(PROVIDER, 'protocol', `openai chat: the reply reached max_completion_tokens (${limits.maxCompletionTokens}) before any words`);
      yield* this.afterText(said, [], turn.signal);
      return;
    }
    const effects = calls.filter(Boolean).map((c) => this.effect(c));
    for (const e of effects) if (e.request) this.sent.push(sentLine(e.request));
    yield* this.afterText(said, effects, turn.signal);
  }

  /**
   * Appointment, fallback line, answer hint, then the action (at most one, last).
   *
   * A tool call with no spoken text gets a fixed line per tool rather than a second request with
   * the tool result: a follow-up costs another full model round trip (a second time to first
   * token) before the caller hears anything, may call a tool again, and these confirmations never
   * need the model's wording. The prompt asks the model to talk as usual, so this is a fallback.
   */
  private *afterText(said: string, effects: ToolEffect[], signal: AbortSignal): Generator<AgentOutput, void> {
    for (const e of effects) if (e.request && !signal.aborted) yield { type: 'request', request: e.request };
    let spoken = said;
    // A request's confirmation is always the fixed line, spoken after the commit; other tools' lines only when the model said nothing.
    const lines = effects.filter((e) => e.request || said.trim() === '').map((e) => e.line);
    if (lines.length > 0) {
      spoken = lines.join(' ');
      // After words the model said, the line starts a new sentence, not glued to the last one.
      const lead = said !== '' && !/\s$/.test(said) ? ' ' : '';
      for (const word of `${lead}${spoken}`.split(/(?<= )/)) {
        if (signal.aborted) return;
        yield { type: 'delta', text: word };
      }
    }
    const answer = expectedAnswer(spoken);
    if (answer && !signal.aborted) yield { type: 'expect', answer };
    const action = effects.find((e) => e.action)?.action;
    if (action && !signal.aborted) yield { type: 'action', action };
  }

  /** The model's call-back number (digits only, 7–15 of them), else the caller ID when the clinic allows it. */
  private callback(v: unknown): CallerRequest['callback'] {
    const digits = typeof v === 'string' ? v.replace(/\D/g, '') : '';
    if (digits.length >= 7 && digits.length <= 15) return { kind: 'spoken', number: digits };
    return this.call.callerIdUsable ? { kind: 'callerId' } : { kind: 'none' };
  }

  private effect(call: PendingCall): ToolEffect {
    const args = parseArguments(call);
    const why = (fallback: string) => (typeof args.reason === 'string' && args.reason.trim() ? args.reason.trim() : fallback);
    switch (call.name as ToolName) {
      case 'transfer_to_staff':
        return { action: { type: 'transfer', target: 'frontDesk', reason: why('caller asked for a person') },
          line: 'Let me connect you to the front desk.' };
      case 'end_call':
        return { action: { type: 'end', reason: why('caller said goodbye') }, line: `Thanks for calling ${this.tenant.name}. Goodbye!` };
      case 'report_emergency':
        return { action: { type: 'emergency', reason: why('model reported an emergency') }, line: 'This sounds like an emergency.' };
      case 'request_appointment': {
        const refill = args.kind === 'refill';
        return {
          request: {
            kind: refill ? 'refill' : 'appointment', petName: slot(args.pet_name), petSpecies: slot(args.pet_species), ownerName: slot(args.owner_name),
            reason: slot(args.reason), preferredTime: slot(args.preferred_time), message: null, recipient: null,
            callback: this.callback(args.callback_number), urgency: urgency(args.urgency),
          },
          line: `Great. I've sent your ${refill ? 'refill request' : 'request'} to the team. They'll call you to confirm. Anything else I can help with?`,
        };
      }
      case 'take_message':
        return {
          request: {
            kind: 'message', petName: null, petSpecies: null, ownerName: slot(args.caller_name), reason: null, preferredTime: null,
            message: slot(args.message), recipient: slot(args.recipient), callback: this.callback(args.callback_number), urgency: urgency(args.urgency),
          },
          line: "Great. I've sent your message to the team. They'll call you back. Anything else I can help with?",
        };
      default:
        throw new ProviderError(PROVIDER, 'protocol', `openai chat: the model called an unknown tool (${call.name.slice(0, 64)})`);
    }
  }
}

/** "an appointment request for Daisy", "a message for Dr. Lee": what the history note lists. */
function sentLine(r: CallerRequest): string {
  const what = r.kind === 'message' ? 'a message' : r.kind === 'refill' ? 'a refill request' : 'an appointment request';
  const about = r.kind === 'message' ? (r.recipient ? ` for ${r.recipient}` : ' for the clinic') : r.petName ? ` for ${r.petName}` : '';
  return `${what}${about}`;
}

const REQUEST_TOOLS: ReadonlySet<string> = new Set<ToolName>(['request_appointment', 'take_message']);

const urgency = (v: unknown): CallerRequest['urgency'] => (v === 'soon' || v === 'urgent' ? v : 'routine');

function parseArguments(call: PendingCall): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(call.args || '{}');
  } catch {
    parsed = null;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ProviderError(PROVIDER, 'protocol', `openai chat: tool call ${call.name.slice(0, 64)} has arguments that are not a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

const slot = (v: unknown): string | null => (typeof v === 'string' && v.trim() !== '' ? v.trim() : null);

const YES_NO = /^(is|are|was|were|am|do|does|did|can|could|would|will|shall|should|have|has|may|may i)\b/;
const GIVES_DETAIL = /\b(name|names|spell|when|what time|which time|time|day|date|phone|number|email|address|reason|medication|medicine|what's (?:the visit|it) for|what is (?:the visit|it) for)\b/;

/**
 * The endpointing hint for the caller's next turn, from the reply's last sentence (as local.ts
 * asks its questions): `long` when it asks for a name, time, number or reason; `short` for a yes/no
 * question ("Is that right?"); `normal` for other questions; nothing when the reply asks nothing.
 */
export function expectedAnswer(reply: string): 'short' | 'normal' | 'long' | null {
  const last = reply.trim().split(/(?<=[.!?])\s+/).at(-1)?.toLowerCase().replace(/[’‘]/g, "'") ?? '';
  if (!last.endsWith('?')) return null;
  if (GIVES_DETAIL.test(last)) return 'long';
  // "Is there anything else...?" invites a whole new request, not a yes or no.
  if (/\b(anything|something)\b/.test(last)) return 'normal';
  if ((YES_NO.test(last) && !/\bor\b/.test(last)) || /,\s*(right|correct|okay|ok)\?$/.test(last)) return 'short';
  return 'normal';
}

/** SDK error → ProviderError, with no server text in the message (it can quote the masked key). */
function toProviderError(err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  if (err instanceof APIConnectionTimeoutError) {
    return new ProviderError(PROVIDER, 'timeout', 'openai chat: no response headers before the request timeout');
  }
  if (err instanceof APIConnectionError) {
    return new ProviderError(PROVIDER, 'network', `openai chat: connection failed${errnoOf(err)}`);
  }
  if (err instanceof APIError) return fromApiError(err as APIError); // narrowing leaves its generics `any`
  if (err instanceof SyntaxError) return new ProviderError(PROVIDER, 'protocol', 'openai chat: malformed stream chunk (not JSON)');
  // What is left is the body reader failing mid-stream: undici's TypeError "terminated" (socket
  // closed or reset after the headers), which the SDK does not wrap.
  return new ProviderError(PROVIDER, 'network', `openai chat: the stream broke off${errnoOf(err)}`);
}

function fromApiError(err: APIError): ProviderError {
  if (err.status === undefined) {
    // An `error` object inside the stream: the server gave up mid-reply.
    return new ProviderError(PROVIDER, 'http', `openai chat: the server sent an error mid-stream${codeOf(err)}`);
  }
  const retryAfter = err.status === 429 ? err.headers?.get('retry-after') : null;
  const wait = retryAfter && /^\d+$/.test(retryAfter) ? `, retry after ${retryAfter} s` : '';
  return new ProviderError(PROVIDER, failureForStatus(err.status), `openai chat: HTTP ${err.status}${codeOf(err)}${wait}`, err.status);
}

/** ` (rate_limit_exceeded)`: OpenAI's error code or type, which is an identifier, never free text. */
function codeOf(err: APIError): string {
  const id = typeof err.code === 'string' ? err.code : typeof err.type === 'string' ? err.type : null;
  return id && /^[a-z0-9_.-]{1,64}$/i.test(id) ? ` (${id})` : '';
}

/** ` (ECONNREFUSED)`: the first errno-style code in the cause chain. */
function errnoOf(err: unknown): string {
  for (let e: unknown = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z0-9_]{2,40}$/.test(code)) return ` (${code})`;
  }
  return '';
}

/** The backstop: aborts when `ms` pass without any bytes; re-armed by each chunk. */
class Backstop {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout;
  fired = false;

  constructor(private readonly ms: number) {
    this.timer = this.arm();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  rearm(): void {
    clearTimeout(this.timer);
    this.timer = this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  error(): ProviderError {
    return new ProviderError(PROVIDER, 'timeout', `openai chat: no data for ${this.ms} ms`);
  }

  private arm(): NodeJS.Timeout {
    return setTimeout(() => {
      this.fired = true;
      this.controller.abort();
    }, this.ms);
  }
}
