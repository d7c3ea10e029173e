import alawmulaw from 'alawmulaw';
import { describe, expect, it } from 'vitest';
import {
  decodeUlaw, encodeUlaw, ENERGY_FLOOR_DB, frameEnergyDb, pcmToUlawSample, ULAW_SILENCE,
  ulawEnergyDb, ulawToPcmSample,
} from '../../src/audio/ulaw.js';

const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
const allSamples = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);

describe('μ-law tables', () => {
  it('decode matches alawmulaw for all 256 bytes', () => {
    // `===`, not Object.is: alawmulaw decodes 0x7f to -0, an Int16Array holds 0.
    for (let b = 0; b < 256; b++) expect(ulawToPcmSample(b) === alawmulaw.mulaw.decodeSample(b)).toBe(true);
    expect(Array.from(decodeUlaw(allBytes))).toEqual(Array.from(alawmulaw.mulaw.decode(allBytes)));
  });

  it('encode matches alawmulaw for all 65,536 samples', () => {
    const ours = encodeUlaw(allSamples);
    const theirs = alawmulaw.mulaw.encode(allSamples);
    let mismatches = 0;
    for (let i = 0; i < 65536; i++) {
      if (ours[i] !== theirs[i]) mismatches++;
      // encodeSample returns the byte sign-extended (0 → -1), so compare its low 8 bits.
      if (pcmToUlawSample(allSamples[i]!) !== (alawmulaw.mulaw.encodeSample(allSamples[i]!) & 0xff)) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('silence byte decodes to 0 and round-trips', () => {
    expect(ULAW_SILENCE).toBe(0xff);
    expect(ulawToPcmSample(ULAW_SILENCE)).toBe(0);
    expect(pcmToUlawSample(0)).toBe(ULAW_SILENCE);
  });

  it('decode → encode is the identity except for 0x7f (-0 → 0xff)', () => {
    const back = encodeUlaw(decodeUlaw(allBytes));
    for (let b = 0; b < 256; b++) expect(back[b]).toBe(b === 0x7f ? 0xff : b);
  });

  it('writes into `out` without allocating and returns it, or a view when longer', () => {
    const out = new Int16Array(4);
    expect(decodeUlaw(Uint8Array.of(0, 1, 2, 3), out)).toBe(out);
    const longer = new Int16Array(10);
    const view = decodeUlaw(Uint8Array.of(0, 0xff), longer);
    expect(view.buffer).toBe(longer.buffer);
    expect(view.length).toBe(2);
    const enc = new Uint8Array(3);
    expect(encodeUlaw(Int16Array.of(0, 1000, -1000), enc)).toBe(enc);
    expect(() => decodeUlaw(new Uint8Array(5), new Int16Array(4))).toThrow(RangeError);
    expect(() => encodeUlaw(new Int16Array(5), new Uint8Array(4))).toThrow(RangeError);
  });
});

describe('frame energy', () => {
  it('floors silence and empty frames at -100 dBFS', () => {
    expect(frameEnergyDb(new Int16Array(160))).toBe(ENERGY_FLOOR_DB);
    expect(frameEnergyDb(new Int16Array(0))).toBe(ENERGY_FLOOR_DB);
    expect(ulawEnergyDb(new Uint8Array(160).fill(ULAW_SILENCE))).toBe(ENERGY_FLOOR_DB);
    expect(frameEnergyDb(Int16Array.of(1, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toBeCloseTo(-100.3, 0);
  });

  it('measures full-scale square 0 dB, sine -3 dB, half-scale square -6 dB', () => {
    const square = Int16Array.from({ length: 160 }, (_, i) => (i % 2 ? 32767 : -32768));
    expect(frameEnergyDb(square)).toBeCloseTo(0, 3);
    const sine = Int16Array.from({ length: 160 }, (_, i) => Math.round(32767 * Math.sin((2 * Math.PI * i) / 16)));
    expect(frameEnergyDb(sine)).toBeCloseTo(-3.01, 2);
    const half = Int16Array.from({ length: 160 }, (_, i) => (i % 2 ? 16384 : -16384));
    expect(frameEnergyDb(half)).toBeCloseTo(-6.02, 2);
  });

  it('ulawEnergyDb equals frameEnergyDb of the decoded frame', () => {
    let seed = 7;
    for (let k = 0; k < 50; k++) {
      const frame = Uint8Array.from({ length: 160 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
      expect(ulawEnergyDb(frame)).toBeCloseTo(frameEnergyDb(decodeUlaw(frame)), 9);
    }
  });
});
