/**
 * Pieces of the call statechart that several states share (transitions, the clip-playing state
 * shape, the failed-turn prompt) and the drain hand-off state; call.machine.ts assembles them.
 */
import { and, or, stateIn } from 'xstate';
import type { TtsInput } from './call.actors.js';
import type { CallContext, CallEvent, ClipId } from './call.types.js';

/**
 * An emergency keyword in a transcript. The transition records how it was heard (clear or
 * uncertain, language.ts `classifyEmergency`); `emergency.triage` routes on that record
 * (call.emergency.ts). After the caller said no to the check, only clear keywords act.
 */
export const EMERGENCY_SPEECH = { guard: 'isEmergencySpeech', target: '#call.emergency', actions: 'detectSpeechEmergency' } as const;
/** The emergency key: always clear, straight to the script. */
export const EMERGENCY_DIGIT = { guard: 'isEmergencyDigit', target: '#call.emergency', actions: 'detectKeyEmergency' } as const;

/** Synthesizer output of the current generation (stale generations are ignored by the actions). */
export const TTS_EVENTS = {
  'tts.chunk': { actions: 'queueAudio' },
  'tts.segment': { actions: 'noteSegment' },
  'tts.done': { actions: 'finishSynthesis' },
  'tts.error': { guard: 'isCurrentGeneration', actions: 'skipPlayback' },
} as const;

/** A state that plays one pre-rendered clip; leaving it early clears Twilio's queue. */
export const playsClip = (clip: ClipId | ((context: CallContext) => ClipId)) =>
  ({
    exit: 'stopPlayback',
    invoke: {
      id: 'tts',
      src: 'tts',
      input: ({ context }: { context: CallContext }): TtsInput => ({
        generation: context.generation,
        speech: [{ kind: 'clip', clip: typeof clip === 'function' ? clip(context) : clip }],
        streaming: false,
      }),
      onError: { actions: 'skipPlayback' },
    },
  }) as const;

/** A turn failed (nothing understood, or the reply broke): say so; after three in a row offer the key menu. */
export const failedTurnPrompt = (clip: ClipId) =>
  ({
    entry: ['beginPlayback', 'countFailedTurn'],
    ...playsClip(clip),
    on: { ...TTS_EVENTS, 'vad.speechStart': 'hearing' },
    always: [
      { guard: and(['playbackComplete', 'tooManyFailedTurns']), target: 'menu' },
      { guard: 'playbackComplete', target: 'waiting' },
    ],
    after: { promptTimeout: 'waiting' },
  }) as const;

export const outcome = (o: CallContext['outcome'] & string) => ({ type: 'setOutcome', params: { outcome: o } }) as const;

/**
 * The engine is shutting down and the drain deadline came: hand the caller to the front desk
 * (REST update with a short notice and <Dial>). If Twilio refuses or is slow, end the actor: the
 * stream closes and Twilio plays the key menu that follows <Connect>, so the caller is never left
 * in silence either way. Keys and a second hand-off are ignored; emergencies still preempt.
 */
export const handingOffState = {
  entry: 'stopPlayback',
  initial: 'requesting',
  on: { 'dtmf.entered': {}, 'call.hangup': {}, 'call.handoff': {} },
  states: {
    requesting: {
      invoke: {
        src: 'handoff',
        input: ({ context, event }: { context: CallContext; event: CallEvent }) => ({
          reason: context.outcome === 'timeLimit' ? 'timeLimit' : event.type === 'call.handoff' ? event.reason : 'shutdown',
        }),
        onDone: 'handedOff',
        onError: { target: '#call.ended', actions: outcome('handedOff') },
      },
      on: {
        // Twilio may run the new TwiML (and stop the stream) before its REST answer arrives.
        'twilio.stop': { target: '#call.ended', actions: outcome('handedOff') },
        'twilio.closed': { target: '#call.ended', actions: outcome('handedOff') },
      },
      after: { restTimeout: { target: '#call.ended', actions: outcome('handedOff') } },
    },
    /** Twilio runs the new TwiML and stops the stream. */
    handedOff: {
      on: {
        'twilio.stop': { target: '#call.ended', actions: outcome('handedOff') },
        'twilio.closed': { target: '#call.ended', actions: outcome('handedOff') },
      },
      after: { handoffTimeout: { target: '#call.ended', actions: outcome('handedOff') } },
    },
  },
} as const;

/**
 * `limits.maxCallSeconds` (the root's `maxCallDuration` timer sets `timeLimitReached`): the
 * conversation — greeting, consent, listening or a reply — wraps up at once, a reply cut short. The
 * emergency script, a transfer, a goodbye or a hand-off in progress finish first; if the call comes
 * back to the conversation (a transfer that failed), it wraps up then.
 */
export const WRAP_UP_WHEN_DUE = {
  guard: and([
    'timeLimitReached',
    or([stateIn('#call.greeting'), stateIn('#call.consent'), stateIn('#call.listening'), stateIn('#call.reply')]),
  ]),
  target: '.wrappingUp',
} as const;

const TO_FRONT_DESK = { target: '#call.handingOff', actions: outcome('timeLimit') } as const;
// The clip said goodbye: no second farewell.
const TO_GOODBYE = { target: '#call.hangingUp.requesting', actions: outcome('timeLimit') } as const;

/**
 * "We're near the end of the time I can spend on one call…", then the front desk through the
 * hand-off (a REST <Dial>; if Twilio refuses, the key menu after </Connect>) when the clinic was
 * open at the call's start, else goodbye. Keys are ignored; an emergency still preempts.
 */
export const wrappingUpState = {
  entry: 'beginPlayback',
  ...playsClip((c) => (c.tenant.openNow ? 'timeLimit' : 'timeLimitClosed')),
  on: { ...TTS_EVENTS, 'dtmf.entered': {} },
  always: [
    { guard: and(['playbackComplete', 'clinicOpen']), ...TO_FRONT_DESK },
    { guard: 'playbackComplete', ...TO_GOODBYE },
  ],
  after: { promptTimeout: [{ guard: 'clinicOpen', ...TO_FRONT_DESK }, TO_GOODBYE] },
} as const;
