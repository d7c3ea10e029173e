/**
 * The call statechart: one actor per phone call. States and transitions are the behaviour; every
 * implementation is named in call.setup.ts. Rules kept here:
 * - hang-up (stream stop, socket close, terminal status) ends the call from every state;
 * - an emergency (keyword in a partial or final transcript, the emergency key, the agent's action)
 *   preempts every state but `ended`, once; an uncertain keyword asks first (call.emergency.ts);
 *   the emergency script cannot be interrupted;
 * - recording starts only after consent when the clinic requires it;
 * - every waiting state has a timeout;
 * - the clinic's maximum call length wraps the conversation up (never the emergency script or a transfer).
 */
import { and } from 'xstate';
import {
  EMERGENCY_DIGIT, EMERGENCY_SPEECH, failedTurnPrompt, handingOffState, outcome, playsClip, TTS_EVENTS, WRAP_UP_WHEN_DUE, wrappingUpState,
} from './call.parts.js';
import { emergencyState } from './call.emergency.js';
import { replyState } from './call.reply.js';
import { callSetup, initialContext } from './call.setup.js';

/** The VAD closed the segment: prepare at once on interim words that already read as finished, else wait for the final. */
const SPEECH_END = [
  { guard: 'preemptAtSpeechEnd', target: '#call.reply.preparing', actions: 'noteSpeechEnd' },
  { target: '#call.listening.transcribing', actions: 'noteSpeechEnd' },
] as const;

/** Interim words while the caller is silent: emergency words act; words that read as finished prepare the reply (its final still owed). */
const LATE_WORDS = [
  EMERGENCY_SPEECH,
  { guard: 'preemptOnLatePartial', target: '#call.reply.preparing', actions: ['notePartial', 'noteSpeechEnd'] },
  { actions: 'notePartial' },
] as const;

export const callMachine = callSetup.createMachine({
  id: 'call',
  context: ({ input }) => initialContext(input),
  invoke: [
    { id: 'vad', src: 'vad', input: ({ context }) => ({ callSid: context.callSid }), onError: { actions: 'markSttDown' } },
    { id: 'stt', src: 'stt', input: ({ context }) => ({ callSid: context.callSid }), onError: { actions: 'markSttDown' } },
  ],
  initial: 'connecting',
  after: { maxCallDuration: { actions: 'noteTimeLimit' } },
  always: WRAP_UP_WHEN_DUE,
  on: {
    'twilio.stop': { target: '.ended', actions: outcome('callerHungUp') },
    'twilio.closed': { target: '.ended', actions: outcome('callerHungUp') },
    'call.status': { target: '.ended', actions: outcome('callerHungUp') },
    'call.hangup': { target: '.hangingUp' },
    'call.handoff': { target: '.handingOff' },
    'call.recording': { actions: 'storeRecording' },
    'twilio.mark': { guard: 'isHeardMark', actions: 'noteHeard' },
    'stt.partial': [EMERGENCY_SPEECH, { actions: 'notePartial' }],
    'stt.final': [EMERGENCY_SPEECH, { actions: 'appendTranscript' }],
    'stt.error': { actions: 'markSttDown' },
    'twilio.dtmf': [EMERGENCY_DIGIT, { actions: 'collectDigit' }],
    'dtmf.timeout': { actions: 'flushDigits' },
    'dtmf.entered': [
      { guard: 'menuEmergency', target: '.emergency', actions: 'detectKeyEmergency' },
      // The front desk after hours: nobody would answer; the receptionist offers to take a message.
      { guard: 'menuFrontDeskClosed', target: '.reply.committing', actions: 'takeDigitTurn' },
      { guard: 'menuTransfer', target: '.transferring', actions: 'setTransferFromMenu' },
      { guard: 'menuHangup', target: '.hangingUp' },
      { guard: 'menuAgent', target: '.reply.committing', actions: 'takeDigitTurn' },
      // "repeat", or a key the menu does not know: say the menu (not before consent is settled).
      { guard: 'consentSettled', target: '.listening.menu' },
    ],
  },
  states: {
    /** /twilio/voice answered; waiting for the Media Stream's start message. */
    connecting: {
      on: {
        'twilio.start': { target: 'greeting', actions: 'assignStream' },
        'call.status': { target: 'ended', actions: outcome('notConnected') },
      },
      after: { streamStartTimeout: { target: 'ended', actions: outcome('noStream') } },
    },

    /** The clinic greeting; not interruptible (caller words are kept for the first turn). */
    greeting: {
      entry: 'beginPlayback',
      ...playsClip((c) => (c.tenant.openNow ? 'greeting' : 'greetingClosed')),
      on: TTS_EVENTS,
      always: [
        { guard: and(['playbackComplete', 'consentRequired']), target: 'consent' },
        { guard: 'playbackComplete', target: 'listening', actions: 'startRecordingIfAllowed' },
      ],
      after: {
        promptTimeout: [
          { guard: 'consentRequired', target: 'consent' },
          { target: 'listening', actions: 'startRecordingIfAllowed' },
        ],
      },
    },

    /** Recording / AI notice and a yes or no (speech, or keys 1 and 2). Not interruptible. */
    consent: {
      initial: 'asking',
      on: {
        'stt.final': [EMERGENCY_SPEECH, { actions: 'noteConsentAnswer' }],
        'twilio.dtmf': [EMERGENCY_DIGIT, { actions: 'noteConsentAnswer' }],
      },
      states: {
        asking: {
          entry: ['beginPlayback', 'countConsentAsk'],
          ...playsClip('consent'),
          on: TTS_EVENTS,
          always: [
            { guard: and(['playbackComplete', 'answeredYesEarly']), target: 'granted' },
            { guard: and(['playbackComplete', 'answeredNoEarly']), target: 'refused' },
            { guard: 'playbackComplete', target: 'waiting' },
          ],
          after: { promptTimeout: 'waiting' },
        },
        waiting: {
          on: {
            'stt.final': [EMERGENCY_SPEECH, { guard: 'saidYes', target: 'granted' }, { guard: 'saidNo', target: 'refused' }],
            'twilio.dtmf': [EMERGENCY_DIGIT, { guard: 'pressedYes', target: 'granted' }, { guard: 'pressedNo', target: 'refused' }],
          },
          after: { consentAnswerTimeout: [{ guard: 'mayAskConsentAgain', target: 'asking' }, { target: 'refused' }] },
        },
        granted: { entry: ['giveConsent', 'startRecordingIfAllowed'], always: '#call.listening' },
        refused: {
          entry: 'refuseConsent',
          always: [
            { guard: 'refusalMeansTransfer', target: '#call.transferring', actions: 'setTransferFrontDesk' },
            { target: '#call.listening' },
          ],
        },
      },
    },

    /**
     * The caller's turn: VAD and STT decide when it ends, the words so far how long we wait
     * (§1.2); a reply is prepared while that window runs (§1.5). A silence ladder covers quiet callers.
     */
    listening: {
      entry: 'vadListening',
      initial: 'waiting',
      states: {
        waiting: {
          always: { guard: 'hasTurnText', target: 'pausing' },
          on: { 'vad.speechStart': { target: 'hearing', actions: 'resetSilence' } },
          after: {
            silencePrompt: [
              { guard: 'silencePromptsExhausted', target: '#call.hangingUp', actions: outcome('silence') },
              { target: 'nudging' },
            ],
          },
        },
        /** "Are you still there?" (then a hint to press 0). The caller may talk over it. */
        nudging: {
          entry: ['beginPlayback', 'countSilencePrompt'],
          ...playsClip((c) => (c.counts.silencePrompts > 1 ? 'stillThereHint' : 'stillThere')),
          on: { ...TTS_EVENTS, 'vad.speechStart': { target: 'hearing', actions: 'resetSilence' } },
          always: { guard: 'playbackComplete', target: 'waiting' },
          after: { promptTimeout: 'waiting' },
        },
        hearing: {
          on: {
            'vad.speechEnd': SPEECH_END,
            // Finished words at a short pause: prepare now; the segment is still open.
            'vad.pause': [
              { guard: 'preemptAtPause', target: '#call.reply.preparing', actions: 'noteSpeechEnd' },
              { target: 'paused', actions: 'noteSpeechEnd' },
            ],
          },
          after: { maxUtterance: 'transcribing' },
        },
        /**
         * A short pause inside the segment, on words not yet finished: the caller goes on, or the VAD
         * closes it. Interim words arriving now are the recognizer catching up on the last word: if
         * they read as finished, the reply is prepared before the close.
         */
        paused: {
          on: {
            'vad.resume': 'hearing',
            'vad.speechEnd': SPEECH_END,
            'stt.partial': LATE_WORDS,
          },
          // The VAD closes the segment 100 ms after the pause; if it never does, the final is owed anyway.
          after: { sttFinalTimeout: 'transcribing' },
        },
        /** The caller paused; the recognizer owes us the final transcript of that segment. Late interim words may prepare the reply. */
        transcribing: {
          on: {
            'stt.partial': LATE_WORDS,
            'stt.final': [EMERGENCY_SPEECH, { target: 'pausing', actions: 'appendTranscript' }],
            'vad.speechStart': 'hearing',
            'vad.resume': 'hearing',
          },
          after: { sttFinalTimeout: [{ guard: 'hasTurnText', target: 'pausing', actions: 'giveUpFinal' }, { target: 'reprompting' }] },
        },
        /** End-of-turn window, chosen for the words: speech resuming keeps the turn open; the reply is prepared within the lead. */
        pausing: {
          entry: 'chooseWindow',
          always: [
            { guard: and(['windowClosed', 'hasTurnText']), target: '#call.reply.committing' },
            { guard: 'preemptNow', target: '#call.reply.preparing' },
          ],
          on: { 'vad.speechStart': 'hearing', 'vad.resume': 'hearing' },
          after: {
            preemptLead: { guard: 'mayPreempt', target: '#call.reply.preparing', actions: 'spendLead' },
            endOfTurn: [{ guard: 'hasTurnText', target: '#call.reply.committing' }, { target: 'waiting' }],
          },
        },
        /** "Sorry, could you say that again?" */
        reprompting: failedTurnPrompt('sayAgain'),
        /** Something went wrong with a reply: apologise, keep the caller. */
        apologizing: failedTurnPrompt('apology'),
        /** The clinic's key menu: offered after repeated failures, on request, or for an unknown key. */
        menu: {
          entry: ['beginPlayback', 'clearTurn'],
          ...playsClip('menu'),
          on: { ...TTS_EVENTS, 'vad.speechStart': 'hearing' },
          always: { guard: 'playbackComplete', target: 'waiting' },
          after: { promptTimeout: 'waiting' },
        },
      },
    },

    reply: replyState,

    emergency: emergencyState,

    /** Hand the call to a person with a REST update; explicit failure handling so it never ends in silence. */
    transferring: {
      initial: 'announcing',
      // Already on the way to a person: a drain hand-off would only repeat it.
      on: { 'dtmf.entered': {}, 'call.handoff': {} },
      states: {
        announcing: {
          entry: 'beginPlayback',
          ...playsClip('transfer'),
          on: TTS_EVENTS,
          always: { guard: 'playbackComplete', target: 'dialing' },
          after: { promptTimeout: 'dialing' },
        },
        dialing: {
          invoke: {
            src: 'transfer',
            input: ({ context }) => context.transfer ?? { target: 'frontDesk' as const, reason: 'unspecified' },
            onDone: 'handedOff',
            onError: 'failed',
          },
          on: {
            // Twilio stops the stream as soon as it runs the new TwiML, sometimes before REST answers.
            'twilio.stop': { target: '#call.ended', actions: outcome('transferred') },
            'twilio.closed': { target: '#call.ended', actions: outcome('transferred') },
          },
          after: { restTimeout: 'failed' },
        },
        /** Twilio accepted the <Dial>: it will stop the stream. Never hang up from here. */
        handedOff: {
          on: {
            'twilio.stop': { target: '#call.ended', actions: outcome('transferred') },
            'twilio.closed': { target: '#call.ended', actions: outcome('transferred') },
          },
          after: { handoffTimeout: { target: '#call.ended', actions: outcome('transferred') } },
        },
        failed: {
          entry: 'beginPlayback',
          ...playsClip((c) => (c.transfer?.target === 'emergency' ? 'emergencyFallback' : 'transferFailed')),
          on: TTS_EVENTS,
          always: [
            { guard: and(['playbackComplete', 'transferIsEmergency']), target: '#call.hangingUp' },
            { guard: and(['playbackComplete', 'consentPending']), target: '#call.consent' },
            { guard: 'playbackComplete', target: '#call.listening' },
          ],
          after: {
            promptTimeout: [
              { guard: 'transferIsEmergency', target: '#call.hangingUp' },
              { guard: 'consentPending', target: '#call.consent' },
              { target: '#call.listening' },
            ],
          },
        },
      },
    },

    /** Goodbye, then end the call through Twilio REST. */
    hangingUp: {
      initial: 'farewell',
      on: { 'dtmf.entered': {}, 'call.hangup': {}, 'call.handoff': {} },
      states: {
        farewell: {
          entry: 'beginPlayback',
          ...playsClip('goodbye'),
          on: TTS_EVENTS,
          always: { guard: 'playbackComplete', target: 'requesting' },
          after: { promptTimeout: 'requesting' },
        },
        requesting: {
          invoke: { src: 'hangup', input: ({ context }) => ({ reason: context.outcome ?? 'completed' }), onDone: '#call.ended', onError: '#call.ended' },
          after: { restTimeout: '#call.ended' },
        },
      },
    },

    handingOff: handingOffState,

    wrappingUp: wrappingUpState,

    ended: { type: 'final', entry: [outcome('completed'), 'emitEnded'] },
  },
});

export type CallMachine = typeof callMachine;
