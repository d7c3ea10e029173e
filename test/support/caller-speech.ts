/** Caller lines for simulated calls: the local voice, without flite's ~200 ms of leading and trailing quiet. */
import { ulawEnergyDb } from '../../src/audio/ulaw.js';
import { synthesizeUlaw } from '../../src/providers/tts/local.js';

const FRAME = 160;

/** `ulaw` cut to its first and last 20 ms frame at or above `thresholdDb`. */
export function trimSilence(ulaw: Uint8Array, thresholdDb = -35): Uint8Array {
  const frames = Math.floor(ulaw.length / FRAME);
  const loud = (i: number) => ulawEnergyDb(ulaw.subarray(i * FRAME, (i + 1) * FRAME)) >= thresholdDb;
  let first = 0;
  while (first < frames && !loud(first)) first++;
  let last = frames - 1;
  while (last > first && !loud(last)) last--;
  return ulaw.slice(first * FRAME, (last + 1) * FRAME);
}

const cache = new Map<string, Promise<Uint8Array>>();

/** A caller line in the local voice, trimmed, synthesized once per text. */
export function callerSpeech(text: string): Promise<Uint8Array> {
  let p = cache.get(text);
  if (!p) {
    p = synthesizeUlaw(text).then((ulaw) => trimSilence(ulaw));
    cache.set(text, p);
  }
  return p;
}
