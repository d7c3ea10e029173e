/**
 * Messages between the main thread and a speech worker (./pool.ts, ./speech.worker.ts).
 *
 * Audio crosses as transferred ArrayBuffers (never a view of a buffer the sender keeps using):
 * PCM16 8 kHz in batches of up to 200 ms towards the recognizer, one sentence of μ-law back from
 * the synthesizer. One port per worker, so a session's messages keep their order.
 *
 * A recognizer session is one call's stream, pinned to one worker for its life (the worker holds
 * its utterance buffer and decoder). `utt` numbers the utterances of a session so a late final can
 * be matched to the speechStarted it belongs to.
 */

export type Engine = 'stt' | 'tts';

/** Main → worker. */
export type ToWorker =
  | { t: 'load'; engine: Engine }
  | { t: 'stt.open'; id: number; vocabulary: readonly string[] }
  /** speechStarted: `pcm` is the pre-roll (PCM16) heard before it. */
  | { t: 'stt.start'; id: number; utt: number; pcm: ArrayBuffer }
  | { t: 'stt.audio'; id: number; utt: number; pcm: ArrayBuffer }
  /** speechEnded: the final of `utt` follows (unless the 15 s cap already sent it). */
  | { t: 'stt.end'; id: number; utt: number }
  | { t: 'stt.close'; id: number }
  | { t: 'tts'; job: number; text: string; voice: string };

/** Worker → main. */
export type FromWorker =
  | { t: 'loaded'; engine: Engine }
  | { t: 'loadFailed'; engine: Engine; message: string }
  | { t: 'warning'; message: string }
  | { t: 'stt.partial'; id: number; utt: number; text: string }
  | { t: 'stt.final'; id: number; utt: number; text: string; confidence: number | null }
  /** The session is over on the worker's side: no more messages for `id`. */
  | { t: 'stt.error'; id: number; message: string }
  | { t: 'tts.done'; job: number; audio: ArrayBuffer }
  | { t: 'tts.error'; job: number; message: string };

/** Options the worker is started with (`workerData`). */
export interface WorkerOptions {
  /** Recognizer decoders this worker keeps at most (~24 MB each). */
  maxDecoders: number;
}
