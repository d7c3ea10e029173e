import type { CallContext, CallInput } from './call.types.js';

export function initialContext({ callSid, tenant }: CallInput): CallContext {
  return {
    callSid,
    tenant,
    streamSid: null,
    generation: 0,
    playback: { generation: 0, epoch: 0, cleared: false, queuedMs: 0, heardMs: 0, synthDone: true, segments: [], held: null },
    reply: null,
    history: [],
    turn: {
      text: '',
      partial: '',
      partialAtMs: 0,
      awaitingFinal: false,
      end: { kind: 'open', windowMs: tenant.timing.endOfTurnMs, remainingMs: tenant.timing.endOfTurnMs },
      preempts: 0,
      lastSpeechEndAtMs: 0,
      lastFinalAtMs: 0,
      expect: 'normal',
      digits: '',
      consentAnswer: null,
    },
    counts: { silencePrompts: 0, failedTurns: 0, consentAsks: 0, discardedReplies: 0, interruptions: 0, falseInterruptions: 0 },
    consent: tenant.consent.required ? 'pending' : 'notRequired',
    recording: { requested: false, reports: [] },
    emergency: null,
    emergencyCheck: null,
    transfer: null,
    requests: [],
    sttDown: false,
    timeLimitReached: false,
    outcome: null,
  };
}
