/**
 * Recording audio for post-call transcription: WAV decoding to 8 kHz PCM per channel, in slices
 * that yield to the event loop (a 15-minute dual-channel file must not hold live calls up).
 */
import wavefile from 'wavefile';
import alawmulaw from 'alawmulaw';
import { ulawToPcmSample } from '../audio/ulaw.js';

const RATE = 8000;

/** A transcription failure whose message is safe to store and log. */
export class TranscriptionError extends Error {}

export interface DecodedAudio {
  /** PCM16 8 kHz, one array per channel (1 or 2). */
  channels: Int16Array[];
  sampleRate: number;
  format: string;
  audioMs: number;
  truncatedAtMs?: number;
}

type SampleReader = (view: DataView, offset: number) => number;

const clamp16 = (v: number) => (v > 32767 ? 32767 : v < -32768 ? -32768 : v);

/** Int16 value of one sample, by wavefile bit depth code. */
function readerFor(bitDepth: string, le: boolean): { bytes: number; read: SampleReader } | null {
  switch (bitDepth) {
    case '8':
      return { bytes: 1, read: (v, o) => (v.getUint8(o) - 128) << 8 };
    case '8m':
      return { bytes: 1, read: (v, o) => ulawToPcmSample(v.getUint8(o)) };
    case '8a':
      return { bytes: 1, read: (v, o) => alawmulaw.alaw.decodeSample(v.getUint8(o)) };
    case '16':
      return { bytes: 2, read: (v, o) => v.getInt16(o, le) };
    case '24':
      return {
        bytes: 3,
        read: le ? (v, o) => ((v.getInt8(o + 2) << 16) | (v.getUint8(o + 1) << 8) | v.getUint8(o)) >> 8 : (v, o) => ((v.getInt8(o) << 16) | (v.getUint8(o + 1) << 8) | v.getUint8(o + 2)) >> 8,
      };
    case '32':
      return { bytes: 4, read: (v, o) => v.getInt32(o, le) >> 16 };
    case '32f':
      return { bytes: 4, read: (v, o) => clamp16(Math.round(v.getFloat32(o, le) * 32768)) };
    case '64':
      return { bytes: 8, read: (v, o) => clamp16(Math.round(v.getFloat64(o, le) * 32768)) };
    default:
      return null;
  }
}

export async function decodeWav(bytes: Uint8Array, maxAudioMs: number, clock: Slicer): Promise<DecodedAudio> {
  let wav: InstanceType<typeof wavefile.WaveFile>;
  try {
    wav = new wavefile.WaveFile(bytes);
  } catch {
    throw new TranscriptionError('recording is not a readable WAV file');
  }
  const fmt = wav.fmt as { numChannels: number; sampleRate: number };
  const data = (wav.data as { samples: Uint8Array }).samples;
  const numChannels = fmt.numChannels;
  const sampleRate = fmt.sampleRate;
  const format = wav.bitDepth;
  if (numChannels !== 1 && numChannels !== 2) throw new TranscriptionError(`recording has ${numChannels} channels; 1 or 2 are supported`);
  if (!Number.isInteger(sampleRate) || sampleRate < 4000 || sampleRate > 192_000) throw new TranscriptionError('recording has an unsupported sample rate');
  const reader = readerFor(format, wav.container !== 'RIFX');
  if (!reader) throw new TranscriptionError(`recording format ${format} is not supported`);

  const block = reader.bytes * numChannels;
  const totalFrames = Math.floor(data.length / block);
  const maxFrames = Math.ceil((maxAudioMs * sampleRate) / 1000);
  const frames = Math.min(totalFrames, maxFrames);
  const view = new DataView(data.buffer, data.byteOffset, frames * block);
  const channels: Int16Array[] = [];
  for (let ch = 0; ch < numChannels; ch++) {
    const out = new Int16Array(frames);
    for (let i = 0, o = ch * reader.bytes; i < frames; i++, o += block) {
      out[i] = reader.read(view, o);
      if ((i & 0xfff) === 0xfff) await clock.tick();
    }
    channels.push(sampleRate === RATE ? out : await resampleTo8k(out, sampleRate, clock));
  }
  return {
    channels,
    sampleRate,
    format,
    audioMs: Math.round((frames * 1000) / sampleRate),
    ...(frames < totalFrames ? { truncatedAtMs: Math.round((frames * 1000) / sampleRate) } : {}),
  };
}

/**
 * wavefile's `toSampleRate` (sinc), ~5 s at a time so the event loop is never held for long. Each
 * piece is resampled with 50 ms of context on both sides and only its middle is kept, so piece
 * edges (filter start-up) never reach the output; alignment is within one output sample.
 */
async function resampleTo8k(pcm: Int16Array, rate: number, clock: Slicer): Promise<Int16Array> {
  const outLength = Math.floor((pcm.length * RATE) / rate);
  const out = new Int16Array(outLength);
  const piece = 5 * RATE;
  const margin = Math.ceil(0.05 * rate);
  for (let outStart = 0; outStart < outLength; outStart += piece) {
    const outEnd = Math.min(outLength, outStart + piece);
    const inStart = Math.max(0, Math.floor((outStart * rate) / RATE) - margin);
    const inEnd = Math.min(pcm.length, Math.ceil((outEnd * rate) / RATE) + margin);
    const w = new wavefile.WaveFile();
    w.fromScratch(1, rate, '16', pcm.subarray(inStart, inEnd));
    w.toSampleRate(RATE, { method: 'sinc' });
    // getSamples' typings say Float64Array; with Int16Array as the output type it returns Int16Array.
    const res = w.getSamples(false, Int16Array) as unknown as Int16Array;
    const offset = (inStart * RATE) / rate;
    for (let j = outStart; j < outEnd; j++) {
      const k = Math.min(res.length - 1, Math.max(0, Math.round(j - offset)));
      out[j] = res[k] ?? 0;
    }
    await clock.pause();
  }
  return out;
}

/**
 * Cooperative scheduling: `tick()` yields once `sliceMs` of synchronous work has passed, `pause()`
 * always yields; both throw once the signal fires.
 */
export class Slicer {
  private since = performance.now();

  constructor(
    private readonly sliceMs: number,
    private readonly signal: AbortSignal,
    private readonly reason: () => string,
  ) {}

  check(): void {
    if (this.signal.aborted) throw new TranscriptionError(this.reason());
  }

  async tick(): Promise<void> {
    if (performance.now() - this.since >= this.sliceMs) await this.pause();
  }

  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.since = performance.now();
    this.check();
  }

  /** The abort reason's words when the signal fired, else null. */
  abortedReason(): string | null {
    return this.signal.aborted ? this.reason() : null;
  }
}
