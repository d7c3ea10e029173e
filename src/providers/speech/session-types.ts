/** The main thread's side of a recognizer session on a speech worker (./pool.ts). */

/** Where a recognizer session's results go (main thread). */
export interface RecognizerSink {
  partial(utt: number, text: string): void;
  final(utt: number, text: string, confidence: number | null): void;
  /** The session is over: a recognizer failure or its worker stopped. */
  error(error: Error): void;
}

/** One call's recognizer, on its worker. Buffers passed in are transferred (do not reuse them). */
export interface RecognizerSession {
  start(utt: number, preRoll: Int16Array): void;
  audio(utt: number, pcm: Int16Array): void;
  end(utt: number): void;
  close(): void;
}
