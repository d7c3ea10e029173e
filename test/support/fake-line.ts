/**
 * What a phone line does to a call, for FakeTwilio's `line` option (docs/testing.md "A line like a
 * phone line"). Twilio cancels no echo, the network delivers frames late and in bunches, and marks
 * come back when Twilio's playback passes them, not when the engine would like. A `LineProfile`
 * names the impairments; a `Line` draws every random choice from one seed, so a call can be run again.
 *
 * - **echo**: the engine's own audio, as the caller's phone played it, comes back in the caller's
 *   frames `delayMs` later and `attenuationDb` quieter (one draw per call: an echo path is fixed),
 *   mixed in linear PCM and re-encoded to μ-law.
 * - **jitter**: each inbound frame is delivered 0…`maxLateMs` after it was due, in order (a late
 *   frame holds up the next, as TCP does); with `burstChance` a frame and the next one are held
 *   until the third is due, and the three arrive at once (still at most `maxLateMs` late).
 * - **lateMarksMs**: each mark echo leaves this much after playback passed it, in order.
 */
import { decodeUlaw, encodeUlaw } from '../../src/audio/ulaw.js';

/** A fixed value, or [min, max] drawn uniformly. */
export type Range = number | readonly [number, number];

export interface LineProfile {
  /** Seed for every random choice on the line (default 1). */
  seed?: number;
  echo?: { attenuationDb: Range; delayMs: Range };
  jitter?: { maxLateMs: number; burstChance?: number };
  lateMarksMs?: Range;
}

/** The realistic line: echo −30…−20 dB after 40–120 ms, frames up to 60 ms late, late marks. */
export const PHONE_LINE: Readonly<LineProfile> = {
  echo: { attenuationDb: [-30, -20], delayMs: [40, 120] },
  jitter: { maxLateMs: 60, burstChance: 0.03 },
  lateMarksMs: [0, 60],
};

/** `profile` with another seed (and so another echo path and other delays). */
export const withSeed = (profile: Readonly<LineProfile>, seed: number): LineProfile => ({ ...profile, seed });

/** mulberry32: small, seeded, good enough to spread delays. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FRAME_MS = 20;

export class Line {
  /** The call's echo path (null: none). `gain` is the linear factor of `attenuationDb`. */
  readonly echo: { attenuationDb: number; delayMs: number; gain: number } | null;
  /** Inbound frames delivered after their due time, and bursts of three. */
  readonly stats = { lateFrames: 0, maxLateMs: 0, bursts: 0 };
  private readonly random: () => number;
  /** Burst in progress: frames up to `last` are delivered at `at` (ms on the caller's clock). */
  private burst: { last: number; at: number } | null = null;
  private lastDelivery = -Infinity;
  private lastMark = -Infinity;

  constructor(private readonly profile: Readonly<LineProfile>) {
    this.random = seededRandom(profile.seed ?? 1);
    const e = profile.echo;
    if (e) {
      const attenuationDb = this.draw(e.attenuationDb);
      this.echo = { attenuationDb, delayMs: this.draw(e.delayMs), gain: 10 ** (attenuationDb / 20) };
    } else this.echo = null;
  }

  private draw(r: Range): number {
    return typeof r === 'number' ? r : r[0] + (r[1] - r[0]) * this.random();
  }

  /** When frame `n`, due at `dueMs`, is delivered (never before an earlier frame). */
  deliveryMs(n: number, dueMs: number): number {
    const j = this.profile.jitter;
    let at = dueMs;
    if (j) {
      if (this.burst && n <= this.burst.last) at = this.burst.at;
      else if (this.random() < (j.burstChance ?? 0)) {
        // This frame and the next wait for the one after: the third's slack is what is left of maxLateMs.
        const lastDue = dueMs + 2 * FRAME_MS;
        this.burst = { last: n + 2, at: lastDue + this.random() * Math.max(0, j.maxLateMs - 2 * FRAME_MS) };
        this.stats.bursts++;
        at = this.burst.at;
      } else at = dueMs + this.random() * j.maxLateMs;
    }
    at = Math.max(at, this.lastDelivery);
    this.lastDelivery = at;
    if (at > dueMs + 0.5) {
      this.stats.lateFrames++;
      this.stats.maxLateMs = Math.max(this.stats.maxLateMs, at - dueMs);
    }
    return at;
  }

  /** When a mark echo due at `nowMs` leaves (`late`: playback passed it; a clear's echoes are not delayed). */
  markMs(nowMs: number, late: boolean): number {
    const r = this.profile.lateMarksMs;
    const at = Math.max(nowMs + (late && r !== undefined ? this.draw(r) : 0), this.lastMark);
    this.lastMark = at;
    return at;
  }

  get delaysMarks(): boolean {
    return this.profile.lateMarksMs !== undefined;
  }

  get delaysFrames(): boolean {
    return this.profile.jitter !== undefined;
  }
}

const pcmIn = new Int16Array(160);
const pcmOut = new Int16Array(160);

/** `frame` (μ-law) with `echo` (PCM16, same length) added at `gain`, in linear PCM, clamped, re-encoded. */
export function mixEcho(frame: Uint8Array, echo: Int16Array, gain: number): Uint8Array {
  const n = frame.length;
  const a = decodeUlaw(frame, n === pcmIn.length ? pcmIn : new Int16Array(n));
  const out = n === pcmOut.length ? pcmOut : new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.max(-32768, Math.min(32767, Math.round(a[i]! + echo[i]! * gain)));
  return encodeUlaw(out, new Uint8Array(n));
}
