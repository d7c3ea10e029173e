import type { CallContext, CallInput } from './call.types.js';

export function initialContext({ callSid, tenant }: CallInput): CallContext {
  return {
    callSid,
    tenant,
    streamSid: null,
    generation: 0,
    playback: { generation: 0, epoch: 0, cleared: false, queuedMs: 0, heardMs: 0, synthDone: true, segments: [] },
    reply: null,
    history: [],
    turnText: '',
    lastSpeechEndAtMs: 0,
    lastFinalAtMs: 0,
    expect: 'normal',
    silencePrompts: 0,
    failedTurns: 0,
    digits: '',
    consent: tenant.consent.required ? 'pending' : 'notRequired',
    consentAnswer: null,
    consentAsks: 0,
    recording: 'off',
    recordings: [],
    emergency: null,
    emergencyCheck: null,
    transfer: null,
    requests: [],
    interruptions: 0,
    falseInterruptions: 0,
    sttDown: false,
    timeLimitReached: false,
    outcome: null,
  };
}
