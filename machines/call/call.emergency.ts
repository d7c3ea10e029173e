/**
 * The emergency state (docs/design/conversation.md §4). Every trigger enters it through a
 * transition that records how it was detected (EMERGENCY_SPEECH, EMERGENCY_DIGIT in call.parts.ts,
 * the menu's emergency key, the agent's emergency action); `triage` then routes on that record:
 * a clear trigger straight to the script, an uncertain one (a partial, low confidence, a lone
 * keyword) to the two-step check first.
 *
 * - `checking` asks "Is your pet in danger right now?" and accepts an answer at any time, also over
 *   the question: yes (said, or key 1), a clear keyword or the emergency key → `instructing`; no
 *   (said, or key 2) → `dismissed`; no answer `emergencyAnswer` after the question, or
 *   `emergencyCheckMax` after the trigger → `instructing`. One event from the script throughout:
 *   the emergency key.
 * - `instructing` plays the clinic's script, never interrupted, then the emergency line or the end
 *   of the call.
 * - `dismissed` acknowledges the no and hands the floor back to the caller (or to the consent
 *   question, still pending). After a no, uncertain triggers no longer ask; clear ones still act.
 * Caller hang-ups end the call from every substate (the machine's root handlers).
 */
import { and } from 'xstate';
import { playsClip, TTS_EVENTS } from './call.parts.js';
import type { EmergencyAnswer } from './call.types.js';

const answer = (type: 'confirmEmergencyCheck' | 'dismissEmergencyCheck', a: EmergencyAnswer) => ({ type, params: { answer: a } }) as const;
const INSTRUCTING = '#call.emergency.instructing';

export const emergencyState = {
  entry: 'dropDigits',
  initial: 'triage',
  states: {
    /** Where the detecting transition's record sends the call: a clear trigger set `emergency`, an uncertain one `emergencyCheck`. */
    triage: {
      always: [{ guard: 'emergencyConfirmed', target: 'instructing' }, { target: 'checking' }],
    },

    /** "Is your pet in danger right now?" Yes/no by speech (finals) or keys 1 and 2; silence means yes. */
    checking: {
      initial: 'asking',
      on: {
        'stt.partial': {},
        'stt.final': [
          { guard: 'isClearEmergencySpeech', target: INSTRUCTING, actions: ['detectSpeechEmergency', answer('confirmEmergencyCheck', 'clearKeyword')] },
          { guard: 'saidYes', target: INSTRUCTING, actions: answer('confirmEmergencyCheck', 'saidYes') },
          { guard: 'saidNo', target: 'dismissed', actions: answer('dismissEmergencyCheck', 'saidNo') },
          // Anything else (a lone keyword again, other words) is not an answer; the timer decides.
          {},
        ],
        'twilio.dtmf': [
          { guard: 'isEmergencyDigit', target: INSTRUCTING, actions: ['detectKeyEmergency', answer('confirmEmergencyCheck', 'emergencyKey')] },
          { guard: 'pressedYes', target: INSTRUCTING, actions: answer('confirmEmergencyCheck', 'pressedYes') },
          { guard: 'pressedNo', target: 'dismissed', actions: answer('dismissEmergencyCheck', 'pressedNo') },
          {},
        ],
        'call.hangup': {},
        'call.handoff': {},
      },
      after: { emergencyCheckMax: { target: INSTRUCTING, actions: answer('confirmEmergencyCheck', 'noAnswer') } },
      states: {
        asking: {
          entry: 'beginPlayback',
          ...playsClip('emergencyCheck'),
          on: TTS_EVENTS,
          always: { guard: 'playbackComplete', target: 'waiting' },
        },
        waiting: {
          after: { emergencyAnswer: { target: INSTRUCTING, actions: answer('confirmEmergencyCheck', 'noAnswer') } },
        },
      },
    },

    /** Emergency instructions (never interrupted), then the emergency line or the end of the call. */
    instructing: {
      entry: ['startEmergencyProcedure', 'beginPlayback'],
      // After hours nobody is at the clinic: with an emergency line, a short notice and straight there.
      ...playsClip((c) => (!c.tenant.openNow && c.tenant.emergency.hasLine ? 'emergencyAfterHours' : 'emergency')),
      on: {
        ...TTS_EVENTS,
        'stt.partial': {},
        'stt.final': {},
        // Keys are ignored here, so no menu entry can be raised while the script plays.
        'twilio.dtmf': {},
        'call.hangup': {},
        'call.handoff': {},
      },
      always: [
        { guard: and(['playbackComplete', 'emergencyHasLine']), target: '#call.transferring.dialing' },
        { guard: 'playbackComplete', target: '#call.hangingUp' },
      ],
      after: { promptTimeout: [{ guard: 'emergencyHasLine', target: '#call.transferring.dialing' }, { target: '#call.hangingUp' }] },
    },

    /** The caller said no: "Okay, please go on.", then back to their turn (or the pending consent question). */
    dismissed: {
      entry: ['dropInterimWords', 'beginPlayback'],
      ...playsClip('emergencyCheckNo'),
      on: TTS_EVENTS,
      always: [
        { guard: and(['playbackComplete', 'consentPending']), target: '#call.consent' },
        { guard: 'playbackComplete', target: '#call.listening' },
      ],
      after: { promptTimeout: [{ guard: 'consentPending', target: '#call.consent' }, { target: '#call.listening' }] },
    },
  },
} as const;
