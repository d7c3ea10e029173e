/** A speech worker with one planted fault (./crashing-speech.worker.ts), for the crash tests. */

/** A recognizer session opened with this word in its vocabulary ends its worker with an uncaught error. */
export const CRASH_WORD = 'planted-worker-crash';

/** The worker script: give it to `new SpeechPool({ script })`. */
export const CRASHING_SPEECH_WORKER = new URL('./crashing-speech.worker.ts', import.meta.url);
