/**
 * The call statechart's guards (call.setup.ts hands them to `setup`; call.machine.ts and its parts
 * name them): pure questions about the context and the event, and the helpers the actions share.
 */
import type { CallContext, CallEvent, EmergencySource, Playback } from './call.types.js';
import { bestText, finalKeepsMeaning, joinText, mayPreempt, partialChangesPrepared, preemptAtPause, preemptAtSpeechEnd, preemptOnLatePartial, withinLead } from './call.turn.js';
import { classifyEmergency, isRealInterruption, yesNo } from './language.js';

/** Marks carry whole milliseconds, so the last fraction of a millisecond never gets acknowledged. */
export const allHeard = (p: Playback) => p.queuedMs - p.heardMs < 1;

const currentGeneration = (context: CallContext, event: CallEvent) =>
  'generation' in event && event.generation === context.playback.generation;

/** The emergency a transcript means, clear or uncertain (language.ts `classifyEmergency`); null when none. */
export const speechEmergency = (context: CallContext, event: CallEvent): Extract<EmergencySource, { via: 'speech' }> | null => {
  if (event.type !== 'stt.partial' && event.type !== 'stt.final') return null;
  const final = event.type === 'stt.final';
  const confidence = event.type === 'stt.final' ? (event.confidence ?? null) : null;
  const match = classifyEmergency(event.text, context.tenant.emergency.keywords, { final, confidence });
  if (!match) return null;
  return { via: 'speech', ...match, transcript: final ? 'final' : 'partial', confidence };
};

export const menuEntry = (context: CallContext, event: CallEvent) =>
  event.type === 'dtmf.entered' ? (context.tenant.menu[event.digits] ?? null) : null;

type GuardArgs = { context: CallContext; event: CallEvent };

export const callGuards = {
  /** A keyword, unless an emergency is already handled; after a check, only a clear one (a no is not asked again). */
  isEmergencySpeech: ({ context, event }) => {
    const heard = context.emergency === null ? speechEmergency(context, event) : null;
    return heard !== null && (heard.certainty === 'clear' || context.emergencyCheck === null);
  },
  isClearEmergencySpeech: ({ context, event }) => context.emergency === null && speechEmergency(context, event)?.certainty === 'clear',
  /** The detecting transition recorded a clear trigger (an uncertain one is only in `emergencyCheck`). */
  emergencyConfirmed: ({ context }) => context.emergency !== null,
  isEmergencyDigit: ({ context, event }) =>
    context.emergency === null && event.type === 'twilio.dtmf' && event.digit === context.tenant.emergency.digit,
  consentRequired: ({ context }) => context.tenant.consent.required,
  consentSettled: ({ context }) => context.consent !== 'pending',
  consentPending: ({ context }) => context.consent === 'pending',
  saidYes: ({ event }) => event.type === 'stt.final' && yesNo(event.text) === 'yes',
  saidNo: ({ event }) => event.type === 'stt.final' && yesNo(event.text) === 'no',
  pressedYes: ({ event }) => event.type === 'twilio.dtmf' && event.digit === '1',
  pressedNo: ({ event }) => event.type === 'twilio.dtmf' && event.digit === '2',
  answeredYesEarly: ({ context }) => context.turn.consentAnswer === 'yes',
  answeredNoEarly: ({ context }) => context.turn.consentAnswer === 'no',
  mayAskConsentAgain: ({ context }) => context.counts.consentAsks < 2,
  refusalMeansTransfer: ({ context }) => context.tenant.consent.onRefusal === 'transfer',
  playbackComplete: ({ context }) => context.playback.synthDone && allHeard(context.playback),
  replyComplete: ({ context }) =>
    context.reply !== null &&
    context.reply.agentDone &&
    context.playback.synthDone &&
    allHeard(context.playback),
  replyWantsTransfer: ({ context }) => context.reply?.action?.type === 'transfer',
  replyWantsEnd: ({ context }) => context.reply?.action?.type === 'end',
  replyWantsEmergency: ({ context }) => context.emergency === null && context.reply?.action?.type === 'emergency',
  replySaidNothing: ({ context }) => context.reply !== null && context.reply.agentDone && context.reply.text.trim() === '',
  agentStillWorking: ({ context }) => context.reply !== null && !context.reply.agentDone,
  hasTurnText: ({ context }) => context.turn.text.trim().length > 0,
  preemptAtSpeechEnd: ({ context, event }) => preemptAtSpeechEnd(context, event),
  preemptOnLatePartial: ({ context, event }) => preemptOnLatePartial(context, event),
  preemptAtPause: ({ context, event }) => preemptAtPause(context, event),
  partialChangesPrepared: ({ context, event }) => partialChangesPrepared(context, event),
  /** Words are there, and what is left of the window is within the preparation lead. */
  preemptNow: ({ context }) =>
    mayPreempt(context) && bestText(context) !== '' && context.turn.end.remainingMs > 0 && withinLead(context, context.turn.end.remainingMs),
  mayPreempt: ({ context }) => mayPreempt(context) && bestText(context) !== '',
  windowClosed: ({ context }) => context.turn.end.remainingMs <= 0,
  finalIn: ({ context }) => !context.turn.awaitingFinal,
  finalKeepsMeaning: ({ context, event }) => finalKeepsMeaning(context, event),
  replyFailed: ({ context }) => context.reply?.failed === true,
  audioQueued: ({ context }) => context.playback.queuedMs > 0,
  finalHasWords: ({ event }) => event.type === 'stt.final' && event.text.trim().length > 0,
  silencePromptsExhausted: ({ context }) => context.counts.silencePrompts >= context.tenant.timing.silencePromptsBeforeGoodbye,
  tooManyFailedTurns: ({ context }) => context.counts.failedTurns >= 3,
  isRealInterruption: ({ context, event }) =>
    (event.type === 'stt.partial' || event.type === 'stt.final') &&
    isRealInterruption(joinText(context.turn.text, event.text), context.tenant.backchannels),
  isCurrentGeneration: ({ context, event }) => currentGeneration(context, event),
  isCurrentReply: ({ context, event }) => 'generation' in event && context.reply?.generation === event.generation,
  isHeardMark: ({ context, event }) =>
    event.type === 'twilio.mark' && event.generation === context.playback.generation && event.epoch === context.playback.epoch,
  menuTransfer: ({ context, event }) => menuEntry(context, event)?.action === 'transfer',
  menuEmergency: ({ context, event }) => context.emergency === null && menuEntry(context, event)?.action === 'emergency',
  menuHangup: ({ context, event }) => menuEntry(context, event)?.action === 'hangup',
  menuAgent: ({ context, event }) => context.consent !== 'pending' && menuEntry(context, event)?.action === 'agent',
  menuFrontDeskClosed: ({ context, event }) => {
    const entry = menuEntry(context, event);
    return !context.tenant.openNow && context.consent !== 'pending' && entry?.action === 'transfer' && entry.target === 'frontDesk';
  },
  emergencyHasLine: ({ context }) => context.tenant.emergency.hasLine,
  transferIsEmergency: ({ context }) => context.transfer?.target === 'emergency',
  isSttDown: ({ context }) => context.sttDown,
  timeLimitReached: ({ context }) => context.timeLimitReached,
  clinicOpen: ({ context }) => context.tenant.openNow,
} satisfies Record<string, (args: GuardArgs) => boolean>;
