/**
 * The call journal's line format (docs/journal.md), shared by the writer (src/journal/writer.ts)
 * and the replayer (src/replay). Pure: no I/O.
 *
 * A journal is JSON Lines: a header, then one line per event the call actor received, in the order
 * its mailbox received them, then the outcome. Event lines are `{"t", "type", ...payload}` with `t`
 * in ms since the call started (0.1 ms precision).
 */
import type { EventObject } from 'xstate';
import type { CallCommand, CallInput, Outcome } from '../../machines/call/call.types.js';
import type { BargeInTiming, TurnTiming } from './turn-timing.js';

export const JOURNAL_VERSION = 1;

export interface JournalHeader {
  v: typeof JOURNAL_VERSION;
  type: 'header';
  callSid: string;
  tenantId: string;
  engineVersion: string;
  /** Provider implementation names, e.g. `{ "vad": "energy", "stt": "local", ... }`. */
  providers: Record<string, string>;
  /** Wall-clock start (ISO 8601); `t` in event lines counts from here on a monotonic clock. */
  startedAt: string;
  /** The call actor's input, verbatim: what replay starts the machine with. */
  input: CallInput;
}

/** What the outcome line keeps of a call's record: timings and counts, no personal data. */
export interface JournalRecordSummary {
  durationMs: number;
  turns: readonly TurnTiming[];

  bargeIns: readonly BargeInTiming[];
  /** Requests and messages taken (appointment, refill, message). */
  requests: number;
  recordings: number;
  dialStatus: string | null;
  /** `certainty` and `check` (the answer to "Is your pet in danger?", null when not asked) are absent in journals before 0.4. */
  emergency: { via: string; detail: string; certainty?: string; check?: string | null } | null;
  /** A check that did not lead to the procedure: its keyword, why it was uncertain, the answer (null: the call ended while asking). */
  emergencyCheck?: { detail: string; basis: string; answer: string | null } | null;
  /** Billable consumption (tokens, characters, speech ms) for the cost estimate; absent in journals older than 0.2. */
  usage?: {
    agentInputTokens: number;
    agentOutputTokens: number;
    ttsCharacters: number;
    sttSpeechMs: number;
    /** Replies prepared during the end-of-turn window and thrown away, and what they used (absent in older journals). */
    discarded?: { replies: number; agentInputTokens: number; agentOutputTokens: number; ttsCharacters: number };
  };
  fallbacks?: number;
}

/** ms with 0.1 ms precision. */
export const roundMs = (ms: number) => Math.round(ms * 10) / 10;

const XSTATE_ERROR = 'xstate.error.actor.';
/** Events whose `message` comes from a provider or an SDK: scrubbed of anything key- or number-like. */
const PROVIDER_ERRORS = new Set(['stt.error', 'agent.error', 'tts.error']);

/**
 * Provider and SDK error texts may quote an API key prefix, a bearer token or a phone number; none
 * of that is needed to replay (the machine never reads error texts), so it is masked.
 */
export function scrubMessage(text: string): string {
  return text
    .replace(/\b(sk|pk|rk|xi|key)[-_][A-Za-z0-9_*.-]{6,}/gi, '[redacted]')
    .replace(/\bBearer\s+\S+/gi, 'Bearer [redacted]')
    .replace(/\b[A-Za-z0-9+/_-]{32,}={0,2}/g, '[redacted]')
    .replace(/\+?\d[\d\s().-]{5,}\d/g, '[number]')
    .slice(0, 500);
}

function describeError(err: unknown): { name: string; message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    return { name: err.name, message: scrubMessage(err.message), ...(typeof code === 'string' ? { code } : {}) };
  }
  return { name: 'Error', message: scrubMessage(String(err)) };
}

/**
 * One journal line for an event the call actor received. Audio is reduced to its byte count;
 * actor errors to name/message/code; `actorId` (derivable from the type) is left out.
 * `timer` marks a delayed event the actor sent itself (an `after` timeout or a delayed raise).
 */
export function encodeEvent<E extends EventObject>(t: number, event: E, timer: boolean): string {
  const { type, ...payload } = event as EventObject & Record<string, unknown>;
  const line: Record<string, unknown> = { t, type };
  if (timer) line.timer = true;
  if (type === 'tts.chunk') {
    const audio = payload.audio;
    line.generation = payload.generation;
    line.bytes = audio instanceof Uint8Array ? audio.length : 0;
  } else if (type.startsWith(XSTATE_ERROR)) {
    line.error = describeError(payload.error);
  } else if (type.startsWith('xstate.done.actor.')) {
    if (payload.output !== undefined) line.output = payload.output;
  } else {
    Object.assign(line, payload);
    if (PROVIDER_ERRORS.has(type) && typeof payload.message === 'string') line.message = scrubMessage(payload.message);
    if (type === 'provider.fallback' && typeof payload.reason === 'string') line.reason = scrubMessage(payload.reason);
  }
  // The replacer runs for every value; most events (mark echoes above all) are flat and skip it.
  return isFlat(line) ? JSON.stringify(line) : JSON.stringify(line, (_key, value: unknown) => (ArrayBuffer.isView(value) ? { bytes: value.byteLength } : value));
}

/** No nested objects or arrays: nothing in it can be a typed array. */
function isFlat(line: Record<string, unknown>): boolean {
  for (const key in line) {
    const value = line[key];
    if (typeof value === 'object' && value !== null) return false;
  }
  return true;
}

export function encodeHeader(header: JournalHeader): string {
  return JSON.stringify(header);
}

export function encodeOutcome(t: number, outcome: Outcome, record: JournalRecordSummary, droppedEvents: number): string {
  return JSON.stringify({ t, type: 'outcome', outcome, record, ...(droppedEvents > 0 ? { droppedEvents } : {}) });
}

export function encodeTruncated(t: number, maxBytes: number): string {
  return JSON.stringify({ t, type: 'truncated', maxBytes });
}

/** A command as the journal tools show and compare it: audio as a byte count. */
export type CommandSummary =
  | { type: 'out.audio'; generation: number; bytes: number }
  | Exclude<CallCommand, { type: 'out.audio' }>;

export function summarizeCommand(command: CallCommand): CommandSummary {
  if (command.type === 'out.audio') return { type: 'out.audio', generation: command.generation, bytes: command.audio.length };
  return { ...command };
}

/** Dotted path of a (single-region) state value, e.g. `{ reply: 'speaking' }` → "reply.speaking". */
export function statePath(value: unknown): string {
  if (typeof value === 'string') return value;
  const [key, child] = Object.entries(value as Record<string, unknown>)[0] ?? ['', ''];
  return `${key}.${statePath(child)}`;
}

/** Structural equality of two XState state values (strings and nested objects of them). */
export function sameStateValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameStateValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
