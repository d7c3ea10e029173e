/**
 * G.711 μ-law ⇄ PCM16 by lookup table (docs/design/stack.md §3.4). Both tables are built once at import
 * and match alawmulaw on every input (test/audio/ulaw.test.ts checks all 256 bytes and all 65,536
 * samples). The table loops run ~3× faster than alawmulaw's per-sample arithmetic and allocate
 * nothing when the caller passes `out`.
 */
import alawmulaw from 'alawmulaw';

/** μ-law byte for digital silence (decodes to 0). Used to pad frames and fill timestamp gaps. */
export const ULAW_SILENCE = 0xff;

/** Floor returned by the energy helpers for digital silence or an empty frame, in dBFS. */
export const ENERGY_FLOOR_DB = -100;

const TO_PCM = new Int16Array(256);
for (let b = 0; b < 256; b++) {
  const u = ~b & 0xff;
  const exp = (u >> 4) & 7;
  const mant = u & 0x0f;
  const mag = (((mant << 3) + 0x84) << exp) - 0x84;
  TO_PCM[b] = u & 0x80 ? -mag : mag;
}

/** Index: `sample & 0xffff` (two's complement), so negative samples need no branch. */
const TO_ULAW = new Uint8Array(65536);
for (let s = -32768; s < 32768; s++) TO_ULAW[s & 0xffff] = alawmulaw.mulaw.encodeSample(s) & 0xff;

/** Square of each μ-law byte's PCM value: lets `ulawEnergyDb` skip the decode. */
const SQUARE = new Float64Array(256);
for (let b = 0; b < 256; b++) SQUARE[b] = TO_PCM[b]! * TO_PCM[b]!;

/**
 * Decode μ-law bytes to PCM16. With `out`, writes `bytes.length` samples into it (no allocation)
 * and returns `out` itself when the lengths are equal, else a view of its first `bytes.length`
 * samples. Throws RangeError if `out` is too short (a programming error, never input-driven).
 */
export function decodeUlaw(bytes: Uint8Array, out?: Int16Array): Int16Array {
  const n = bytes.length;
  const dst = out ?? new Int16Array(n);
  if (dst.length < n) throw new RangeError(`decodeUlaw: out holds ${dst.length} samples, need ${n}`);
  for (let i = 0; i < n; i++) dst[i] = TO_PCM[bytes[i]!]!;
  return dst.length === n ? dst : dst.subarray(0, n);
}

/** Encode PCM16 to μ-law; `out` works as in `decodeUlaw`. */
export function encodeUlaw(pcm: Int16Array, out?: Uint8Array): Uint8Array {
  const n = pcm.length;
  const dst = out ?? new Uint8Array(n);
  if (dst.length < n) throw new RangeError(`encodeUlaw: out holds ${dst.length} bytes, need ${n}`);
  for (let i = 0; i < n; i++) dst[i] = TO_ULAW[pcm[i]! & 0xffff]!;
  return dst.length === n ? dst : dst.subarray(0, n);
}

/** Decode one μ-law byte (0–255) to a PCM16 sample. */
export const ulawToPcmSample = (byte: number): number => TO_PCM[byte & 0xff]!;

/** Encode one PCM16 sample (-32768–32767) to a μ-law byte. */
export const pcmToUlawSample = (sample: number): number => TO_ULAW[sample & 0xffff]!;

const toDb = (sumSquares: number, n: number): number => {
  if (n === 0 || sumSquares === 0) return ENERGY_FLOOR_DB;
  // RMS relative to full scale (32768): a full-scale square wave is 0 dBFS, a full-scale sine ≈ -3.
  const db = 10 * Math.log10(sumSquares / n / (32768 * 32768));
  return db < ENERGY_FLOOR_DB ? ENERGY_FLOOR_DB : db;
};

/** RMS level of a PCM16 frame in dBFS, floored at -100 (also for an empty or all-zero frame). */
export function frameEnergyDb(pcm: Int16Array): number {
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s = pcm[i]!;
    sum += s * s;
  }
  return toDb(sum, pcm.length);
}

/** Same as `frameEnergyDb(decodeUlaw(bytes))`, without decoding. */
export function ulawEnergyDb(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) sum += SQUARE[bytes[i]!]!;
  return toDb(sum, bytes.length);
}
