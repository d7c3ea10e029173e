/**
 * Latency accounting for one call (docs/design/conversation.md §6). Stamps, on the engine's monotonic clock,
 * the moments of each turn: caller stopped speaking, final transcript, turn committed, first agent
 * text, first synthesized audio, first audio handed to the player; and, for barge-ins, speech onset
 * to `clear`. Stream-time events are converted with the audio hub (frames arrive in real time).
 */
import type { CallEvent } from '../../machines/call/call.types.js';
import type { BargeInTiming, TurnTiming } from '../journal/turn-timing.js';
import type { AudioHub } from './audio-hub.js';

type Pending = { generation: number; commitAt: number; speechEndAt: number | null; sttAt: number | null; agentAt: number | null; ttsAt: number | null };

const since = (from: number | null, to: number | null) => (from === null || to === null ? null : Math.round((to - from) * 10) / 10);

export class TurnClock {
  private speechEndAt: number | null = null;
  private sttAt: number | null = null;
  private onset: { at: number; streamMs: number } | null = null;
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
      case 'agent.delta':
        if (this.turn?.generation === event.generation && this.turn.agentAt === null) this.turn.agentAt = this.now();
        return;
      case 'tts.chunk':
        if (this.turn?.generation === event.generation && this.turn.ttsAt === null) this.turn.ttsAt = this.now();
        return;
      default:
        return;
    }
  }

  onTurn(generation: number): void {
    this.turn = { generation, commitAt: this.now(), speechEndAt: this.speechEndAt, sttAt: this.sttAt, agentAt: null, ttsAt: null };
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
      agentFirstTextMs: since(t.commitAt, t.agentAt),
      ttsFirstAudioMs: since(t.commitAt, t.ttsAt),
      firstAudioMs: since(t.commitAt, at),
    });
  }

  /** A clear was sent: if it answers caller speech, report onset → clear and the onset's stream time. */
  onClear(report: (bargeIn: Required<BargeInTiming>) => void): void {
    if (this.onset === null) return;
    report({ clearLatencyMs: Math.round((this.now() - this.onset.at) * 10) / 10, onsetStreamMs: this.onset.streamMs });
    this.onset = null;
  }
}
