/**
 * What is kept about one call beyond its actor: timings, appointments, recordings, usage and
 * fallbacks. The session fills it; metrics, the inspector and the journal's outcome line read it.
 */
import type { AppointmentRequest, CallEvent, Outcome } from '../../machines/call/call.types.js';
import type { JournalRecordSummary } from '../journal/format.js';
import type { ProviderUsage } from './child-actors.js';
import type { RecordingTranscript } from './recording-transcriber.js';
import type { TurnTiming } from './turn-clock.js';

/** What a call consumed from billable providers (docs/providers.md: cost per call). */
export interface CallUsage {
  agentInputTokens: number;
  agentOutputTokens: number;
  /** Characters sent to the synthesizer (fixed clips are pre-rendered and not counted). */
  ttsCharacters: number;
  /** Caller speech the recognizer heard (VAD segments). */
  sttSpeechMs: number;
}

export interface CallRecord {
  callSid: string;
  tenantId: string;
  startedAt: string;
  endedAt: string | null;
  outcome: Outcome | null;
  appointments: AppointmentRequest[];
  recordings: { recordingSid: string; status: string; url: string | null; durationSeconds: number | null }[];
  recordingTranscripts: RecordingTranscript[];
  dialStatus: string | null;
  turns: TurnTiming[];
  bargeIns: { clearLatencyMs: number }[];
  /** `out.interrupted` commands: every interruption of our speech, and those that turned out false (we resumed). */
  interruptions: number;
  falseInterruptions: number;
  emergency: { via: string; detail: string } | null;
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
    appointments: [],
    recordings: [],
    recordingTranscripts: [],
    dialStatus: null,
    turns: [],
    bargeIns: [],
    interruptions: 0,
    falseInterruptions: 0,
    emergency: null,
    usage: { agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 0, sttSpeechMs: 0 },
    fallbacks: [],
    providers,
  };
}

/** Billable usage reported by a provider. */
export function countUsage(usage: CallUsage, u: ProviderUsage): void {
  if (u.kind === 'agent') {
    usage.agentInputTokens += u.inputTokens;
    usage.agentOutputTokens += u.outputTokens;
  } else usage.ttsCharacters += u.characters;
}

/** What the record takes from a child actor's event: caller speech time and provider fallbacks. */
export function noteChildEvent(record: CallRecord, event: CallEvent): void {
  if (event.type === 'vad.speechEnd') record.usage.sttSpeechMs += event.speechMs;
  else if (event.type === 'provider.fallback') record.fallbacks.push({ kind: event.kind, from: event.from, to: event.to });
}

/** The outcome line's record: timings and counts; appointments and recordings only counted (no personal data). */
export function journalSummary(record: CallRecord, durationMs: number): JournalRecordSummary {
  return {
    durationMs,
    turns: record.turns,
    bargeIns: record.bargeIns,
    appointments: record.appointments.length,
    recordings: record.recordings.length,
    dialStatus: record.dialStatus,
    emergency: record.emergency,
    usage: record.usage,
    fallbacks: record.fallbacks.length,
  };
}
