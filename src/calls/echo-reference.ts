/**
 * The echo guard's reference (docs/design/conversation.md §2): how loud the audio the caller's
 * phone was playing was, 20 ms at a time, on the monotonic clock. Twilio cancels no echo, so our
 * own voice comes back in the caller's frames some tens of milliseconds later and at least
 * ~20 dB quieter (a handset's echo return loss; a speakerphone's can be less). A frame within
 * `ECHO_MARGIN_DB` of the loudest audio played over the `ECHO_WINDOW_MS` before it may be that
 * echo, and is not taken for the caller.
 *
 * The player reports each message as it schedules it (`played`, with the time its playback starts)
 * and each `clear` (`cut`: Twilio drops what it had not played). Fixed memory: a ring of the last
 * `SLOTS` frames played, enough for the 200 ms the player runs ahead plus the window.
 */
import { ENERGY_FLOOR_DB, ulawEnergyDb } from '../audio/ulaw.js';

/**
 * Echo comes back up to this long after its audio played: acoustic path, the phone network both
 * ways, and Twilio's playout starting later than the player's clock says.
 */
export const ECHO_WINDOW_MS = 200;
/**
 * Caller audio must be louder than the loudest recent engine audio minus this to count: echo comes
 * back at least 20 dB down, so 14 dB leaves 6 dB of margin, while a caller talking over us at a
 * normal level (within ~10 dB of our voice) is still heard.
 */
export const ECHO_MARGIN_DB = 14;

const FRAME_MS = 20;
const FRAME_BYTES = 160;
const SLOTS = 64;

export class EchoReference {
  private readonly startMs = new Float64Array(SLOTS);
  private readonly db = new Float64Array(SLOTS);
  /** Slots in use, the newest at (head - 1) mod SLOTS. */
  private count = 0;
  private head = 0;

  /** `ulaw` starts playing at `atMs` (monotonic ms), 8 bytes per ms. */
  played(atMs: number, ulaw: Uint8Array): void {
    for (let off = 0; off < ulaw.length; off += FRAME_BYTES) {
      this.startMs[this.head] = atMs + off / 8;
      this.db[this.head] = ulawEnergyDb(ulaw.subarray(off, Math.min(ulaw.length, off + FRAME_BYTES)));
      this.head = (this.head + 1) % SLOTS;
      this.count = Math.min(SLOTS, this.count + 1);
    }
  }

  /** Playback stopped at `atMs` (a `clear`): nothing scheduled from then on will play. */
  cut(atMs: number): void {
    while (this.count > 0) {
      const newest = (this.head - 1 + SLOTS) % SLOTS;
      if (this.startMs[newest]! < atMs) break;
      this.head = newest;
      this.count--;
    }
  }

  /** Loudest frame (dBFS) playing at any time in [fromMs, toMs); the energy floor if none. */
  loudestDb(fromMs: number, toMs: number): number {
    let max = ENERGY_FLOOR_DB;
    for (let i = 0; i < this.count; i++) {
      const slot = (this.head - 1 - i + 2 * SLOTS) % SLOTS;
      const start = this.startMs[slot]!;
      if (start + FRAME_MS <= fromMs) break; // older slots are older still
      if (start < toMs && this.db[slot]! > max) max = this.db[slot]!;
    }
    return max;
  }

  /**
   * True when a caller frame of level `frameDb`, captured over [fromMs, toMs), may be nothing but
   * our own audio coming back.
   */
  mayBeEcho(frameDb: number, fromMs: number, toMs: number): boolean {
    const ref = this.loudestDb(fromMs - ECHO_WINDOW_MS, toMs);
    return ref > ENERGY_FLOOR_DB && frameDb < ref - ECHO_MARGIN_DB;
  }
}
