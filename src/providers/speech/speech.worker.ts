/**
 * A speech worker thread (started by ./pool.ts): the offline recognizer (../stt/local-decoder.ts)
 * and synthesizer (../tts/flite.ts), loaded on request. Messages (./protocol.ts) are handled in
 * order; those that arrive while an engine loads wait for it. A synthesis runs when its message
 * arrives (the recognizer decodes in steps between messages), and its audio is transferred back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadRecognizer, type Recognizer } from '../stt/local-decoder.js';
import { loadFlite, type Flite } from '../tts/flite.js';
import type { Engine, FromWorker, ToWorker, WorkerOptions } from './protocol.js';

const port = parentPort!;
const options = workerData as WorkerOptions;
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

let recognizer: Recognizer | null = null;
let flite: Flite | null = null;
let loading = 0;
const backlog: ToWorker[] = [];

const pcmOf = (b: ArrayBuffer) => new Int16Array(b, 0, b.byteLength >> 1);

/** The next sentence's flite instance, made once the messages waiting now are handled. */
let preparing = false;
function prepareSoon(): void {
  if (preparing) return;
  preparing = true;
  setImmediate(() => {
    preparing = false;
    flite?.prepare();
  });
}

async function load(engine: Engine): Promise<void> {
  if (engine === 'stt') {
    recognizer ??= await loadRecognizer(options.maxDecoders, {
      partial: (id, utt, text) => post({ t: 'stt.partial', id, utt, text }),
      final: (id, utt, text, confidence) => post({ t: 'stt.final', id, utt, text, confidence }),
      error: (id, message) => post({ t: 'stt.error', id, message }),
      warning: (message) => post({ t: 'warning', message }),
    });
  } else {
    flite ??= await loadFlite();
  }
}

function handle(m: ToWorker): void {
  switch (m.t) {
    case 'load':
      loading++;
      load(m.engine).then(
        () => post({ t: 'loaded', engine: m.engine }),
        (e: unknown) => post({ t: 'loadFailed', engine: m.engine, message: e instanceof Error ? e.message : String(e) }),
      ).finally(() => {
        if (--loading === 0) for (const held of backlog.splice(0)) handle(held);
      });
      return;
    case 'tts': {
      if (!flite) return post({ t: 'tts.error', job: m.job, message: 'the synthesizer is not loaded' });
      let audio: Uint8Array;
      try {
        audio = flite.render(m.text, m.voice);
      } catch (e) {
        return post({ t: 'tts.error', job: m.job, message: e instanceof Error ? e.message : String(e) });
      }
      // A fresh array over its own whole buffer: transferred, not copied.
      const own = audio.byteOffset === 0 && audio.byteLength === audio.buffer.byteLength ? audio : audio.slice();
      post({ t: 'tts.done', job: m.job, audio: own.buffer as ArrayBuffer }, [own.buffer as ArrayBuffer]);
      prepareSoon();
      return;
    }
    default:
      break;
  }
  if (!recognizer) {
    if (m.t === 'stt.open') post({ t: 'stt.error', id: m.id, message: 'the recognizer is not loaded' });
    return;
  }
  switch (m.t) {
    case 'stt.open': return recognizer.open(m.id, m.vocabulary);
    case 'stt.start': return recognizer.start(m.id, m.utt, pcmOf(m.pcm));
    case 'stt.audio': return recognizer.audio(m.id, m.utt, pcmOf(m.pcm));
    case 'stt.end': return recognizer.end(m.id, m.utt);
    case 'stt.close': return recognizer.close(m.id);
  }
}

port.on('message', (m: ToWorker) => {
  if (loading > 0 && m.t !== 'load') backlog.push(m);
  else handle(m);
});
