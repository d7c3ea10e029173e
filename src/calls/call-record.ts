/**
 * What is kept about one call beyond its actor: only what the machine cannot know — timings,
 * usage, provider fallbacks, and what Twilio reports after the call (completed recordings, the
 * transfer's dial result, recording transcripts). Everything the call decided (outcome, emergency,
 * requests, transfer, consent, interruptions) is in the machine's final context, kept here as
 * `final` when the call ends; `facts` reads it. The session fills the record; metrics, the
 * inspector, follow-through and the journal's outcome line read it.
 */
import type { CallContext, CallEvent, Outcome } from '../../machines/call/call.types.js';
import type { JournalRecordSummary } from '../journal/format.js';
import type { ProviderUsage } from './child-actors.js';
import type { RecordingTranscript } from './recording-transcriber.js';
import type { BargeInTiming, TurnTiming } from '../journal/turn-timing.js';

/** What a call consumed from billable providers (docs/providers.md: cost per call). */
export interface CallUsage {
  agentInputTokens: number;
  agentOutputTokens: number;
  /** Characters sent to the synthesizer (fixed clips are pre-rendered and not counted). */
  ttsCharacters: number;
  /** Caller speech the recognizer heard (VAD segments). */
  sttSpeechMs: number;
  /**
   * Of the above, what went into replies prepared during the end-of-turn window and thrown away
   * (the caller went on, or the final transcript meant something else): one agent request each,
   * the tokens the agent reported before it was stopped (a stopped stream usually reports none, so
   * a lower bound), and the characters sent to the synthesizer.
   */
  discarded: { replies: number; agentInputTokens: number; agentOutputTokens: number; ttsCharacters: number };
}

export interface CallRecord {
  callSid: string;
  tenantId: string;
  startedAt: string;
  endedAt: string | null;
  /** Copied from the final context at the end (listings and recent-call filters read it often). */
  outcome: Outcome | null;
  /** The machine's final context: the single record of what happened in the call. Null while the call runs. */
  final: Readonly<CallContext> | null;
  recordings: { recordingSid: string; status: string; url: string | null; durationSeconds: number | null }[];
  recordingTranscripts: RecordingTranscript[];
  dialStatus: string | null;
  turns: TurnTiming[];
  bargeIns: BargeInTiming[];
  usage: CallUsage;
  /** Provider fallbacks during the call (the journal has each as a `provider.fallback` event). */
  fallbacks: { kind: 'stt' | 'agent' | 'tts'; from: string; to: string }[];
  /** Implementation names that served the call. */
  providers: { vad: string; stt: string; agent: string; tts: string };
}

export function newCallRecord(callSid: string, tenantId: string, providers: CallRecord['providers']): CallRecord {
  return {
    callSid,
    tenantId,
    startedAt: new Date().toISOString(),
    endedAt: null,
    outcome: null,
    final: null,
    recordings: [],
    recordingTranscripts: [],
    dialStatus: null,
    turns: [],
    bargeIns: [],
    usage: { agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 0, sttSpeechMs: 0, discarded: { replies: 0, agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 0 } },
    fallbacks: [],
    providers,
  };
}

type ReplyUsage = CallUsage['discarded'];

/**
 * Billable usage as providers report it, per reply generation until the reply is committed or
 * thrown away (usage of a thrown-away generation that arrives later still counts as discarded).
 */
export class UsageLedger {
  private readonly open = new Map<number, Omit<ReplyUsage, 'replies'>>();
  private readonly discardedGenerations = new Set<number>();

  constructor(private readonly usage: CallUsage) {}

  count(u: ProviderUsage): void {
    const usage = this.usage;
    const reply = this.discardedGenerations.has(u.generation) ? usage.discarded : this.open.get(u.generation);
    if (u.kind === 'agent') {
      usage.agentInputTokens += u.inputTokens;
      usage.agentOutputTokens += u.outputTokens;
    } else usage.ttsCharacters += u.characters;
    if (!reply) return;
    if (u.kind === 'agent') {
      reply.agentInputTokens += u.inputTokens;
      reply.agentOutputTokens += u.outputTokens;
    } else reply.ttsCharacters += u.characters;
  }

  /** A reply generation started (possibly only prepared). */
  prepared(generation: number): void {
    if (!this.open.has(generation)) this.open.set(generation, { agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 0 });
  }

  /** Its turn was committed: what it used is plain usage. */
  committed(generation: number): void {
    this.open.delete(generation);
  }

  /** It was thrown away before anything of it was played. */
  discarded(generation: number): void {
    const d = this.usage.discarded;
    const u = this.open.get(generation);
    this.open.delete(generation);
    this.discardedGenerations.add(generation);
    d.replies++;
    if (!u) return;
    d.agentInputTokens += u.agentInputTokens;
    d.agentOutputTokens += u.agentOutputTokens;
    d.ttsCharacters += u.ttsCharacters;
  }
}

/** What the record takes from a child actor's event: caller speech time and provider fallbacks. */
export function noteChildEvent(record: CallRecord, event: CallEvent): void {
  if (event.type === 'vad.speechEnd') record.usage.sttSpeechMs += event.speechMs;
  else if (event.type === 'provider.fallback') record.fallbacks.push({ kind: event.kind, from: event.from, to: event.to });
}

/**
 * An emergency as logs, metrics and the journal's outcome line show it: how, the keyword or key
 * (never the agent's free text), clear or uncertain, and the answer to the check when one was asked.
 */
export function emergencyOf(context: Pick<CallContext, 'emergency' | 'emergencyCheck'> | null): JournalRecordSummary['emergency'] {
  const e = context?.emergency;
  if (!e) return null;
  return {
    via: e.via,
    detail: e.via === 'speech' ? e.keyword : e.via === 'dtmf' ? e.digit : 'agent',
    certainty: e.certainty,
    check: context.emergencyCheck?.answer ?? null,
  };
}

/** A check that did not end in the procedure (the caller said no, or the call ended during it): the journal shows it. */
export function dismissedCheckOf(context: Pick<CallContext, 'emergency' | 'emergencyCheck'>): NonNullable<JournalRecordSummary['emergencyCheck']> | null {
  const c = context.emergencyCheck;
  if (!c || context.emergency !== null || c.trigger.via !== 'speech') return null;
  return { detail: c.trigger.keyword, basis: c.trigger.basis, answer: c.answer };
}

/** The outcome line's record: timings and counts; requests and recordings only counted (no personal data). */
export function journalSummary(record: CallRecord, final: Readonly<CallContext>, durationMs: number): JournalRecordSummary {
  return {
    durationMs,
    turns: record.turns,
    bargeIns: record.bargeIns,
    requests: final.requests.length,
    recordings: record.recordings.length,
    dialStatus: record.dialStatus,
    emergency: emergencyOf(final),
    emergencyCheck: dismissedCheckOf(final),
    usage: record.usage,
    fallbacks: record.fallbacks.length,
  };
}
