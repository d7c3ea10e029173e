/**
 * The real speech worker (src/providers/speech/speech.worker.ts) with one planted fault for the
 * crash tests (./crashing-speech.ts): opening a recognizer session whose vocabulary holds
 * CRASH_WORD throws from the message handler, an uncaught error that ends the worker thread as a
 * WASM trap or a bug in the engines' glue would. Messages queued behind it are never handled.
 */
import { parentPort } from 'node:worker_threads';
import '../../src/providers/speech/speech.worker.js';
import { CRASH_WORD } from './crashing-speech.js';

parentPort!.on('message', (m: { t: string; vocabulary?: readonly string[] }) => {
  if (m.t === 'stt.open' && m.vocabulary?.includes(CRASH_WORD)) throw new Error('planted speech worker crash');
});
