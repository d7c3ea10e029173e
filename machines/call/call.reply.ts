/**
 * The `reply` state of the call statechart (call.machine.ts assembles it): preparing while the
 * end-of-turn window runs, committing, thinking, speaking, interrupted, done
 * (docs/design/conversation.md §1.5, §2).
 */
import { and, stateIn } from 'xstate';
import type { CallContext } from './call.types.js';
import { EMERGENCY_SPEECH, outcome, TTS_EVENTS } from './call.parts.js';

/**
 * One reply: the agent streams text, each finished sentence (the first from its first clause)
 * is synthesized and played. Agent and synthesizer live as long as this state, so leaving it
 * (hang-up, emergency, a confirmed interruption, the caller going on while it was prepared)
 * cancels both. Prepared during the end-of-turn window, it is neither played nor kept until
 * the turn is committed.
 */
export const replyState = {
  entry: 'startReply',
  exit: ['discardPrepared', 'stopPlayback'],
  invoke: [
    {
      id: 'agent',
      src: 'agent',
      input: ({ context }: { context: CallContext }) => ({
        generation: context.generation,
        transcript: context.reply?.transcript ?? '',
        history: context.history,
      }),
      onError: { target: '#call.listening.apologizing' },
    },
    {
      id: 'tts',
      src: 'tts',
      input: ({ context }: { context: CallContext }) => ({ generation: context.generation, speech: [], streaming: true }),
      onError: { target: '#call.listening.apologizing' },
    },
  ],
  on: {
    'stt.partial': [
      EMERGENCY_SPEECH,
      // Prepared on words one short: start again on the whole words (the reply state is re-entered: agent and synthesis restart).
      { guard: and([stateIn({ reply: 'preparing' }), 'partialChangesPrepared']), target: '#call.reply.preparing', reenter: true, actions: 'notePartial' },
      { actions: 'notePartial' },
    ],
    'agent.delta': { guard: 'isCurrentReply', actions: 'appendReplyText' },
    'agent.expect': { guard: 'isCurrentReply', actions: 'assignExpect' },
    'agent.request': { guard: 'isCurrentReply', actions: 'storeRequest' },
    'agent.done': { guard: 'isCurrentReply', actions: 'finishReply' },
    'agent.error': { guard: 'isCurrentReply', target: '#call.listening.apologizing' },
    ...TTS_EVENTS,
    'tts.error': { guard: 'isCurrentGeneration', target: '#call.listening.apologizing' },
  },
  after: { replyTimeout: { guard: 'agentStillWorking', target: '#call.listening.apologizing' } },
  initial: 'committing',
  states: {
    /**
     * The end-of-turn window is still open: agent and first synthesis run, their audio is held.
     * The caller going on takes the turn back (nothing was said); a final transcript that means
     * something else starts over from the pausing caller; the window closing commits the turn.
     */
    preparing: {
      entry: 'countPreempt',
      initial: 'transcribing',
      on: {
        'vad.speechStart': { target: '#call.listening.hearing' },
        // Prepared at a pause inside the segment: the caller went on.
        'vad.resume': { target: '#call.listening.hearing' },
        'stt.final': [
          EMERGENCY_SPEECH,
          { guard: 'finalKeepsMeaning', target: '.pausing', actions: ['appendTranscript', 'chooseWindow'] },
          { target: '#call.listening.pausing', actions: 'appendTranscript' },
        ],
        'agent.error': { guard: 'isCurrentReply', actions: 'noteReplyFailed' },
        'tts.error': { guard: 'isCurrentGeneration', actions: 'noteReplyFailed' },
      },
      states: {
        /** Prepared on interim words: the segment's final transcript is still owed. */
        transcribing: {
          always: { guard: 'finalIn', target: 'pausing' },
          after: { sttFinalTimeout: { target: 'pausing', actions: ['giveUpFinal', 'chooseWindow'] } },
        },
        /** What is left of the end-of-turn window. */
        pausing: {
          always: { guard: 'windowClosed', target: '#call.reply.committing' },
          after: { endOfTurn: '#call.reply.committing' },
        },
      },
    },
    /** The turn is committed (history, journal, the agent may act) and held audio goes out. */
    committing: {
      entry: 'commitTurn',
      always: [
        { guard: 'replyFailed', target: '#call.listening.apologizing' },
        { guard: 'audioQueued', target: 'speaking' },
        { target: 'thinking' },
      ],
    },
    /** Waiting for the first audio; a filler covers slow turns; new caller speech takes the turn back. */
    thinking: {
      on: {
        'tts.chunk': { guard: 'isCurrentGeneration', target: 'speaking', actions: 'queueAudio' },
        'vad.speechStart': { target: '#call.listening.hearing', actions: 'reopenTurn' },
      },
      always: { guard: 'replySaidNothing', target: 'done' },
      after: { filler: { actions: 'playFiller' }, thinkingTimeout: '#call.listening.apologizing' },
    },
    /** Reply audio is playing; marks tell what the caller heard. Caller speech (past the echo guard) is a barge-in. */
    speaking: {
      entry: 'vadSpeaking',
      exit: 'vadListening',
      on: { 'vad.speechStart': 'interrupted' },
      always: { guard: 'replyComplete', target: 'done' },
      after: { speakingTimeout: 'done' },
    },
    /** The caller spoke over us: Twilio's queue is cleared; real words end the reply, a backchannel resumes it. */
    interrupted: {
      entry: 'pausePlayback',
      initial: 'callerTalking',
      states: {
        callerTalking: {
          on: {
            'stt.partial': [EMERGENCY_SPEECH, { guard: 'isRealInterruption', target: '#call.listening.hearing', actions: 'commitInterruptedReply' }],
            'vad.speechEnd': { target: 'judging', actions: 'noteSpeechEnd' },
            'stt.final': [
              EMERGENCY_SPEECH,
              { guard: 'isRealInterruption', target: '#call.listening.hearing', actions: ['appendTranscript', 'commitInterruptedReply'] },
            ],
          },
          after: { bargeInConfirm: { target: '#call.listening.hearing', actions: 'commitInterruptedReply' } },
        },
        /**
         * The caller stopped: their words decide, and the recognizer owes this segment's final (one
         * per segment). Real words end the reply (in a partial: the final is awaited as a turn); a
         * backchannel or no words resume it. A final later than `sttFinalTimeout` counts as none.
         */
        judging: {
          on: {
            'stt.partial': [
              EMERGENCY_SPEECH,
              { guard: 'isRealInterruption', target: '#call.listening.transcribing', actions: ['notePartial', 'commitInterruptedReply'] },
            ],
            'stt.final': [
              EMERGENCY_SPEECH,
              { guard: 'isRealInterruption', target: '#call.listening.pausing', actions: ['appendTranscript', 'commitInterruptedReply'] },
              { target: '#call.reply.speaking', actions: 'resumePlayback' },
            ],
            'vad.speechStart': 'callerTalking',
          },
          after: { sttFinalTimeout: { target: '#call.reply.speaking', actions: ['giveUpFinal', 'resumePlayback'] } },
        },
      },
    },
    /** Reply fully heard: commit it and do what the agent asked. */
    done: {
      always: [
        { guard: 'replyWantsEmergency', target: '#call.emergency', actions: ['detectAgentEmergency', 'commitReply'] },
        { guard: 'replyWantsTransfer', target: '#call.transferring', actions: ['setTransferFromReply', 'commitReply'] },
        // The reply itself said goodbye: no second farewell clip.
        { guard: 'replyWantsEnd', target: '#call.hangingUp.requesting', actions: ['commitReply', outcome('completed')] },
        { target: '#call.listening', actions: 'commitReply' },
      ],
    },
  },
} as const;
