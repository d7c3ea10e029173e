/**
 * Latency accounting for one call (docs/design/conversation.md §6). Stamps, on the engine's monotonic clock,
 * the moments of each turn: caller stopped speaking, final transcript, reply started (its agent
 * request; during the end-of-turn window when it was prepared), first agent text, first
 * synthesized audio, turn committed, first audio handed to the player; and, for barge-ins, speech
 * onset to `clear`. Stream-time events are converted with the audio hub (frames arrive in real time).
 */
import type { CallEvent, TurnEnd } from '../../machines/call/call.types.js';
import type { BargeInTiming, TurnTiming } from '../journal/turn-timing.js';
import type { AudioHub } from './audio-hub.js';

/** Moments of one reply generation before its turn is committed (or thrown away). */
type Reply = { startAt: number | null; agentAt: number | null; ttsAt: number | null };
type Pending = Reply & {
  generation: number;
  commitAt: number;
  speechEndAt: number | null;
  sttAt: number | null;
  endOfTurn: { kind: TurnEnd; windowMs: number };
  prepared: boolean;
};

const since = (from: number | null, to: number | null) => (from === null || to === null ? null : Math.round((to - from) * 10) / 10);

/** Generations followed before their commit: replies prepared and thrown away leave theirs behind, prompts never commit. */
const MAX_OPEN_REPLIES = 8;

export class TurnClock {
  private speechEndAt: number | null = null;
  private sttAt: number | null = null;
  private onset: { at: number; streamMs: number } | null = null;
  private readonly replies = new Map<number, Reply>();
  private turn: Pending | null = null;

  constructor(
    private readonly now: () => number,
    private readonly hub: AudioHub,
    private readonly report: (t: TurnTiming) => void,
  ) {}

  /** Wall time of a stream-time instant (the latest frame arrived "now"). */
  private wall(atMs: number): number {
    return this.now() - Math.max(0, this.hub.nowMs - atMs);
  }

  private reply(generation: number): Reply {
    let r = this.replies.get(generation);
    if (!r) {
      r = { startAt: null, agentAt: null, ttsAt: null };
      this.replies.set(generation, r);
      if (this.replies.size > MAX_OPEN_REPLIES) this.replies.delete(this.replies.keys().next().value!);
    }
    return r;
  }

  /** A reply generation's agent request starts (prepared or committed). */
  onReplyStart(generation: number): void {
    this.reply(generation).startAt ??= this.now();
  }

  onChildEvent(event: CallEvent): void {
    switch (event.type) {
      case 'vad.speechStart':
        this.onset = { at: this.wall(event.atMs), streamMs: event.atMs };
        return;
      case 'vad.speechEnd':
        this.onset = null;
        this.speechEndAt = this.wall(event.atMs);
        this.sttAt = null;
        return;
      case 'stt.final':
        this.sttAt = this.now();
        return;
      // Before its commit a reply's moments wait in `replies`; after it (a reply started at the
      // commit, or prepared and still waiting for its first text) they belong to the turn.
      case 'agent.delta':
        if (this.turn?.generation === event.generation) this.turn.agentAt ??= this.now();
        else this.reply(event.generation).agentAt ??= this.now();
        return;
      case 'tts.chunk':
        if (this.turn?.generation === event.generation) this.turn.ttsAt ??= this.now();
        else if (this.replies.has(event.generation)) this.replies.get(event.generation)!.ttsAt ??= this.now();
        return;
      default:
        return;
    }
  }

  onTurn(generation: number, endOfTurn: Pending['endOfTurn'], prepared: boolean): void {
    const r = this.replies.get(generation) ?? { startAt: null, agentAt: null, ttsAt: null };
    for (const g of this.replies.keys()) if (g <= generation) this.replies.delete(g);
    const commitAt = this.now();
    this.turn = { ...r, startAt: r.startAt ?? commitAt, generation, commitAt, speechEndAt: this.speechEndAt, sttAt: this.sttAt, endOfTurn, prepared };
  }

  onDiscard(generation: number): void {
    this.replies.delete(generation);
  }

  onAudio(generation: number): void {
    const t = this.turn;
    if (!t || t.generation !== generation) return;
    this.turn = null;
    const at = this.now();
    this.report({
      generation,
      endOfSpeechToAudioMs: since(t.speechEndAt, at),
      sttMs: since(t.speechEndAt, t.sttAt),
      endpointMs: since(t.speechEndAt, t.commitAt),
      agentFirstTextMs: since(t.startAt, t.agentAt),
      ttsFirstAudioMs: since(t.startAt, t.ttsAt),
      firstAudioMs: since(t.commitAt, at),
      endOfTurn: t.endOfTurn,
      prepared: t.prepared,
    });
  }

  /** A clear was sent: if it answers caller speech, report onset → clear and the onset's stream time. */
  onClear(report: (bargeIn: Required<BargeInTiming>) => void): void {
    if (this.onset === null) return;
    report({ clearLatencyMs: Math.round((this.now() - this.onset.at) * 10) / 10, onsetStreamMs: this.onset.streamMs });
    this.onset = null;
  }
}
