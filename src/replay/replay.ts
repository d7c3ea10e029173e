/**
 * Deterministic replay of a call journal (docs/journal.md): the call machine runs again, with inert
 * child actors and a simulated clock, on exactly the events the live actor received, and reports
 * its state transitions and outbound commands. No I/O besides reading the file; milliseconds per call.
 *
 * Timers: by default (`timers: 'recorded'`) the machine's own timers never fire by the clock; each
 * fires when the journal says it fired live (a `timer` line), so events that raced a timer keep
 * their live order. `timers: 'simulated'` ignores the recorded firings and lets the clock fire
 * timers at their nominal due time instead: what the call would have done with perfectly punctual
 * timers (or with a changed machine).
 */
import { createActor, fromCallback, fromPromise, SimulatedClock, type ActorSystem, type ActorSystemInfo, type EventObject, type SnapshotFrom } from 'xstate';
import type { AgentCommand, AgentInput, CallActors, CallRef, ReasonInput, TransferInput, TtsCommand, TtsInput, VadCommand } from '../../machines/call/call.actors.js';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallCommand, ClipId, Outcome, Speech } from '../../machines/call/call.types.js';
import { statePath, summarizeCommand, type CommandSummary } from '../journal/format.js';
import type { Journal, JournalEntry } from './read.js';

export { JournalError, parseJournal, readJournal, type Journal, type JournalEntry, type JournalOutcome } from './read.js';

// ── the replay clock ──────────────────────────────────────────────────────────────────────────

type HeldTimer = { due: number; fn: () => void; key: string | null; type: string | null };

/**
 * XState's SimulatedClock, counting tenths of a millisecond (integers, so due times are exact),
 * that knows which machine event each timer carries. In `recorded` mode it never fires timers by
 * itself (they are scheduled at infinity); `fire(type)` fires the pending one the journal names.
 */
export class ReplayClock extends SimulatedClock {
  private readonly timers = new Map<number, HeldTimer>();
  private system: ActorSystem<ActorSystemInfo> | null = null;

  constructor(readonly mode: 'recorded' | 'simulated') {
    super();
  }

  /** The actor system whose scheduler uses this clock (to name each timer's event). */
  attach(system: ActorSystem<ActorSystemInfo>): void {
    this.system = system;
  }

  /** Current time in ms. */
  get ms(): number {
    return this.now() / 10;
  }

  override setTimeout(fn: (...args: unknown[]) => void, timeout: number): number {
    const ticks = Math.max(0, Math.round(timeout * 10));
    const scheduled = this.claimScheduled();
    const timer: HeldTimer = { due: this.now() + ticks, fn: () => fn(), key: scheduled?.key ?? null, type: scheduled?.type ?? null };
    const id: number = super.setTimeout(
      () => {
        this.timers.delete(id);
        timer.fn();
      },
      this.mode === 'recorded' ? Infinity : ticks,
    );
    this.timers.set(id, timer);
    return id;
  }

  override clearTimeout(id: number): void {
    this.timers.delete(id);
    super.clearTimeout(id);
  }

  /** Moves time forward to `ms`; in `simulated` mode every timer due by then fires, at its due time. */
  advanceTo(ms: number): void {
    const target = Math.round(ms * 10);
    if (target <= this.now()) return;
    if (this.mode === 'simulated') {
      for (;;) {
        let next: number | null = null;
        for (const t of this.timers.values()) if (t.due <= target && (next === null || t.due < next)) next = t.due;
        if (next === null) break;
        this.set(Math.max(next, this.now()));
      }
    }
    this.set(target);
  }

  /** Fires the pending timer that carries `type` now; returns how late that is (ms), or null if none is pending. */
  fire(type: string): number | null {
    for (const [id, timer] of this.timers) {
      if (timer.type !== type) continue;
      this.timers.delete(id);
      super.clearTimeout(id);
      const lateMs = (this.now() - timer.due) / 10;
      timer.fn();
      return lateMs;
    }
    return null;
  }

  /** The scheduler records an event in the system snapshot just before asking the clock for a timer. */
  private claimScheduled(): { key: string; type: string } | null {
    if (!this.system) return null;
    const claimed = new Set<string | null>([...this.timers.values()].map((t) => t.key));
    for (const [key, scheduled] of Object.entries(this.system.getSnapshot()._scheduledEvents)) {
      if (!claimed.has(key)) return { key, type: scheduled.event.type };
    }
    return null;
  }
}

// ── replay ────────────────────────────────────────────────────────────────────────────────────

export type ReplayCommand = { t: number } & CommandSummary;

export interface SpokenItem {
  t: number;
  generation: number;
  clip?: ClipId;
  text?: string;
}

export type TraceItem =
  | { t: number; cause: number; kind: 'state'; state: string }
  | { t: number; cause: number; kind: 'command'; command: CommandSummary }
  | ({ cause: number; kind: 'speak' } & SpokenItem);

/**
 * Watches a replay as it runs (e.g. the inspector builds its call trace from it). Called inside the
 * actor's observers: must not throw (XState would rethrow the error on a timer).
 */
export interface ReplayObserver {
  /** A journal entry about to be delivered to the machine (a recorded timer firing: `entry.timer`). */
  event?(t: number, entry: JournalEntry): void;
  /** Every snapshot the replayed actor publishes, not only state changes. */
  snapshot?(t: number, snapshot: SnapshotFrom<typeof callMachine>): void;
  /** A command the machine emitted, as emitted (audio included). */
  command?(t: number, command: CallCommand): void;
}

export interface ReplayOptions {
  timers?: 'recorded' | 'simulated';
  /** Machine to replay with (default: the shipped call machine); e.g. a changed one, for what-ifs. */
  machine?: typeof callMachine;
  observe?: ReplayObserver;
}

export interface ReplayResult {
  transitions: { t: number; state: string }[];
  commands: ReplayCommand[];
  /**
   * Transitions, commands and speech requests interleaved as they happened; `cause` indexes
   * `journal.events` (-1: the start, or a timer the simulated clock fired).
   */
  trace: TraceItem[];
  /** What the machine asked the synthesizer to say: clips and reply sentences, per generation. */
  spoken: SpokenItem[];
  finalState: string;
  status: 'active' | 'done' | 'error' | 'stopped';
  /** The outcome the replayed machine reached (`error` if it threw), null if it did not end. */
  outcome: Outcome | null;
  /** The outcome the journal recorded. */
  recordedOutcome: Outcome | null;
  error: string | null;
  /** Recorded timer firings replayed, and how late they fired live against their nominal due time. */
  timers: { fired: number; meanLateMs: number; maxLateMs: number };
  /** Where the replay could not follow the journal (e.g. a recorded timer the machine never set). */
  divergences: string[];
  /** Journal events after the machine had already ended (the live actor dropped them too). */
  ignoredAfterEnd: number;
}

const never = () => new Promise<never>(() => undefined);

/** Child actors that do nothing: their effects on the machine are all in the journal. */
function inertActors(spoken: (generation: number, speech: Speech) => void) {
  return {
    vad: fromCallback<VadCommand, CallRef>(() => undefined),
    stt: fromCallback<EventObject, CallRef>(() => undefined),
    agent: fromCallback<AgentCommand, AgentInput>(() => undefined),
    tts: fromCallback<TtsCommand, TtsInput>(({ input, receive }) => {
      for (const speech of input.speech) spoken(input.generation, speech);
      receive((cmd) => {
        if (cmd.type === 'tts.say') spoken(input.generation, cmd.speech);
      });
    }),
    transfer: fromPromise<void, TransferInput>(never),
    hangup: fromPromise<void, ReasonInput>(never),
    handoff: fromPromise<void, ReasonInput>(never),
  } satisfies CallActors;
}

export function replayJournal(journal: Journal, options: ReplayOptions = {}): ReplayResult {
  const mode = options.timers ?? 'recorded';
  const observe = options.observe ?? {};
  const clock = new ReplayClock(mode);
  const transitions: ReplayResult['transitions'] = [];
  const commands: ReplayCommand[] = [];
  const trace: TraceItem[] = [];
  const spoken: SpokenItem[] = [];
  const divergences: string[] = [];
  const lateness: number[] = [];
  let cause = -1;
  let outcome: Outcome | null = null;
  let error: string | null = null;
  let lastState = '';

  const machine = (options.machine ?? callMachine).provide({
    actors: inertActors((generation, speech) => {
      const item: SpokenItem = { t: clock.ms, generation, ...(speech.kind === 'clip' ? { clip: speech.clip } : { text: speech.text }) };
      spoken.push(item);
      trace.push({ ...item, cause, kind: 'speak' });
    }),
  });
  const actor = createActor(machine, { input: journal.input, clock });
  clock.attach(actor.system as ActorSystem<ActorSystemInfo>);
  actor.on('*', (command) => {
    observe.command?.(clock.ms, command);
    const summary = summarizeCommand(command);
    commands.push({ t: clock.ms, ...summary });
    trace.push({ t: clock.ms, cause, kind: 'command', command: summary });
    if (command.type === 'out.ended') outcome = command.outcome;
  });
  actor.subscribe({
    next: (snapshot) => {
      observe.snapshot?.(clock.ms, snapshot);
      const state = statePath(snapshot.value);
      if (state === lastState) return;
      lastState = state;
      transitions.push({ t: clock.ms, state });
      trace.push({ t: clock.ms, cause, kind: 'state', state });
    },
    error: (err) => {
      error = err instanceof Error ? err.message : String(err);
      outcome = 'error';
    },
  });
  actor.start();

  let ignoredAfterEnd = 0;
  journal.events.forEach((entry, index) => {
    if (actor.getSnapshot().status !== 'active') {
      ignoredAfterEnd++;
      return;
    }
    if (entry.timer && mode === 'simulated') return;
    cause = -1;
    clock.advanceTo(entry.t);
    cause = index;
    observe.event?.(clock.ms, entry);
    if (entry.timer) {
      const late = clock.fire(entry.event.type);
      if (late === null) divergences.push(`line ${entry.line}: timer "${entry.event.type}" fired live but is not pending in the replay`);
      else lateness.push(late);
      return;
    }
    actor.send(entry.event);
  });
  if (mode === 'simulated' && journal.outcome && actor.getSnapshot().status === 'active') {
    cause = -1;
    clock.advanceTo(journal.outcome.t);
  }

  const snapshot = actor.getSnapshot();
  const status = snapshot.status;
  if (status === 'active') actor.stop();
  const recordedOutcome = journal.outcome?.outcome ?? null;
  if (outcome !== recordedOutcome && journal.truncatedAt === null && !journal.tornTail) {
    divergences.push(`outcome: journal says ${recordedOutcome ?? 'none'}, replay reached ${outcome ?? 'none'}`);
  }
  return {
    transitions,
    commands,
    trace,
    spoken,
    finalState: statePath(snapshot.value),
    status,
    outcome,
    recordedOutcome,
    error,
    timers: {
      fired: lateness.length,
      meanLateMs: lateness.length ? Math.round((lateness.reduce((a, b) => a + b, 0) / lateness.length) * 10) / 10 : 0,
      maxLateMs: lateness.length ? Math.max(...lateness) : 0,
    },
    divergences,
    ignoredAfterEnd,
  };
}

/** What a trace item is, without its time: two replays agree when these agree, item by item. */
export function traceKey(item: TraceItem): string {
  if (item.kind === 'state') return `state ${item.state}`;
  if (item.kind === 'command') return `command ${JSON.stringify(item.command)}`;
  return `speak ${item.generation} ${item.clip ?? JSON.stringify(item.text)}`;
}

/** The first place two replays differ (by trace item, ignoring times), or null when they agree. */
export function firstDivergence(a: ReplayResult, b: ReplayResult): { index: number; a: TraceItem | null; b: TraceItem | null } | null {
  const n = Math.max(a.trace.length, b.trace.length);
  for (let i = 0; i < n; i++) {
    const x = a.trace[i] ?? null;
    const y = b.trace[i] ?? null;
    if (!x || !y || traceKey(x) !== traceKey(y)) return { index: i, a: x, b: y };
  }
  return null;
}
