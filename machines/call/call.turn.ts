/**
 * The caller's turn as the machine reasons about it: the best words so far, the end-of-turn window
 * they call for, and whether a reply may be prepared while that window runs
 * (docs/design/conversation.md §1.2, §1.5). Pure functions of the context; setup names them.
 */
import { BUDGETS } from './budgets.js';
import type { CallCommand, CallContext, CallerTurn, CallEvent, Playback } from './call.types.js';
import { classifyTurnEnd, endOfTurnWindow, sameMeaning } from './language.js';

export const joinText = (a: string, b: string) => (a && b ? `${a} ${b}` : a || b).trim();

/** The caller's words so far: the finals of the turn, then the recognizer's interim hypothesis. */
export const bestText = (c: Pick<CallContext, 'turn'>) => joinText(c.turn.text, c.turn.partial.trim());

/** The window for `text`, and what is left of it once `spentMs` of it have passed since the end of speech. */
export function turnEndFor(c: CallContext, text: string, spentMs: number): CallerTurn['end'] {
  const kind = classifyTurnEnd(text);
  const windowMs = endOfTurnWindow(kind, c.turn.expect, c.tenant.timing);
  return { kind, windowMs, remainingMs: Math.max(0, windowMs - Math.max(0, spentMs)) };
}

/** Window time the final transcript took (it is owed within the window; the window is not restarted for it). */
export const finalSpentMs = (c: CallContext) => c.turn.lastFinalAtMs - c.turn.lastSpeechEndAtMs;

/** Preparing early is on for the clinic and this turn has not thrown away its share of prepared replies. */
export const mayPreempt = (c: CallContext) => c.tenant.timing.preemptLeadMs > 0 && c.turn.preempts < c.tenant.timing.maxPreemptsPerTurn;

/** What is left of the window is within the preparation lead: start the reply now. */
export const withinLead = (c: CallContext, remainingMs: number) => remainingMs <= c.tenant.timing.preemptLeadMs;

/** Prepare on `partial` now? Only if the window its words call for leaves no more than the lead. */
const preemptOn = (c: CallContext, partial: string, spentMs: number) =>
  mayPreempt(c) && partial !== '' && withinLead(c, turnEndFor(c, joinText(c.turn.text, partial), spentMs).remainingMs);

/**
 * The VAD just closed a segment and the recognizer's interim words are there: prepare the reply on
 * them now if the window they call for leaves no more than the lead (not for "and…", "um",
 * numbers: those windows are long, and the caller is most likely pausing).
 */
export function preemptAtSpeechEnd(c: CallContext, event: CallEvent): boolean {
  return event.type === 'vad.speechEnd' && preemptOn(c, c.turn.partial.trim(), (event.closedAtMs ?? event.atMs) - event.atMs);
}

/**
 * The caller paused inside the segment (`vad.pause`, 100 ms of silence, before the VAD's 200 ms
 * close) and the interim words read as finished: prepare on them now if the recognizer sent them
 * after the caller fell silent. Words sent before are often one short (a streaming recognizer sends
 * a word ~150 ms after its audio: "do you see" of "do you see cats"); they wait for the last word
 * (`listening.paused`). The caller going on (`vad.resume`) takes the reply back.
 */
export function preemptAtPause(c: CallContext, event: CallEvent): boolean {
  return event.type === 'vad.pause' && c.turn.partialAtMs >= event.atMs && preemptOnFinished(c, c.turn.partial.trim());
}

/** Before the segment's final, only words that read as finished are worth a request. */
const preemptOnFinished = (c: CallContext, partial: string) => classifyTurnEnd(joinText(c.turn.text, partial)) === 'complete' && preemptOn(c, partial, 0);

/**
 * The caller has paused (`vad.pause`, 100 ms of silence) or the segment is closed and its final
 * owed, and the recognizer's interim words catch up (a streaming recognizer sends a word ~150 ms
 * after its audio): prepare on them once they read as finished. Only then: the final is at most a
 * few hundred ms away, and some recognizers (OpenAI Realtime) stream it word by word after the
 * commit: "what", then "what are"… would each start a reply the final throws away.
 */
export function preemptOnLatePartial(c: CallContext, event: CallEvent): boolean {
  return event.type === 'stt.partial' && preemptOnFinished(c, event.text.trim());
}

/**
 * A prepared reply's words were one short ("do you see" of "do you see cats": the recognizer sends a
 * word ~150 ms after its audio): new interim words that read as finished and mean something else
 * start it again at once, rather than when the final throws it away ~300 ms later.
 */
export function partialChangesPrepared(c: CallContext, event: CallEvent): boolean {
  if (event.type !== 'stt.partial' || c.reply === null || !mayPreempt(c)) return false;
  const words = joinText(c.turn.text, event.text.trim());
  return !sameMeaning(c.reply.transcript, words) && classifyTurnEnd(words) === 'complete';
}

/** A final transcript arrived while a reply was prepared on other words: do they still mean the same? */
export function finalKeepsMeaning(c: CallContext, event: CallEvent): boolean {
  if (event.type !== 'stt.final' || c.reply === null) return true;
  return sameMeaning(c.reply.transcript, joinText(c.turn.text, event.text.trim()));
}

/** The final transcript never came: its share of the window is the whole recognizer budget. */
export const GIVE_UP_FINAL_MS = BUDGETS.sttFinalTimeoutMs;

/** Why a prepared reply is being thrown away, from the event that ends it. */
export const discardReason = (event: CallEvent) =>
  event.type === 'vad.speechStart' || event.type === 'vad.resume'
    ? ('callerResumed' as const)
    : event.type === 'stt.final' || event.type === 'stt.partial'
      ? ('transcriptChanged' as const)
      : ('other' as const);

export const freshPlayback = (generation: number, epoch: number, held: Uint8Array[] | null = null): Playback => ({
  generation,
  epoch,
  cleared: false,
  queuedMs: 0,
  heardMs: 0,
  synthDone: false,
  segments: [],
  held,
});

/**
 * A reply generation on the caller's words so far. Nothing is said or kept yet: its audio is held
 * and the turn is committed (history, `out.turn`) only by `commitOf`.
 */
export function newReply(c: CallContext): Pick<CallContext, 'generation' | 'playback' | 'reply'> {
  const generation = c.generation + 1;
  return {
    generation,
    playback: freshPlayback(generation, 0, []),
    reply: { generation, transcript: bestText(c), prepared: false, committed: false, items: 0, failed: false, expect: null, text: '', pending: '', agentDone: false, action: null },
  };
}

/** Committing the turn the reply answers: what the context becomes, the `out.turn` command, then the held audio (and its end, if synthesis finished). */
export function commitOf(c: CallContext): { patch: Partial<CallContext>; turn: CallCommand; audio: CallCommand[] } | null {
  const reply = c.reply;
  if (!reply || reply.committed) return null;
  const transcript = bestText(c) || reply.transcript;
  const p = c.playback;
  // A reply that failed while it was prepared is apologized for, not played: its held audio
  // stays held (never sent, so nothing to clear) and is dropped with the playback.
  const release = !reply.failed && p.held !== null;
  const audio: CallCommand[] = release ? (p.held ?? []).map((a) => ({ type: 'out.audio', generation: p.generation, audio: a })) : [];
  if (release && p.synthDone) audio.push({ type: 'out.finish', generation: p.generation });
  return {
    patch: {
      reply: { ...reply, committed: true },
      playback: release ? { ...p, held: null } : p,
      history: [...c.history, { role: 'caller', text: transcript }],
      turn: { ...c.turn, text: '', partial: '', awaitingFinal: false, expect: reply.expect ?? 'normal', preempts: 0 },
      counts: { ...c.counts, silencePrompts: 0 },
    },
    turn: { type: 'out.turn', generation: reply.generation, transcript, endOfTurn: { kind: c.turn.end.kind, windowMs: c.turn.end.windowMs }, prepared: reply.prepared },
    audio,
  };
}
