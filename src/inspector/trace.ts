/**
 * What the inspector keeps about one call, built from its activity feed: the current state, a
 * bounded list of snapshots (for time travel), the event timeline (high-rate items folded), the
 * agent replies with what the caller actually heard, and audio levels. Pure bookkeeping: no I/O,
 * no timers; the feed decides what to send and when.
 */
import type { StateValue } from 'xstate';
import type { CallContext, Outcome } from '../../machines/call/call.types.js';
import { ENERGY_FLOOR_DB, frameEnergyDb, ulawEnergyDb } from '../audio/ulaw.js';
import type { CallRecord } from '../calls/call-record.js';
import type { CallActivity } from '../calls/activity.js';
import { maskDeep } from './mask.js';
import { isFallbackState, summarizeCommand, summarizeEvent, type Summary, type TimelineKind } from './summarize.js';
import { activeIds, leafIds } from './state-ids.js';

export { activeIds, leafIds };

export interface TimelineItem {
  id: number;
  /** ms since the call started; `tEnd` is the last folded item's time. */
  t: number;
  tEnd: number;
  kind: TimelineKind;
  label: string;
  detail: string;
  count: number;
  ms: number;
}

export interface SnapshotView {
  t: number;
  /** Active state node ids, root first (`call`, `call.listening`, `call.listening.waiting`). */
  active: string[];
  value: StateValue;
  /** The machine context without the clinic slice (sent once), phone numbers masked. */
  context: unknown;
}

/** An agent line of the history and the reply it was cut from (barge-in truncation). */
export interface ReplyText {
  /** Index of the line in `context.history`. */
  index: number;
  generation: number;
  heard: string;
  full: string;
}

export interface CallSummary {
  callSid: string;
  tenantId: string;
  clinic: string;
  /** Dotted leaf path without the machine id, e.g. `listening.waiting`. */
  state: string;
  live: boolean;
  startedAt: string;
  endedAt: string | null;
  durationMs: number | null;
  outcome: Outcome | null;
  emergency: boolean;
  transferred: boolean;
  turns: number;
}

interface StoredSnapshot {
  t: number;
  value: StateValue;
  active: string[];
  context: CallContext;
  view: SnapshotView | null;
}

export const LIMITS = { snapshots: 3000, timeline: 5000, levelBlocks: 3000 } as const;
const CONTEXT_SAMPLE_MS = 200;
const FOLD_LOOKBACK = 4;
const KEEP_WHEN_FULL = new Set<TimelineKind>(['state', 'fallback', 'emergency', 'error', 'end', 'turn', 'transcript']);

const withoutRoot = (id: string) => id.replace(/^call\./, '');

export class CallTrace {
  readonly startedAtMs: number;
  endedAtMs: number | null = null;
  outcome: Outcome | null = null;
  emergency = false;
  transferred = false;
  value: StateValue = 'connecting';
  active: string[] = ['call'];
  context: CallContext | null = null;
  t = 0;
  readonly snapshots: StoredSnapshot[] = [];
  readonly timeline: TimelineItem[] = [];
  readonly replies: ReplyText[] = [];

  /** What changed since the feed last looked (see `takeChanges`). */
  private dirtyItems = new Set<TimelineItem>();
  private contextDirty = false;
  private repliesDirty = false;
  private turnsSeen = 0;
  private turnsListed = 0;
  private nextItemId = 1;
  /**
   * Events not yet consumed by the actor, oldest first. The actor processes its mailbox in order
   * and publishes one snapshot per event, so each snapshot consumes the head; what is left when the
   * synchronous chain ends (events sent to a stopped actor) is dropped in a microtask. A snapshot
   * with nothing queued came from a timer (`after`) or the start.
   */
  private readonly causes: { type: string; atMs: number }[] = [];
  private dropScheduled = false;
  /** The event behind the latest snapshot and when it arrived (wall ms); null for timers. */
  lastCause: { type: string; atMs: number } | null = null;
  private lastReply: { generation: number; text: string } | null = null;
  private historyLength = 0;
  private sttDown = false;
  private timelineFull = false;
  /** Coalescing keys, kept off the wire. */
  private readonly keys = new WeakMap<TimelineItem, string>();
  // levels
  private callerPeakDb = ENERGY_FLOOR_DB;
  private agentBlocks: { at: number; db: number }[] = [];
  private agentEndAt = 0;

  constructor(
    readonly callSid: string,
    readonly tenantId: string,
    readonly clinic: string,
    /** The session's record (turn latency, barge-ins); a replayed journal's outcome line has the same. */
    private readonly record: Pick<CallRecord, 'turns' | 'bargeIns'> | null,
    /** Wall clock (epoch ms) of the call's t = 0. */
    startedAtMs: number,
  ) {
    this.startedAtMs = startedAtMs;
  }

  get live(): boolean {
    return this.endedAtMs === null;
  }

  get leafPath(): string {
    return leafIds(this.active).map(withoutRoot).join(' | ');
  }

  get turns(): CallRecord['turns'] {
    return this.record?.turns ?? [];
  }

  get bargeIns(): CallRecord['bargeIns'] {
    return this.record?.bargeIns ?? [];
  }

  summary(nowMs: number): CallSummary {
    return {
      callSid: this.callSid,
      tenantId: this.tenantId,
      clinic: this.clinic,
      state: this.leafPath,
      live: this.live,
      startedAt: new Date(this.startedAtMs).toISOString(),
      endedAt: this.endedAtMs === null ? null : new Date(this.endedAtMs).toISOString(),
      durationMs: Math.round((this.endedAtMs ?? nowMs) - this.startedAtMs),
      outcome: this.outcome,
      emergency: this.emergency,
      transferred: this.transferred,
      turns: this.turns.length,
    };
  }

  /**
   * Applies one activity. Returns 'state' when the active states changed (send now), 'summary' when
   * only the list entry changed, 'quiet' otherwise. `monoMs` is the feed's monotonic clock (levels).
   */
  apply(activity: CallActivity, monoMs: number, wallMs = Date.now()): 'state' | 'summary' | 'quiet' {
    const a = { ...activity, t: Math.round(activity.t * 10) / 10 }; // 0.1 ms is plenty on screen
    this.t = Math.max(this.t, a.t);
    switch (a.type) {
      case 'snapshot':
        return this.onSnapshot(a.t, a.value, a.context, a.changed);
      case 'event':
        this.queueCause(a.event.type, wallMs);
        this.add(a.t, summarizeEvent(a.event));
        return 'quiet';
      case 'command': {
        const c = a.command;
        this.add(a.t, summarizeCommand(c));
        if (c.type === 'out.audio') this.queueAgentAudio(c.audio, monoMs);
        if (c.type === 'out.clear') {
          // Twilio drops what it had queued: so does the meter.
          this.agentBlocks = [];
          this.agentEndAt = 0;
        }
        if (c.type === 'out.emergency' && !this.emergency) {
          this.emergency = true;
          return 'summary';
        }
        if (this.turns.length === this.turnsListed) return 'quiet';
        this.turnsListed = this.turns.length; // the list shows the number of turns
        return 'summary';
      }
      case 'audio': {
        const db = frameEnergyDb(a.pcm);
        if (db > this.callerPeakDb) this.callerPeakDb = db;
        return 'quiet';
      }
      case 'ended':
        return this.onEnded(a.t, a.outcome);
      case 'moved':
        return 'quiet'; // the feed forgets the trace
    }
  }

  private onSnapshot(t: number, value: StateValue, context: CallContext, changed: boolean): 'state' | 'quiet' {
    const previous = this.context;
    this.context = context;
    this.lastCause = this.causes.shift() ?? null;
    this.contextDirty = true;
    this.trackReplies(context);
    if (context.sttDown && !this.sttDown) {
      this.sttDown = true;
      this.add(t, { kind: 'fallback', label: 'recognizer down', detail: 'speech recognition failed: key menu only' });
    }
    const first = this.snapshots.length === 0;
    const active = changed || first ? activeIds(value) : this.active;
    // After `ended` was reported the final snapshot may still arrive: same states, no new line.
    const stateChanged = first || active.join() !== this.active.join();
    if (stateChanged) {
      const before = first ? '(start)' : this.leafPath;
      this.value = value;
      this.active = active;
      const leaves = leafIds(this.active);
      if (this.active.includes('call.transferring')) this.transferred = true;
      const fallback = leaves.find(isFallbackState);
      const cause = this.lastCause?.type ?? 'a timer';
      this.add(t, {
        kind: fallback ? 'fallback' : 'state',
        label: `${before} → ${leaves.map(withoutRoot).join(' | ')}`,
        detail: first ? 'initial state' : `on ${cause}`,
      });
    }
    const last = this.snapshots.at(-1);
    const historyChanged = previous !== null && previous.history !== context.history;
    const sample = last === undefined || t - last.t >= CONTEXT_SAMPLE_MS;
    if (this.snapshots.length < LIMITS.snapshots && (stateChanged || historyChanged || (sample && last?.context !== context))) {
      this.snapshots.push({ t, value, active: this.active, context, view: null });
    }
    return stateChanged ? 'state' : 'quiet';
  }

  private queueCause(type: string, atMs: number): void {
    this.causes.push({ type, atMs });
    if (this.dropScheduled) return;
    this.dropScheduled = true;
    queueMicrotask(() => {
      this.dropScheduled = false;
      this.causes.length = 0;
    });
  }

  /** A new agent line in the history: remember the full reply it was cut from. */
  private trackReplies(context: CallContext): void {
    const history = context.history;
    for (let i = this.historyLength; i < history.length; i++) {
      const line = history[i];
      if (line?.role !== 'agent') continue;
      const reply = this.lastReply;
      this.replies.push({ index: i, generation: reply?.generation ?? context.generation, heard: line.text, full: reply?.text || line.text });
      this.repliesDirty = true;
    }
    this.historyLength = history.length;
    if (context.reply) this.lastReply = { generation: context.reply.generation, text: context.reply.text };
  }

  private onEnded(t: number, outcome: Outcome): 'state' {
    this.outcome = outcome;
    this.endedAtMs = this.startedAtMs + t;
    if (outcome === 'transferred') this.transferred = true;
    if (outcome === 'error') this.add(t, { kind: 'fallback', label: 'call crashed', detail: 'stream closed: Twilio plays the key menu' });
    // The actor is stopped while it enters `ended`; its last snapshot may never be published.
    if (!this.active.includes('call.ended')) {
      const before = this.leafPath;
      this.value = 'ended';
      this.active = activeIds('ended');
      this.add(t, { kind: 'state', label: `${before} → ended`, detail: `outcome ${outcome}` });
      if (this.context && this.snapshots.length < LIMITS.snapshots + 1) {
        this.snapshots.push({ t, value: this.value, active: this.active, context: this.context, view: null });
      }
    }
    return 'state';
  }

  private add(t: number, s: Summary | null): void {
    if (!s) return;
    // Fold into a recent item with the same key (synthesis and playback lines interleave).
    const last = s.key === undefined ? undefined : this.timeline.slice(-FOLD_LOOKBACK).findLast((item) => this.keys.get(item) === s.key);
    if (last) {
      last.count += 1;
      last.tEnd = t;
      last.ms += s.ms ?? 0;
      last.detail = s.merge === 'append' ? last.detail + s.detail : s.detail;
      this.dirtyItems.add(last);
      return;
    }
    if (this.timeline.length >= LIMITS.timeline) {
      if (!this.timelineFull) {
        this.timelineFull = true;
        this.push(t, { kind: 'error', label: 'timeline truncated', detail: `over ${LIMITS.timeline} items: only state changes and important events from here` });
      }
      if (!KEEP_WHEN_FULL.has(s.kind)) return;
    }
    this.push(t, s);
  }

  private push(t: number, s: Summary): void {
    const item: TimelineItem = { id: this.nextItemId++, t, tEnd: t, kind: s.kind, label: s.label, detail: s.detail, count: 1, ms: s.ms ?? 0 };
    if (s.key !== undefined) this.keys.set(item, s.key);
    this.timeline.push(item);
    this.dirtyItems.add(item);
  }

  // ---- views --------------------------------------------------------------------------------

  /** The latest snapshot (or the stored one at index `i`) as sent to the page. */
  view(i?: number): SnapshotView | null {
    if (i === undefined) {
      if (!this.context) return null;
      return { t: this.t, active: this.active, value: this.value, context: contextView(this.context) };
    }
    const s = this.snapshots[i];
    if (!s) return null;
    s.view ??= { t: s.t, active: s.active, value: s.value, context: contextView(s.context) };
    return s.view;
  }

  allViews(): SnapshotView[] {
    return this.snapshots.map((_, i) => this.view(i)).filter((v): v is SnapshotView => v !== null);
  }

  /** The clinic slice of the context (constant for the call), masked. */
  tenantView(): unknown {
    return this.context ? maskDeep(this.context.tenant) : null;
  }

  timelineView(): TimelineItem[] {
    return this.timeline.map(maskItem);
  }

  repliesView(): ReplyText[] {
    return this.replies.map((r) => maskDeep(r) as ReplyText);
  }

  /** Changes since the last call: folded/new timeline items, whether context/replies/turns moved. */
  takeChanges(): { items: TimelineItem[]; context: boolean; replies: boolean; turns: boolean } {
    const items = [...this.dirtyItems].map(maskItem);
    this.dirtyItems.clear();
    const changes = { items, context: this.contextDirty, replies: this.repliesDirty, turns: this.turns.length !== this.turnsSeen };
    this.contextDirty = false;
    this.repliesDirty = false;
    this.turnsSeen = this.turns.length;
    return changes;
  }

  dropChanges(): void {
    this.dirtyItems.clear();
    this.contextDirty = false;
    this.repliesDirty = false;
    this.turnsSeen = this.turns.length;
  }

  // ---- levels -------------------------------------------------------------------------------

  private queueAgentAudio(audio: Uint8Array, monoMs: number): void {
    let at = Math.max(monoMs, this.agentEndAt);
    for (let i = 0; i < audio.length && this.agentBlocks.length < LIMITS.levelBlocks; i += 160) {
      this.agentBlocks.push({ at, db: ulawEnergyDb(audio.subarray(i, i + 160)) });
      at += 20;
    }
    this.agentEndAt = at;
  }

  /** Peak caller level since the last call, and the agent level being played now (dBFS). */
  takeLevels(monoMs: number): { caller: number; agent: number } {
    const caller = this.callerPeakDb;
    this.callerPeakDb = ENERGY_FLOOR_DB;
    let agent = ENERGY_FLOOR_DB;
    while (this.agentBlocks.length > 0 && (this.agentBlocks[0]?.at ?? 0) + 20 <= monoMs - 100) this.agentBlocks.shift();
    for (const b of this.agentBlocks) {
      if (b.at > monoMs) break;
      if (b.at + 100 > monoMs && b.db > agent) agent = b.db;
    }
    return { caller: Math.round(caller), agent: Math.round(agent) };
  }
}

function contextView(context: CallContext): unknown {
  const { tenant: _tenant, ...rest } = context;
  return maskDeep(rest);
}

const maskItem = (item: TimelineItem): TimelineItem => ({ ...item, label: maskDeep(item.label) as string, detail: maskDeep(item.detail) as string });
