/**
 * Pieces of the call statechart that several states share (transitions, the clip-playing state
 * shape, the failed-turn prompt) and the drain hand-off state; call.machine.ts assembles them.
 */
import { and } from 'xstate';
import type { TtsInput } from './call.actors.js';
import type { CallContext, CallEvent, ClipId } from './call.types.js';

export const EMERGENCY_SPEECH = { guard: 'isEmergencySpeech', target: '#call.emergency' } as const;
export const EMERGENCY_DIGIT = { guard: 'isEmergencyDigit', target: '#call.emergency' } as const;

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
        input: ({ event }: { event: CallEvent }) => ({ reason: event.type === 'call.handoff' ? event.reason : 'shutdown' }),
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
