/**
 * setup(): every guard (call.guards.ts), action, delay and child actor of the call machine, by name.
 * The machine file refers to names only, so it reads like its diagram and tests can swap any piece.
 */
import { assign, emit, enqueueActions, sendTo, setup } from 'xstate';
import { BUDGETS } from './budgets.js';
import { callActors } from './call.actors.js';
import { initialContext } from './call.context.js';
import { allHeard, callGuards, menuEntry, speechEmergency } from './call.guards.js';
import type { CallCommand, CallContext, CallCounts, CallerTurn, CallEvent, CallInput, EmergencyAnswer, Outcome, Speech } from './call.types.js';
import { bestText, commitOf, discardReason, finalSpentMs, freshPlayback, GIVE_UP_FINAL_MS, joinText, newReply, turnEndFor } from './call.turn.js';
import { heardText, takeSpeech, yesNo } from './language.js';

/** 8 bytes of μ-law = 1 ms at 8 kHz. */
const bytesToMs = (bytes: number) => bytes / 8;

/** Everything the agent said this reply that the caller actually heard. */
const heardReply = (context: CallContext) => heardText(context.playback.segments, context.playback.heardMs);

/** An update of the turn in progress (nested context objects are replaced, never changed in place). */
const turnWith = (context: CallContext, patch: Partial<CallerTurn>) => ({ turn: { ...context.turn, ...patch } });

/** An update that adds one to a count. */
const counted = (context: CallContext, count: keyof CallCounts) => ({ counts: { ...context.counts, [count]: context.counts[count] + 1 } });

export const callSetup = setup({
  types: {
    context: {} as CallContext,
    events: {} as CallEvent,
    input: {} as CallInput,
    emitted: {} as CallCommand,
  },
  actors: callActors,
  delays: {
    /** Twilio normally starts the stream within a second; past this the call is dead. */
    streamStartTimeout: 60_000,
    /** Safety net for a prompt whose marks never come back (socket trouble): we move on instead of waiting forever. */
    promptTimeout: 45_000,
    /** Long replies are bounded by the agent; past this something is stuck and the caller hears nothing. */
    speakingTimeout: 90_000,
    /** Caller silence before a nudge. Too short nags; too long is dead air. */
    silencePrompt: ({ context }) => context.tenant.timing.silencePromptMs,
    /**
     * Silence that ends the caller's turn: what is left of the window chosen for their words
     * (`chooseWindow`; it runs from the end of speech). Short cuts callers off; long leaves dead air.
     */
    endOfTurn: ({ context }) => context.turn.end.remainingMs,
    /** Start preparing the reply when this much of the window is left (`timing.preemptLeadMs`). */
    preemptLead: ({ context }) => Math.max(0, context.turn.end.remainingMs - context.tenant.timing.preemptLeadMs),
    /** A final transcript owed after the caller stopped; past this we ask them to repeat. */
    sttFinalTimeout: BUDGETS.sttFinalTimeoutMs,
    /** VAD stuck open (TV, wind): treat the segment as finished. */
    maxUtterance: 30_000,
    /** Slow turn: play "One moment." so the caller knows we are there. */
    filler: ({ context }) => context.tenant.timing.fillerAfterMs,
    /** No reply at all: apologise rather than leave the caller in silence. */
    thinkingTimeout: BUDGETS.thinkingTimeoutMs,
    /** The agent started but never finished: stop waiting. */
    replyTimeout: 20_000,
    /** Caller talking over us this long is a real interruption even before words are recognised. */
    bargeInConfirm: 1_500,
    /** Waiting for a yes/no to the recording notice. */
    consentAnswerTimeout: 8_000,
    /** Twilio REST (transfer, hang-up) must answer within this (the caller hears silence meanwhile: ≤ 3 s). */
    restTimeout: BUDGETS.restTimeoutMs,
    /** After a successful transfer request Twilio stops the stream; if it doesn't, end the actor anyway. */
    handoffTimeout: BUDGETS.handoffTimeoutMs,
    interDigit: ({ context }) => context.tenant.timing.interDigitMs,
    /** The clinic's `limits.maxCallSeconds`, from the call's start: then the conversation wraps up. */
    maxCallDuration: ({ context }) => context.tenant.limits.maxCallMs,
    /** "Is your pet in danger right now?" was heard and nobody answered: treated as yes. */
    emergencyAnswer: BUDGETS.emergencyAnswerMs,
    /** The whole check, question included, even if its marks never come back. */
    emergencyCheckMax: BUDGETS.emergencyCheckMaxMs,
  },
  guards: callGuards,
  actions: {
    assignStream: assign({ streamSid: ({ event }) => (event.type === 'twilio.start' ? event.streamSid : null) }),
    /** Every spoken item (prompt or reply) gets a new generation; stale chunks and marks are dropped by it. */
    beginPlayback: assign(({ context }) => ({
      generation: context.generation + 1,
      playback: freshPlayback(context.generation + 1, 0),
    })),
    /** Audio of the current generation goes out at once, or is held while its reply is only prepared. */
    queueAudio: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'tts.chunk' || event.generation !== context.playback.generation) return;
      const p = context.playback;
      const queuedMs = p.queuedMs + bytesToMs(event.audio.length);
      enqueue.assign({ playback: { ...p, queuedMs, held: p.held ? [...p.held, event.audio] : null } });
      if (!p.held) enqueue.emit({ type: 'out.audio', generation: event.generation, audio: event.audio });
    }),
    noteSegment: assign({
      playback: ({ context, event }) =>
        event.type === 'tts.segment' && event.generation === context.playback.generation
          ? { ...context.playback, segments: [...context.playback.segments, { text: event.text, endMs: context.playback.queuedMs }] }
          : context.playback,
    }),
    finishSynthesis: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'tts.done' || event.generation !== context.playback.generation) return;
      enqueue.assign({ playback: { ...context.playback, synthDone: true } });
      if (!context.playback.held) enqueue.emit({ type: 'out.finish', generation: event.generation });
    }),
    /** A prompt that cannot be synthesized is skipped rather than leaving the caller in silence. */
    skipPlayback: assign({ playback: ({ context }) => ({ ...context.playback, synthDone: true, heardMs: context.playback.queuedMs }) }),
    noteHeard: assign({
      playback: ({ context, event }) =>
        event.type === 'twilio.mark' ? { ...context.playback, heardMs: Math.max(context.playback.heardMs, event.endMs) } : context.playback,
    }),
    /** Leaving a state mid-playback: drop what Twilio still has queued. */
    stopPlayback: enqueueActions(({ context, enqueue }) => {
      const p = context.playback;
      // Held audio never reached Twilio: nothing to clear.
      if (p.held || p.cleared || (p.synthDone && allHeard(p))) return;
      enqueue.assign({ playback: { ...p, epoch: p.epoch + 1, cleared: true } });
      enqueue.emit({ type: 'out.clear', generation: p.generation });
    }),
    /** Barge-in: clear at once, freeze the heard position; LLM and TTS are held, not cancelled. */
    pausePlayback: enqueueActions(({ context, enqueue }) => {
      const p = context.playback;
      enqueue.assign({ playback: { ...p, epoch: p.epoch + 1, cleared: true }, ...counted(context, 'interruptions') });
      enqueue.emit({ type: 'out.clear', generation: p.generation });
    }),
    resumePlayback: enqueueActions(({ context, enqueue }) => {
      const p = context.playback;
      enqueue.assign({ playback: { ...p, cleared: false }, ...counted(context, 'falseInterruptions'), ...turnWith(context, { text: '', partial: '' }) });
      enqueue.emit({ type: 'out.interrupted', generation: p.generation, heardMs: p.heardMs, confirmed: false });
      enqueue.emit({ type: 'out.resume', generation: p.generation, fromMs: p.heardMs });
    }),
    /** A confirmed interruption: the reply is cut to what was heard and its generation abandoned. */
    commitInterruptedReply: enqueueActions(({ context, enqueue }) => {
      const heard = heardReply(context);
      enqueue.emit({ type: 'out.interrupted', generation: context.playback.generation, heardMs: context.playback.heardMs, confirmed: true });
      enqueue.assign({
        history: heard ? [...context.history, { role: 'agent' as const, text: heard }] : context.history,
        reply: null,
      });
    }),
    vadListening: sendTo('vad', { type: 'vad.mode', mode: 'listening' }),
    vadSpeaking: sendTo('vad', { type: 'vad.mode', mode: 'speaking' }),
    appendTranscript: assign(({ context, event }) =>
      event.type === 'stt.final'
        ? turnWith(context, { text: joinText(context.turn.text, event.text.trim()), lastFinalAtMs: event.atMs, partial: '', awaitingFinal: false })
        : {},
    ),
    notePartial: assign(({ context, event }) => (event.type === 'stt.partial' ? turnWith(context, { partial: event.text, partialAtMs: event.atMs ?? 0 }) : {})),
    // Where the speech ended, and its final owed: at the segment's close, or at a pause (where it ends
    // if the segment closes on it); interim words that prepare from a pause keep the pause's time.
    noteSpeechEnd: assign(({ context, event }) => turnWith(context, event.type === 'vad.speechEnd' || event.type === 'vad.pause' ? { lastSpeechEndAtMs: event.atMs, awaitingFinal: true } : { awaitingFinal: true })),
    /** The final transcript never came: the turn goes on with the words there are, the window counted as spent. */
    giveUpFinal: assign(({ context }) => turnWith(context, { awaitingFinal: false, lastFinalAtMs: context.turn.lastSpeechEndAtMs + GIVE_UP_FINAL_MS })),
    /** The end-of-turn window for the words so far (language.ts `classifyTurnEnd`, the clinic's `timing`), less what the transcript took. */
    chooseWindow: assign(({ context }) => turnWith(context, { end: turnEndFor(context, bestText(context), finalSpentMs(context)) })),
    /** The preparation lead came: from here the window has exactly the lead left. */
    spendLead: assign(({ context }) =>
      turnWith(context, { end: { ...context.turn.end, remainingMs: Math.min(context.turn.end.remainingMs, context.tenant.timing.preemptLeadMs) } }),
    ),
    /** A new turn from silence: the counts of the last one start over. */
    resetSilence: assign(({ context }) => ({ counts: { ...context.counts, silencePrompts: 0 }, ...turnWith(context, { preempts: 0 }) })),
    countSilencePrompt: assign(({ context }) => counted(context, 'silencePrompts')),
    countFailedTurn: assign(({ context }) => counted(context, 'failedTurns')),
    clearTurn: assign(({ context }) => turnWith(context, { text: '', partial: '' })),
    /** The interim words of a misheard emergency sentence are not the caller's turn; its final was swallowed by the check. */
    dropInterimWords: assign(({ context }) => turnWith(context, { partial: '', awaitingFinal: false })),
    /**
     * A reply generation on the caller's words so far. Nothing is said or kept yet: its audio is
     * held and the turn is committed (history, `out.turn`) only by `commitTurn`.
     */
    startReply: assign(({ context }) => newReply(context)),
    countPreempt: assign(({ context }) => ({ ...turnWith(context, { preempts: context.turn.preempts + 1 }), reply: context.reply ? { ...context.reply, prepared: true } : null })),
    /** The turn is the caller's for good: into the history and the journal; the agent may act; held audio goes out. */
    commitTurn: enqueueActions(({ context, enqueue }) => {
      const commit = commitOf(context);
      if (!commit) return;
      enqueue.assign(commit.patch);
      enqueue.emit(commit.turn);
      enqueue.sendTo('agent', { type: 'agent.commit' });
      for (const command of commit.audio) enqueue.emit(command);
    }),
    /** Leaving `reply` before the turn was committed: the prepared reply is thrown away (its requests are aborted as its actors stop). */
    discardPrepared: enqueueActions(({ context, event, enqueue }) => {
      if (!context.reply || context.reply.committed) return;
      enqueue.assign(counted(context, 'discardedReplies'));
      enqueue.emit({ type: 'out.discard', generation: context.reply.generation, reason: discardReason(event) });
    }),
    noteReplyFailed: assign({ reply: ({ context }) => (context.reply ? { ...context.reply, failed: true } : null) }),
    /** New caller speech while we were still thinking: take the turn back and keep listening. */
    reopenTurn: assign(({ context }) => {
      const last = context.history.at(-1);
      return last?.role === 'caller'
        ? { history: context.history.slice(0, -1), ...turnWith(context, { text: joinText(last.text, context.turn.text) }), reply: null }
        : { reply: null };
    }),
    takeDigitTurn: assign(({ context, event }) => {
      const entry = menuEntry(context, event);
      if (event.type !== 'dtmf.entered' || !entry) return {};
      if (entry.action === 'agent') return turnWith(context, { text: `caller pressed ${event.digits}: ${entry.intent}` });
      return entry.action === 'transfer' ? turnWith(context, { text: `caller pressed ${event.digits}: front desk` }) : {};
    }),
    /** Finished sentences go to the synthesizer as they stream in; the reply's first one from its first clause. */
    appendReplyText: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'agent.delta' || context.reply?.generation !== event.generation) return;
      const { items, rest } = takeSpeech(context.reply.pending + event.text, context.reply.items === 0);
      enqueue.assign({ reply: { ...context.reply, text: context.reply.text + event.text, pending: rest, items: context.reply.items + items.length } });
      for (const text of items) enqueue.sendTo('tts', { type: 'tts.say', speech: { kind: 'text', text } satisfies Speech });
    }),
    finishReply: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'agent.done' || context.reply?.generation !== event.generation) return;
      const last = context.reply.pending.trim();
      if (last) enqueue.sendTo('tts', { type: 'tts.say', speech: { kind: 'text', text: last } satisfies Speech });
      enqueue.sendTo('tts', { type: 'tts.end' });
      enqueue.assign({ reply: { ...context.reply, pending: '', items: context.reply.items + (last ? 1 : 0), agentDone: true, action: event.action } });
    }),
    /** The next caller turn's window, as the agent expects it; a prepared reply's expectation waits for its commit. */
    assignExpect: assign(({ context, event }) => {
      if (event.type !== 'agent.expect' || !context.reply) return {};
      const reply = { ...context.reply, expect: event.answer };
      return reply.committed ? { reply, ...turnWith(context, { expect: event.answer }) } : { reply };
    }),
    storeRequest: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'agent.request') return;
      enqueue.assign({ requests: [...context.requests, event.request] });
      enqueue.emit({ type: 'out.request', request: event.request });
    }),
    commitReply: assign(({ context }) => {
      const text = heardReply(context);
      return {
        history: text ? [...context.history, { role: 'agent' as const, text }] : context.history,
        reply: null,
        counts: { ...context.counts, failedTurns: 0 },
      };
    }),
    playFiller: sendTo('tts', { type: 'tts.say', speech: { kind: 'clip', clip: 'filler' } satisfies Speech }),
    noteConsentAnswer: assign(({ context, event }) => {
      const answer = event.type === 'stt.final' ? yesNo(event.text) : event.type === 'twilio.dtmf' ? (event.digit === '1' ? 'yes' : event.digit === '2' ? 'no' : null) : null;
      return answer ? turnWith(context, { consentAnswer: answer }) : {};
    }),
    countConsentAsk: assign(({ context }) => counted(context, 'consentAsks')),
    giveConsent: assign({ consent: 'given' }),
    refuseConsent: assign({ consent: 'refused' }),
    /** Recording only ever starts after consent (or when the clinic needs none). */
    startRecordingIfAllowed: enqueueActions(({ context, enqueue }) => {
      const allowed = context.consent === 'given' || context.consent === 'notRequired';
      if (!context.tenant.recordingEnabled || !allowed || context.recording.requested) return;
      enqueue.assign({ recording: { ...context.recording, requested: true } });
      enqueue.emit({ type: 'out.startRecording' });
    }),
    /** The transition that heard the keyword records how: clear → the emergency; uncertain → a check to ask. */
    detectSpeechEmergency: assign(({ context, event }) => {
      const heard = speechEmergency(context, event);
      if (!heard) return {};
      return heard.certainty === 'clear' ? { emergency: heard } : { emergencyCheck: { trigger: heard, answer: null } };
    }),
    /** The emergency key, or a menu key whose action is emergency. */
    detectKeyEmergency: assign({
      emergency: ({ context, event }) =>
        event.type === 'twilio.dtmf' ? { via: 'dtmf', digit: event.digit, certainty: 'clear' }
          : event.type === 'dtmf.entered' ? { via: 'dtmf', digit: event.digits, certainty: 'clear' }
            : context.emergency,
    }),
    detectAgentEmergency: assign({
      emergency: ({ context }) => ({ via: 'agent', reason: context.reply?.action?.reason ?? 'agent', certainty: 'clear' }),
    }),
    /** The check ends in the procedure: its trigger becomes the emergency unless a clear one (key, keyword) was just recorded. */
    confirmEmergencyCheck: assign(({ context }, params: { answer: EmergencyAnswer }) =>
      context.emergencyCheck === null ? {} : {
        emergencyCheck: { ...context.emergencyCheck, answer: params.answer },
        emergency: context.emergency ?? context.emergencyCheck.trigger,
      },
    ),
    dismissEmergencyCheck: assign({
      emergencyCheck: ({ context }, params: { answer: EmergencyAnswer }) =>
        context.emergencyCheck === null ? null : { ...context.emergencyCheck, answer: params.answer },
    }),
    /** Keys typed before the emergency never complete into a menu entry. */
    dropDigits: enqueueActions(({ context, enqueue }) => {
      enqueue.cancel('interDigit');
      enqueue.assign(turnWith(context, { digits: '' }));
    }),
    /** The script starts: the call now goes to the emergency line (or ends), and the edge is told why. */
    startEmergencyProcedure: enqueueActions(({ context, enqueue }) => {
      const source = context.emergency;
      if (!source) return;
      enqueue.assign({ transfer: { target: 'emergency', reason: 'emergency' }, outcome: context.outcome ?? 'emergency' });
      enqueue.emit({ type: 'out.emergency', source, check: context.emergencyCheck?.answer ?? null });
    }),
    setTransferFromMenu: assign({
      transfer: ({ context, event }) => {
        const entry = menuEntry(context, event);
        return entry?.action === 'transfer' ? { target: entry.target, reason: 'menu' } : context.transfer;
      },
    }),
    setTransferFromReply: assign({
      transfer: ({ context }) =>
        context.reply?.action?.type === 'transfer' ? { target: context.reply.action.target, reason: context.reply.action.reason } : context.transfer,
    }),
    setTransferFrontDesk: assign({ transfer: { target: 'frontDesk', reason: 'consentRefused' } }),
    collectDigit: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'twilio.dtmf') return;
      enqueue.cancel('interDigit');
      if (event.digit === '#') {
        enqueue.assign(turnWith(context, { digits: '' }));
        if (context.turn.digits) enqueue.raise({ type: 'dtmf.entered', digits: context.turn.digits });
        return;
      }
      const digits = context.turn.digits + event.digit;
      const keys = Object.keys(context.tenant.menu);
      const exact = keys.includes(digits);
      const longer = keys.some((k) => k.length > digits.length && k.startsWith(digits));
      if ((exact && !longer) || digits.length >= 4) {
        enqueue.assign(turnWith(context, { digits: '' }));
        enqueue.raise({ type: 'dtmf.entered', digits });
      } else {
        enqueue.assign(turnWith(context, { digits }));
        enqueue.raise({ type: 'dtmf.timeout' }, { id: 'interDigit', delay: 'interDigit' });
      }
    }),
    flushDigits: enqueueActions(({ context, enqueue }) => {
      enqueue.assign(turnWith(context, { digits: '' }));
      if (context.turn.digits) enqueue.raise({ type: 'dtmf.entered', digits: context.turn.digits });
    }),
    markSttDown: assign({ sttDown: true }),
    noteTimeLimit: assign({ timeLimitReached: true }),
    storeRecording: assign(({ context, event }) =>
      event.type === 'call.recording'
        ? { recording: { ...context.recording, reports: [...context.recording.reports, { recordingSid: event.recordingSid, status: event.status }] } }
        : {},
    ),
    setOutcome: assign({ outcome: ({ context }, params: { outcome: Outcome }) => context.outcome ?? params.outcome }),
    emitEnded: emit(({ context }) => ({ type: 'out.ended', outcome: context.outcome ?? 'callerHungUp' }) as const),
  },
});

export { initialContext };
