/**
 * The call's audio on its way to a cloud recognizer: a μ-law pre-roll ring while the caller is
 * quiet, and the utterance (pre-roll first) while they speak, up to the cap. Shared by the OpenAI
 * (realtime and batch) and ElevenLabs Scribe adapters.
 */
import { encodeUlaw } from '../../audio/ulaw.js';

const RATE = 8000;
const MS = RATE / 1000;
/** Inbound utterance cap (docs/design/reliability.md F13: 60 s, 480 KB of μ-law). */
export const MAX_UTTERANCE_MS = 60_000;
/** Less speech than this (pre-roll not counted) is a click or a cough: empty final, no request. */
export const MIN_SPEECH_MS = 150;

/**
 * Keeps the last `preRoll` samples while idle and the utterance (pre-roll first) while speaking,
 * up to the cap.
 */
export class UtteranceBuffer {
  private readonly ring: Uint8Array;
  private ringPos = 0;
  private ringFull = false;
  private buf = new Uint8Array(0);
  /** One frame's μ-law while idle, reused: the per-frame path allocates nothing. */
  private scratch = new Uint8Array(0);
  /** Bytes (= samples) of the utterance, pre-roll included. */
  len = 0;
  /** Samples written since speechStarted (pre-roll not counted). */
  speech = 0;

  constructor(preRoll: number, private readonly max = MAX_UTTERANCE_MS * MS) {
    this.ring = new Uint8Array(preRoll);
  }

  get capped(): boolean {
    return this.len >= this.max;
  }

  /** Adds a frame to the pre-roll ring (idle). */
  remember(pcm: Int16Array): void {
    const ring = this.ring;
    if (ring.length === 0) return;
    if (this.scratch.length < pcm.length) this.scratch = new Uint8Array(pcm.length);
    let ulaw = encodeUlaw(pcm, this.scratch);
    if (ulaw.length >= ring.length) {
      // Only the newest ring's worth survives, where a byte-by-byte pass would have left it.
      this.ringPos = (this.ringPos + ulaw.length - ring.length) % ring.length;
      ulaw = ulaw.subarray(ulaw.length - ring.length);
    }
    const head = ring.length - this.ringPos;
    if (ulaw.length <= head) ring.set(ulaw, this.ringPos); // the usual case: no views made
    else {
      ring.set(ulaw.subarray(0, head), this.ringPos);
      ring.set(ulaw.subarray(head), 0); // the rest wraps to the start
    }
    const end = this.ringPos + ulaw.length;
    if (end >= ring.length) this.ringFull = true;
    this.ringPos = end % ring.length;
  }

  /** Starts an utterance with the pre-roll; returns the pre-roll bytes. */
  start(): Uint8Array {
    this.len = this.speech = 0;
    if (this.ringFull) this.append(this.ring.subarray(this.ringPos));
    this.append(this.ring.subarray(0, this.ringPos));
    this.ringPos = 0;
    this.ringFull = false;
    return this.buf.subarray(0, this.len);
  }

  /** Adds a speech frame (up to the cap); returns the μ-law bytes taken. */
  add(pcm: Int16Array): Uint8Array {
    const from = this.len;
    const taken = Math.min(pcm.length, this.max - from);
    this.reserve(taken);
    // Encoded straight into the utterance: no frame allocated, no second copy.
    const out = this.buf.subarray(from, from + taken);
    encodeUlaw(taken === pcm.length ? pcm : pcm.subarray(0, taken), out);
    this.len += taken;
    this.speech += taken;
    return out;
  }

  /** The utterance so far (a view, valid until the next call). */
  current(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** A copy of the utterance; the buffer is reset. */
  take(): Uint8Array {
    const out = this.buf.slice(0, this.len);
    this.reset();
    return out;
  }

  reset(): void {
    this.len = this.speech = 0;
  }

  private append(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.max - this.len);
    this.reserve(n);
    this.buf.set(bytes.subarray(0, n), this.len);
    this.len += n;
    return n;
  }

  /** Room for `n` more bytes after the utterance (n never takes it past the cap). */
  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.min(this.max, Math.max(this.len + n, this.buf.length * 2, 8 * RATE)));
    grown.set(this.buf.subarray(0, this.len));
    this.buf = grown;
  }
}
