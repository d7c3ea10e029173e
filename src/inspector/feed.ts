/**
 * The inspector's hub: takes every call's activity (SessionDeps.onActivity), keeps a CallTrace per
 * call (live ones and the last `keepFinished` finished ones) and pushes changes to the connected
 * pages. State changes go out at once, in the same tick as the transition (the highlight budget is
 * 100 ms); timeline, context, transcript and latency changes are batched every `flushMs`; audio
 * levels are sampled every `levelMs` for pages watching a live call.
 *
 * Several instances (REDIS_URL): `relay` carries this instance's list entries (`summary`) and state
 * changes (`state`) to the others, and `remote` takes theirs, so every page lists the calls of all
 * instances and follows their states live. They are only heard while a page is open somewhere
 * (`onPages`; a page opening asks the others to `resync` their live calls). A call's full record (timeline, transcript, levels,
 * time travel) stays on the instance that holds the call (its detail here is the summary only).
 */
import type { Logger } from 'pino';
import type { CallContext } from '../../machines/call/call.types.js';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallRecord } from '../calls/call-record.js';
import type { CallActivity } from '../calls/activity.js';
import { maskDeep } from './mask.js';
import { actorDone, actorRegistration, machineDefinition, toStately, type StatelyInspectionEvent } from './stately.js';
import { CallTrace, type CallSummary, type ReplyText, type SnapshotView, type TimelineItem } from './trace.js';

/** Messages to the page (JSON over /inspector/ws). */
export type ServerMessage =
  | { type: 'summary'; call: CallSummary }
  /** `at`: wall ms when the snapshot was published; `causeAt`: when the event that led to it arrived. */
  | { type: 'state'; callSid: string; at: number; causeAt: number | null; snapshot: SnapshotView }
  | {
      type: 'update';
      callSid: string;
      items?: TimelineItem[];
      snapshot?: SnapshotView;
      replies?: ReplyText[];
      turns?: CallRecord['turns'];
      bargeIns?: CallRecord['bargeIns'];
    }
  | { type: 'detail'; callSid: string; detail: CallDetail | null }
  | { type: 'level'; callSid: string; caller: number; agent: number };

export interface CallDetail {
  summary: CallSummary;
  tenant: unknown;
  current: SnapshotView | null;
  /** Stored snapshots, oldest first: the time-travel track. */
  snapshots: SnapshotView[];
  timeline: TimelineItem[];
  replies: ReplyText[];
  turns: CallRecord['turns'];
  bargeIns: CallRecord['bargeIns'];
}

/** A call's whole record as the page shows it (also what an opened journal becomes: journal.ts). */
export function callDetail(trace: CallTrace): CallDetail {
  return {
    summary: trace.summary(Date.now()),
    tenant: trace.tenantView(),
    current: trace.view(),
    snapshots: trace.allViews(),
    timeline: trace.timelineView(),
    replies: trace.repliesView(),
    turns: trace.turns,
    bargeIns: trace.bargeIns,
  };
}

export interface FeedClient {
  send(message: ServerMessage): void;
  /** False while the socket is backed up: level samples and batched updates are skipped. */
  ready(): boolean;
  watching: string | null;
}

export interface SessionLookup {
  session(callSid: string): { tenant: { id: string; name: string }; record: CallRecord } | undefined;
}

export interface InspectorFeedOptions {
  /** Where a new call's clinic and record come from (the registry). */
  sessions?: SessionLookup;
  logger?: Logger;
  keepFinished?: number;
  flushMs?: number;
  levelMs?: number;
  /** Hands `summary` and `state` messages of this instance's calls to the other instances. */
  relay?: (message: ServerMessage) => void;
  /** The number of open pages changed (server.ts listens to other instances only while there are some). */
  onPages?: (count: number) => void;
}

/** Other instances' calls kept for the list: their live ones and this many finished ones. */
const KEEP_REMOTE_FINISHED = 100;

export class InspectorFeed {
  private readonly traces = new Map<string, CallTrace>();
  private readonly finished: string[] = [];
  private readonly clients = new Set<FeedClient>();
  private readonly statelyListeners = new Set<(e: StatelyInspectionEvent) => void>();
  private readonly dirty = new Set<CallTrace>();
  private flushTimer: NodeJS.Timeout | null = null;
  private levelTimer: NodeJS.Timeout | null = null;
  private definition: string | undefined;
  private sessions: SessionLookup | undefined;
  private readonly keepFinished: number;
  private readonly flushMs: number;
  private readonly levelMs: number;
  private failures = 0;
  /** Other instances' calls by CallSid, as their last `summary` said. */
  private readonly remoteCalls = new Map<string, CallSummary>();

  constructor(private readonly opts: InspectorFeedOptions = {}) {
    this.sessions = opts.sessions;
    this.keepFinished = opts.keepFinished ?? 100;
    this.flushMs = opts.flushMs ?? 40;
    this.levelMs = opts.levelMs ?? 100;
  }

  /** Late binding: the registry is built with `onActivity` and only then handed back here. */
  useSessions(sessions: SessionLookup): void {
    this.sessions = sessions;
  }

  /** SessionDeps.onActivity. Never throws: an observer error would take the process down. */
  readonly onActivity = (activity: CallActivity): void => {
    try {
      this.apply(activity);
    } catch (err) {
      if (this.failures++ < 10) this.opts.logger?.warn({ err, callSid: activity.callSid }, 'inspector feed failed on an activity');
    }
  };

  // ---- pages --------------------------------------------------------------------------------

  attach(client: FeedClient): () => void {
    this.clients.add(client);
    this.opts.onPages?.(this.clients.size);
    return () => {
      if (!this.clients.delete(client)) return;
      this.updateLevelTimer();
      this.opts.onPages?.(this.clients.size);
    };
  }

  watch(client: FeedClient, callSid: string | null): void {
    client.watching = callSid;
    if (callSid !== null) client.send({ type: 'detail', callSid, detail: this.detail(callSid) });
    this.updateLevelTimer();
  }

  /** Live calls first (newest first), then finished ones (newest first); other instances' calls included. */
  summaries(): CallSummary[] {
    const now = Date.now();
    const local = [...this.traces.values()].map((t) => t.summary(now));
    const remote = [...this.remoteCalls.values()].filter((c) => !this.traces.has(c.callSid)).map((c) => withDuration(c, now));
    return [...local, ...remote].sort((a, b) => Number(b.live) - Number(a.live) || Date.parse(b.startedAt) - Date.parse(a.startedAt));
  }

  detail(callSid: string): CallDetail | null {
    const trace = this.traces.get(callSid);
    if (trace) return callDetail(trace);
    const remote = this.remoteCalls.get(callSid);
    if (!remote) return null;
    const summary = withDuration(remote, Date.now());
    return { summary, tenant: null, current: null, snapshots: [], timeline: [], replies: [], turns: [], bargeIns: [] };
  }

  /** Another instance's page just opened: relay the list entries of this instance's live calls. */
  resync(): void {
    const now = Date.now();
    for (const trace of this.traces.values()) if (trace.live) this.opts.relay?.({ type: 'summary', call: trace.summary(now) });
  }

  /** A message another instance relayed: its calls join the list and their states reach watchers here. */
  remote(message: unknown): void {
    if (!isRelayed(message) || this.traces.has(message.type === 'summary' ? message.call.callSid : message.callSid)) return;
    if (message.type === 'state') return this.toWatchers(message.callSid, message, true);
    const call = message.call;
    this.remoteCalls.delete(call.callSid); // re-inserted last: the Map's order is the age of the last word
    this.remoteCalls.set(call.callSid, call);
    let finished = [...this.remoteCalls.values()].filter((c) => !c.live).length;
    for (const c of this.remoteCalls.values()) {
      if (finished <= KEEP_REMOTE_FINISHED) break;
      if (!c.live) {
        this.remoteCalls.delete(c.callSid);
        finished--;
      }
    }
    this.toAll(message);
  }

  /** XState inspection events (@statelyai/inspect shape); registrations for live calls first. */
  onStately(listener: (e: StatelyInspectionEvent) => void): () => void {
    this.definition ??= machineDefinition(callMachine);
    for (const trace of this.traces.values()) {
      if (!trace.live || !trace.context) continue;
      listener(actorRegistration(trace.callSid, this.definition, trace.value, maskContext(trace.context)));
    }
    this.statelyListeners.add(listener);
    return () => this.statelyListeners.delete(listener);
  }

  close(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.levelTimer) clearInterval(this.levelTimer);
    this.flushTimer = this.levelTimer = null;
    this.clients.clear();
    this.statelyListeners.clear();
  }

  // ---- activity -----------------------------------------------------------------------------

  private apply(a: CallActivity): void {
    if (a.type === 'moved') {
      // Another worker carries the call (calls/handoff.ts) and relays it like any call of its own.
      this.traces.delete(a.callSid);
      this.updateLevelTimer();
      return;
    }
    // Caller levels feed only the meter of a watched live call: skip the per-frame energy otherwise.
    if (a.type === 'audio' && (this.levelTimer === null || !this.isWatched(a.callSid))) return;
    let trace = this.traces.get(a.callSid);
    if (!trace) {
      if (a.type !== 'snapshot') return; // a session always publishes its first snapshot on start
      trace = this.open(a.callSid, a.context, a.t);
    }
    const change = trace.apply(a, performance.now());
    if (this.statelyListeners.size > 0) this.emitStately(trace, a);
    if (a.type !== 'audio') this.markDirty(trace);
    if (change === 'state') {
      const snapshot = trace.view();
      const causeAt = a.type === 'snapshot' ? (trace.lastCause?.atMs ?? null) : null;
      if (snapshot) this.toWatchersAndRelay(trace.callSid, { type: 'state', callSid: trace.callSid, at: Date.now(), causeAt, snapshot });
    }
    if (change !== 'quiet') {
      const message: ServerMessage = { type: 'summary', call: trace.summary(Date.now()) };
      this.toAll(message);
      this.opts.relay?.(message);
    }
    if (a.type === 'ended') this.retire(trace);
  }

  private open(callSid: string, context: CallContext, t: number): CallTrace {
    const session = this.sessions?.session(callSid);
    const tenantId = session?.tenant.id ?? context.tenant.id;
    const trace = new CallTrace(callSid, tenantId, session?.tenant.name ?? tenantId, session?.record ?? null, Date.now() - t);
    this.traces.set(callSid, trace);
    this.updateLevelTimer();
    return trace;
  }

  private retire(trace: CallTrace): void {
    this.finished.push(trace.callSid);
    while (this.finished.length > this.keepFinished) {
      const old = this.finished.shift();
      if (old !== undefined) this.traces.delete(old);
    }
    this.updateLevelTimer();
  }

  /** After `trace.apply`: the snapshot's causing event is known then. */
  private emitStately(trace: CallTrace, a: CallActivity): void {
    this.definition ??= machineDefinition(callMachine);
    if (a.type === 'snapshot' && trace.snapshots.length === 1 && trace.snapshots[0]?.context === a.context) {
      this.toStately(actorRegistration(a.callSid, this.definition, a.value, maskContext(a.context)));
    }
    const first = a.type === 'snapshot' && trace.snapshots.length === 1;
    const cause = a.type !== 'snapshot' ? null : trace.lastCause ? { type: trace.lastCause.type } : first ? { type: 'xstate.init' } : null;
    const event = toStately(a, cause);
    if (event) this.toStately(event);
    if (a.type === 'ended') {
      const definition = this.definition;
      // The final snapshot may still be published in this same synchronous chain: end after it.
      queueMicrotask(() => this.toStately(actorDone(a.callSid, definition)));
    }
  }

  private toStately(event: StatelyInspectionEvent): void {
    for (const listener of this.statelyListeners) listener(event);
  }

  // ---- sending ------------------------------------------------------------------------------

  private toAll(message: ServerMessage): void {
    for (const client of this.clients) client.send(message);
  }

  private toWatchersAndRelay(callSid: string, message: ServerMessage): void {
    this.toWatchers(callSid, message, true);
    this.opts.relay?.(message);
  }

  private toWatchers(callSid: string, message: ServerMessage, always: boolean): void {
    for (const client of this.clients) {
      if (client.watching === callSid && (always || client.ready())) client.send(message);
    }
  }

  private markDirty(trace: CallTrace): void {
    this.dirty.add(trace);
    this.flushTimer ??= setTimeout(() => this.flush(), this.flushMs).unref();
  }

  private flush(): void {
    this.flushTimer = null;
    const watched = new Set([...this.clients].map((c) => c.watching));
    for (const trace of this.dirty) {
      if (!watched.has(trace.callSid)) {
        trace.dropChanges(); // nobody is looking: a page gets the whole record when it asks
        continue;
      }
      const changes = trace.takeChanges();
      const message: ServerMessage = { type: 'update', callSid: trace.callSid };
      if (changes.items.length > 0) message.items = changes.items;
      if (changes.context) {
        const snapshot = trace.view();
        if (snapshot) message.snapshot = snapshot;
      }
      if (changes.replies) message.replies = trace.repliesView();
      if (changes.turns) {
        message.turns = trace.turns;
        message.bargeIns = trace.bargeIns;
      }
      // A backed-up page misses batches; it resynchronises with the next `detail` (re-watch).
      this.toWatchers(trace.callSid, message, false);
    }
    this.dirty.clear();
  }

  private isWatched(callSid: string): boolean {
    for (const c of this.clients) if (c.watching === callSid) return true;
    return false;
  }

  private updateLevelTimer(): void {
    const needed = [...this.clients].some((c) => c.watching !== null && this.traces.get(c.watching)?.live === true);
    if (needed && !this.levelTimer) this.levelTimer = setInterval(() => this.sampleLevels(), this.levelMs).unref();
    else if (!needed && this.levelTimer) {
      clearInterval(this.levelTimer);
      this.levelTimer = null;
    }
  }

  private sampleLevels(): void {
    const now = performance.now();
    const sampled = new Map<string, { caller: number; agent: number }>();
    for (const client of this.clients) {
      const callSid = client.watching;
      if (callSid === null || !client.ready()) continue;
      const trace = this.traces.get(callSid);
      if (!trace?.live) continue;
      let levels = sampled.get(callSid);
      if (!levels) {
        levels = trace.takeLevels(now);
        sampled.set(callSid, levels);
      }
      client.send({ type: 'level', callSid, ...levels });
    }
  }
}

/** A relayed summary's duration, brought forward while the call is live. */
function withDuration(call: CallSummary, now: number): CallSummary {
  return call.live ? { ...call, durationMs: Math.max(0, Math.round(now - Date.parse(call.startedAt))) } : call;
}

/** The shape of what `relay` sends (another instance of this engine; still checked before use). */
function isRelayed(m: unknown): m is Extract<ServerMessage, { type: 'summary' | 'state' }> {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as { type?: unknown; callSid?: unknown; call?: { callSid?: unknown; live?: unknown; startedAt?: unknown } | null };
  if (r.type === 'state') return typeof r.callSid === 'string';
  return r.type === 'summary' && typeof r.call === 'object' && r.call !== null && typeof r.call.callSid === 'string' &&
    typeof r.call.live === 'boolean' && typeof r.call.startedAt === 'string';
}

function maskContext(context: CallContext): unknown {
  const { tenant: _tenant, ...rest } = context;
  return maskDeep(rest);
}
