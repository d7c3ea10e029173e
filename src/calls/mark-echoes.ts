/**
 * Twilio echoes one mark per 100 ms `media` message the player sends (src/twilio/player.ts). Each
 * echo given to the call machine is a macrostep with an `assign` (the heard position), ten a second
 * per playing call: the largest single XState cost of a call. The machine reads the heard position
 * only when something happens (a barge-in, the end of the audio, a hang-up), so the session passes
 * echoes on less often without the machine ever acting on a stale position:
 *
 * - an echo that completes the audio queued so far, or belongs to another generation or epoch (the
 *   machine decides about those), goes in at once;
 * - otherwise at most one echo per `holdMs` goes in; the latest one in between is held;
 * - a held echo goes in before anything else reaches the machine (`flush`): edge events and child
 *   events alike, so the machine sees exactly the positions it would have seen, in order, at every
 *   event that can read them.
 *
 * Echoes that were overtaken while held are not journaled either: the journal records what the
 * machine received, and replay gives the same result.
 */
import type { CallEvent, Playback } from '../../machines/call/call.types.js';

export type MarkEvent = Extract<CallEvent, { type: 'twilio.mark' }>;

/** At most one mark echo per this many ms reaches the machine while audio plays. */
export const MARK_HOLD_MS = 250;

export class MarkEchoes {
  private held: MarkEvent | null = null;
  private givenAtMs = -Infinity;

  constructor(
    private readonly give: (mark: MarkEvent) => void,
    private readonly now: () => number,
    private readonly holdMs = MARK_HOLD_MS,
  ) {}

  /** A mark echo arrived; `playback` is the machine's playback as it is now. */
  arrived(mark: MarkEvent, playback: Pick<Playback, 'generation' | 'epoch' | 'queuedMs'>): void {
    const current = mark.generation === playback.generation && mark.epoch === playback.epoch;
    if (current && playback.queuedMs - mark.endMs >= 1 && this.now() - this.givenAtMs < this.holdMs) {
      this.held = mark;
      return;
    }
    // A stray echo of an old generation must not overtake the held position of the current one.
    if (!current) this.flush();
    else this.held = null;
    this.pass(mark);
  }

  /** Something else is about to reach the machine: the latest heard position goes in first. */
  flush(): void {
    const mark = this.held;
    if (!mark) return;
    this.held = null;
    this.pass(mark);
  }

  private pass(mark: MarkEvent): void {
    this.givenAtMs = this.now();
    this.give(mark);
  }
}
