/**
 * Outbound pacer for one call (docs/design/twilio.md §3.4–3.5, docs/design/conversation.md §2). Pure logic: the clock,
 * the scheduler and the socket sink are injected, so tests drive it with fake timers.
 *
 * Model: each reply `generation` has a timeline of μ-law bytes (8 bytes = 1 ms) held in one linear
 * buffer. A cursor marks the next byte to send; "the queue" is [cursor, end). Sending is paced on a
 * monotonic clock at most `leadMs` ahead of playback; after every `media` message goes a mark
 * `${generation}:${epoch}:${endMs}`. `clear()` pauses and bumps the epoch but keeps the timeline,
 * so `resume()` can replay from what the caller heard. The player ticks (on an interval shared by
 * all players) only while there is something sendable.
 */
import { ULAW_SILENCE } from '../audio/ulaw.js';
import { clearMessage, markMessage, mediaMessage } from './media-codec.js';

export const LEAD_MS = 200;
const FRAME_BYTES = 160; // 20 ms
const BYTES_PER_MS = 8;

export interface Scheduler {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/**
 * One shared interval per period for every player in the process: with hundreds of calls playing,
 * one timer per call every 10 ms (plus the microtask checkpoint Node runs after each timer
 * callback) cost more than the pacing itself. Members tick in join order; the interval exists only
 * while someone is a member. Groups are keyed by the global `setInterval` in effect, so
 * `vi.useFakeTimers()` gets its own group instead of a fake interval that real timers never fire.
 */
type TickGroup = { members: Set<() => void>; stop: (() => void) | null };
const tickGroups = new Map<typeof setInterval, Map<number, TickGroup>>();

const sharedScheduler: Scheduler = {
  setInterval: (fn, ms) => {
    const byPeriod = tickGroups.get(setInterval) ?? tickGroups.set(setInterval, new Map()).get(setInterval)!;
    let group = byPeriod.get(ms);
    if (!group) byPeriod.set(ms, (group = { members: new Set(), stop: null }));
    const g = group;
    // A distinct function per membership, so the same tick may join twice without aliasing.
    const member = () => fn();
    g.members.add(member);
    if (!g.stop) {
      const handle = setInterval(() => {
        for (const m of g.members) m();
      }, ms).unref();
      const clear = clearInterval; // the matching (possibly fake) clearInterval
      g.stop = () => clear(handle);
    }
    return { group: g, member };
  },
  clearInterval: (h) => {
    const { group, member } = h as { group: TickGroup; member: () => void };
    group.members.delete(member);
    if (group.members.size === 0 && group.stop) {
      group.stop();
      group.stop = null;
    }
  },
};

export interface PlayerOptions {
  streamSid: string;
  /** Sink for JSON text frames; expected not to throw (errors are caught and reported anyway). */
  send: (json: string) => void;
  /** Runs a burst of sends (each message and its mark, a reply's first lead) so they leave in one socket write. */
  batch?: (sends: () => void) => void;
  /** Monotonic milliseconds; default `performance.now`. */
  now?: () => number;
  scheduler?: Scheduler;
  /** How far ahead of playback audio may be sent (docs/design/twilio.md §3.5: 100–200). */
  leadMs?: number;
  /** Timer period while audio is queued. */
  tickMs?: number;
  /** Largest `media` message; a multiple of 20, capped by `leadMs`. */
  maxMessageMs?: number;
  /** Audio kept for `resume` per generation; older audio is dropped once played. */
  retainMs?: number;
  /** Unplayed audio accepted per generation; beyond it `enqueue` drops (counted). */
  maxQueuedMs?: number;
  onError?: (err: unknown) => void;
  /** Told what plays when (monotonic ms), and when a `clear` cuts it: the echo guard's reference. */
  echo?: { played(atMs: number, audio: Uint8Array): void; cut(atMs: number): void };
}

export interface PlayerStats {
  bytesSent: number; mediaMessages: number; marksSent: number; clears: number; errors: number;
  /** Times the pacing clock was re-anchored because Twilio's buffer ran dry (incl. each reply start). */
  reanchors: number;
  /** Largest delay of a timer tick past its due time (event-loop jitter as the pacer saw it). */
  maxLatenessMs: number;
  /** Bytes refused by `maxQueuedMs`. */
  droppedBytes: number;
  /** Bytes enqueued for an old or finished generation, ignored. */
  staleBytes: number;
}

export type MarkInfo = { generation: number; epoch: number; endMs: number };

const MARK_RE = /^(\d{1,15}):(\d{1,15}):(\d{1,15})$/;

export class Player {
  /** Inverse of the mark names this player sends; null for any other name. */
  static parseMark(name: string): MarkInfo | null {
    const m = MARK_RE.exec(name);
    if (!m) return null;
    return { generation: Number(m[1]), epoch: Number(m[2]), endMs: Number(m[3]) };
  }

  readonly stats: PlayerStats = {
    bytesSent: 0, mediaMessages: 0, marksSent: 0, clears: 0, reanchors: 0,
    maxLatenessMs: 0, droppedBytes: 0, staleBytes: 0, errors: 0,
  };

  private readonly streamSid: string;
  private readonly sink: (json: string) => void;
  private readonly now: () => number;
  private readonly scheduler: Scheduler;
  private readonly leadMs: number;
  private readonly tickMs: number;
  private readonly msgBytes: number;
  private readonly retainBytes: number;
  private readonly maxQueuedBytes: number;
  private readonly onError: ((err: unknown) => void) | undefined;
  private readonly echo: PlayerOptions['echo'];
  private readonly batch: (sends: () => void) => void;

  private gen = -1;
  private epochN = 0;
  private isPaused = false;
  private finished = false;
  private stopped = false;
  /** Timeline bytes [base, end) live in buf[0, end - base); cursor = next byte to send. */
  private buf = new Uint8Array(0);
  private base = 0; private end = 0; private cursor = 0;
  /** Pacing: playback of everything sent ends at anchor + sentMs (monotonic ms). */
  private anchor = 0; private sentMs = 0;
  private timer: unknown = null;
  private lastTickAt = 0;
  private readonly pad = new Uint8Array(FRAME_BYTES);

  constructor(opts: PlayerOptions) {
    this.streamSid = opts.streamSid;
    this.sink = opts.send;
    this.now = opts.now ?? (() => performance.now());
    this.scheduler = opts.scheduler ?? sharedScheduler;
    this.leadMs = opts.leadMs ?? LEAD_MS;
    this.tickMs = opts.tickMs ?? 10;
    if (!(this.leadMs >= 20)) throw new RangeError('leadMs must be at least 20');
    const maxMsgMs = Math.min(opts.maxMessageMs ?? 100, this.leadMs);
    this.msgBytes = Math.max(FRAME_BYTES, Math.floor(maxMsgMs / 20) * FRAME_BYTES);
    this.retainBytes = (opts.retainMs ?? 60_000) * BYTES_PER_MS;
    this.maxQueuedBytes = (opts.maxQueuedMs ?? 120_000) * BYTES_PER_MS;
    this.onError = opts.onError;
    this.echo = opts.echo;
    this.batch = opts.batch ?? ((sends) => sends());
  }

  get generation(): number { return this.gen; }
  get epoch(): number { return this.epochN; }
  get paused(): boolean { return this.isPaused; }
  /** Audio of the current generation not yet sent (0 while paused: it waits for `resume`). */
  get queuedMs(): number { return this.isPaused ? 0 : (this.end - this.cursor) / BYTES_PER_MS; }
  /** Length of the current generation's timeline. */
  get timelineMs(): number { return this.end / BYTES_PER_MS; }
  /** Timeline position sent so far in the current generation. */
  get sentTimelineMs(): number { return this.cursor / BYTES_PER_MS; }
  /** Audio sent but (by the clock) not yet played, i.e. held in Twilio's buffer. */
  get aheadMs(): number { return Math.max(0, this.anchor + this.sentMs - this.now()); }

  /** Append μ-law audio to reply `generation`. A newer generation replaces the current one. */
  enqueue(generation: number, audio: Uint8Array): void {
    if (!Number.isSafeInteger(generation) || generation < 0) throw new RangeError('bad generation');
    if (this.stopped) return;
    if (generation < this.gen || (generation === this.gen && this.finished)) {
      this.stats.staleBytes += audio.length;
      return;
    }
    if (generation > this.gen) this.startGeneration(generation);
    let n = audio.length;
    const room = this.maxQueuedBytes - (this.end - this.cursor);
    if (n > room) {
      this.stats.droppedBytes += n - Math.max(0, room);
      n = Math.max(0, room);
    }
    if (n === 0) return;
    this.append(audio, n);
    this.pump();
  }

  /** The generation's audio is complete: its last partial frame is padded with silence and sent. */
  finish(generation: number): void {
    if (this.stopped || generation !== this.gen || this.finished) return;
    this.finished = true;
    this.pump();
  }

  /** Barge-in: send `clear` now, drop the queue, bump the epoch, pause. The timeline is kept. */
  clear(): { epoch: number } {
    if (this.stopped) return { epoch: this.epochN };
    this.epochN++;
    this.isPaused = true;
    this.stopTimer();
    this.anchor = this.now() - this.sentMs; // Twilio dropped what it held
    this.stats.clears++;
    this.echo?.cut(this.now());
    this.emit(clearMessage(this.streamSid));
    return { epoch: this.epochN };
  }

  /**
   * Continue the paused current generation from `fromMs` (aligned down to 20 ms; clamped to the
   * retained audio). Returns false, changing nothing, if `generation` is not current or not paused.
   */
  resume(generation: number, fromMs: number): boolean {
    if (this.stopped || !this.isPaused || generation !== this.gen) return false;
    const from = Math.floor(Math.max(0, fromMs) / 20) * FRAME_BYTES;
    this.cursor = Math.min(Math.max(from, this.base), this.end);
    this.isPaused = false;
    this.pump();
    return true;
  }

  /** Frees the timer and the buffer; every later call is a no-op. */
  stop(): void {
    this.stopped = true;
    this.stopTimer();
    this.buf = new Uint8Array(0);
    this.base = this.end = this.cursor = 0;
  }

  private startGeneration(generation: number): void {
    this.gen = generation;
    // Epochs count clears within one generation (mark names carry both), as the call machine does.
    this.epochN = 0;
    this.isPaused = false;
    this.finished = false;
    this.base = this.end = this.cursor = 0;
    if (this.buf.length > 256 * 1024) this.buf = new Uint8Array(0); // give a long reply's memory back
  }

  private append(audio: Uint8Array, n: number): void {
    let live = this.end - this.base;
    if (live + n > this.buf.length) {
      // Drop retained audio older than retainBytes, but never what has not been sent yet.
      const keepFrom = Math.min(this.cursor, this.end + n - this.retainBytes);
      const newBase = Math.max(this.base, Math.floor(keepFrom / FRAME_BYTES) * FRAME_BYTES);
      const shift = newBase - this.base;
      const need = live - shift + n;
      if (need > this.buf.length) {
        const grown = new Uint8Array(Math.max(need, this.buf.length * 2, 16_000));
        grown.set(this.buf.subarray(shift, live));
        this.buf = grown;
      } else if (shift > 0) {
        this.buf.copyWithin(0, shift, live);
      }
      this.base = newBase;
      live -= shift;
    }
    this.buf.set(n === audio.length ? audio : audio.subarray(0, n), live);
    this.end += n;
  }

  /** Bytes the next message would carry right now (0: nothing sendable). */
  private nextMessageBytes(): number {
    const avail = this.end - this.cursor;
    const whole = Math.min(avail, this.msgBytes);
    const n = whole - (whole % FRAME_BYTES);
    return n > 0 ? n : this.finished && avail > 0 ? FRAME_BYTES : 0;
  }

  private pump(): void {
    if (this.stopped || this.isPaused) {
      this.stopTimer();
      return;
    }
    const now = this.now();
    if (this.anchor + this.sentMs < now) {
      this.anchor = now - this.sentMs; // underrun: nothing is buffered at Twilio
      this.stats.reanchors++;
    }
    if (this.dueNow(now)) this.batch(() => this.sendDue(now));
    // emit() catches sink errors; the sink may have called stop() or clear() re-entrantly.
    if (!this.stopped && !this.isPaused && this.nextMessageBytes() > 0) this.startTimer();
    else this.stopTimer();
  }

  /** A message is due: the next one fits in the lead. */
  private dueNow(now: number): boolean {
    const n = this.nextMessageBytes();
    return n > 0 && this.anchor + this.sentMs + n / BYTES_PER_MS <= now + this.leadMs;
  }

  /** Sends every message the lead allows. */
  private sendDue(now: number): void {
    while (!this.stopped && !this.isPaused && this.dueNow(now)) {
      const n = this.nextMessageBytes();
      this.sendOne(n);
      this.sentMs += n / BYTES_PER_MS;
    }
  }

  private sendOne(n: number): void {
    const off = this.cursor - this.base;
    const avail = this.end - this.cursor;
    let audio: Uint8Array;
    if (avail >= n) {
      audio = this.buf.subarray(off, off + n);
      this.cursor += n;
    } else {
      // The last partial frame after finish(): pad with μ-law silence.
      this.pad.set(this.buf.subarray(off, off + avail));
      this.pad.fill(ULAW_SILENCE, avail);
      audio = this.pad;
      this.cursor = this.end;
    }
    this.stats.bytesSent += n;
    this.stats.mediaMessages++;
    this.echo?.played(this.anchor + this.sentMs, audio);
    this.emit(mediaMessage(this.streamSid, audio));
    const name = `${this.gen}:${this.epochN}:${Math.floor(this.cursor / BYTES_PER_MS)}`;
    this.stats.marksSent++;
    this.emit(markMessage(this.streamSid, name));
  }

  private emit(json: string): void {
    try {
      this.sink(json);
    } catch (err) {
      this.stats.errors++;
      this.onError?.(err);
    }
  }

  private startTimer(): void {
    if (this.timer !== null) return;
    this.lastTickAt = this.now();
    this.timer = this.scheduler.setInterval(this.tick, this.tickMs);
  }

  private stopTimer(): void {
    if (this.timer === null) return;
    this.scheduler.clearInterval(this.timer);
    this.timer = null;
  }

  private readonly tick = (): void => {
    const now = this.now();
    const late = now - this.lastTickAt - this.tickMs;
    if (late > this.stats.maxLatenessMs) this.stats.maxLatenessMs = late;
    this.lastTickAt = now;
    this.pump();
  };
}
