/**
 * After a call: download its recording, find the speech on each channel and transcribe it with
 * the deployment's STT provider, the same way a live call would hear it (docs/recordings.md).
 *
 * Pipeline, per recording:
 * 1. `fetchRecording` (src/twilio/recording-download.ts) → WAV bytes.
 * 2. wavefile parses the container (RIFF/RIFX/RF64, fmt, data). Samples are unpacked here, per
 *    channel and in time slices, not with `getSamples()`: measured on this machine (2 cores,
 *    Node 20), `getSamples` blocks ~850 ms for 15 min of dual-channel 8 kHz PCM16 and `fromMuLaw`
 *    ~2.7 s, while the loops below take a few ms per minute of audio and yield in between.
 *    Formats: PCM 8/16/24/32-bit, float 32/64, μ-law, A-law; 1 or 2 channels.
 * 3. Not 8 kHz: resampled to 8 kHz with wavefile's `toSampleRate` (sinc), ~5 s at a time with
 *    50 ms of overlap on each side (wavefile resamples a whole buffer at once: 60 s of 16 kHz
 *    stereo took ~1 s in one go).
 * 4. Per channel, like a live call: 20 ms frames go to the STT stream and the energy VAD; the
 *    VAD's speechStart/speechEnd become speechStarted/speechEnded, and each segment's onFinal is
 *    awaited before the next frame. Segments longer than 14 s are cut (the local STT caps an
 *    utterance at 15 s and then emits its final early). Empty finals (nothing understood) are dropped.
 *
 * Channels: a dual-channel recording made with REST `recordingChannels: 'dual'` on a
 * <Connect><Stream> call has one leg per channel, but Twilio does not document which one is the
 * caller for this kind of call. **Unverified**: channel 0 is labelled 'caller' and channel 1
 * 'agent' (our synthesized voice). A mono file mixes both sides; its segments are all 'caller'.
 *
 * Bounds: one transcription at a time per transcriber (others wait in a queue of `maxQueued`);
 * the first `maxAudioMs` (15 min) of audio only (`truncatedAtMs` says so); `timeoutMs` (10 min)
 * for download + decoding + recognition; the event loop is yielded (setImmediate) at least every
 * `sliceMs` of work and between segments. With the local STT the recognition itself runs in a
 * speech worker (src/providers/speech/pool.ts): this loop only copies frames (~µs each), and the
 * worker decodes a segment in 200 ms steps taken in turn with the live calls pinned to it, so a
 * recording never holds a call's transcript up by more than a step.
 *
 * Never throws: failures come back as `status: 'failed'` with a message built from our own words
 * (no URL, credentials or phone numbers; provider messages are scrubbed).
 */
import type { Logger } from 'pino';
import { decodeWav, Slicer, TranscriptionError } from './recording-audio.js';
import { isVetError } from '../errors.js';
import { scrubText } from '../observability/logger.js';
import type { SttProvider } from '../providers/stt/types.js';
import type { VadParams, VadProvider } from '../providers/vad/types.js';

export type RecordingChannel = 'caller' | 'agent';

export interface RecordingSegment {
  channel: RecordingChannel;
  /** Recording time (ms from the start of the file) where the VAD opened the segment (back-dated). */
  startMs: number;
  /** Where the closing silence began (or the end of the audio). */
  endMs: number;
  text: string;
}

export interface RecordingTranscript {
  recordingSid?: string;
  /** Both channels, ordered by startMs. */
  segments: RecordingSegment[];
  status: 'done' | 'failed';
  error?: string;
  /** Set when the recording was longer than `maxAudioMs`: only audio before this was transcribed. */
  truncatedAtMs?: number;
}

export interface RecordingTranscriptionRequest {
  callSid: string;
  tenantId: string;
  /** `RecordingUrl` from the status callback (no extension). */
  recordingUrl: string;
  /** `RecordingChannels` from the status callback, if any. */
  channels: number | null;
  /** Copied into the result; taken from the URL when omitted. */
  recordingSid?: string;
  /** Aborts the transcription (e.g. shutdown); it then fails with "cancelled". */
  signal?: AbortSignal;
}

export interface RecordingTranscriber {
  transcribe(request: RecordingTranscriptionRequest): Promise<RecordingTranscript>;
}

export interface RecordingTranscriberDeps {
  /** Downloads `RecordingUrl` as WAV bytes (createRecordingFetcher). */
  fetchRecording(url: string, signal: AbortSignal, options?: { channels?: number | null }): Promise<Uint8Array>;
  stt: SttProvider;
  vad: VadProvider;
  /** Words to favour for this clinic (e.g. sttVocabularyFor(tenant)). */
  tenantVocabulary(tenantId: string): readonly string[];
  /** Language tag for this clinic; default en-US. */
  tenantLanguage?(tenantId: string): string;
  logger: Logger;
  /** Download + decode + recognition. Default 600 000 (10 min). */
  timeoutMs?: number;
  /** Audio transcribed at most, per channel. Default 900 000 (15 min). */
  maxAudioMs?: number;
  /** Transcriptions waiting behind the running one; more fail at once. Default 50. */
  maxQueued?: number;
  /** VAD thresholds; default: the clinic-file defaults (-38 dBFS, 100 ms speech, 200 ms silence). */
  vadParams?: VadParams;
  /** Longest stretch of synchronous work before yielding to the event loop. Default 10 ms. */
  sliceMs?: number;
}

export const RECORDING_TRANSCRIBE_TIMEOUT_MS = 600_000;
export const RECORDING_MAX_AUDIO_MS = 15 * 60_000;
const RATE = 8000;
const FRAME = 160; // 20 ms at 8 kHz
/** Below the local STT's 15 s utterance cap, so every speechEnded gets exactly one final. */
const MAX_SEGMENT_MS = 14_000;
const DEFAULT_VAD: VadParams = { thresholdDb: -38, minSpeechMs: 100, minSilenceMs: 200 };
const RECORDING_SID = /\/(RE[0-9a-f]{32})$/i;

/** A failure whose message is ours and safe to store and log as is. */

export function createRecordingTranscriber(deps: RecordingTranscriberDeps): RecordingTranscriber {
  const timeoutMs = deps.timeoutMs ?? RECORDING_TRANSCRIBE_TIMEOUT_MS;
  const maxAudioMs = deps.maxAudioMs ?? RECORDING_MAX_AUDIO_MS;
  const maxQueued = deps.maxQueued ?? 50;
  const sliceMs = deps.sliceMs ?? 10;
  const vadParams = deps.vadParams ?? DEFAULT_VAD;
  let tail: Promise<unknown> = Promise.resolve();
  let queued = 0;

  async function run(req: RecordingTranscriptionRequest, recordingSid: string | undefined): Promise<RecordingTranscript> {
    const log = deps.logger.child({ callSid: req.callSid, tenantId: req.tenantId, recordingSid: recordingSid ?? null });
    const deadline = AbortSignal.timeout(timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, deadline]) : deadline;
    const base = recordingSid === undefined ? {} : { recordingSid };
    const t0 = performance.now();
    const clock = new Slicer(sliceMs, signal, () => (deadline.aborted ? `timed out after ${timeoutMs} ms` : 'cancelled'));
    try {
      const bytes = await untilAborted(deps.fetchRecording(req.recordingUrl, signal, { channels: req.channels }), signal);
      clock.check();
      const fetchedMs = performance.now() - t0;
      const audio = await decodeWav(bytes, maxAudioMs, clock);
      log.debug(
        { bytes: bytes.length, channels: audio.channels.length, sampleRate: audio.sampleRate, format: audio.format, audioMs: audio.audioMs, truncatedAtMs: audio.truncatedAtMs },
        'recording decoded',
      );
      const language = deps.tenantLanguage?.(req.tenantId) ?? 'en-US';
      const vocabulary = deps.tenantVocabulary(req.tenantId);
      const segments: RecordingSegment[] = [];
      let unrecognised = 0;
      for (const [i, pcm] of audio.channels.entries()) {
        const channel: RecordingChannel = i === 0 ? 'caller' : 'agent';
        const heard = await transcribeChannel(pcm, channel, { stt: deps.stt, vad: deps.vad, vadParams, language, vocabulary, clock, signal });
        segments.push(...heard.segments);
        unrecognised += heard.unrecognised;
      }
      segments.sort((a, b) => a.startMs - b.startMs || (a.channel === b.channel ? 0 : a.channel === 'caller' ? -1 : 1));
      log.debug(
        { ms: Math.round(performance.now() - t0), fetchMs: Math.round(fetchedMs), audioMs: audio.audioMs, segments: segments.length, unrecognised },
        'recording transcribed',
      );
      return { ...base, segments, status: 'done', ...(audio.truncatedAtMs === undefined ? {} : { truncatedAtMs: audio.truncatedAtMs }) };
    } catch (err) {
      const error = describe(err, clock);
      log.debug({ error, ms: Math.round(performance.now() - t0) }, 'recording transcription failed');
      return { ...base, segments: [], status: 'failed', error };
    }
  }

  return {
    transcribe(req) {
      const recordingSid = req.recordingSid ?? RECORDING_SID.exec(req.recordingUrl)?.[1];
      if (queued >= maxQueued + 1) {
        return Promise.resolve({ ...(recordingSid === undefined ? {} : { recordingSid }), segments: [], status: 'failed', error: 'too many recordings waiting for transcription' });
      }
      queued++;
      const result = tail.then(() => run(req, recordingSid)).finally(() => queued--);
      tail = result.catch(() => {});
      return result;
    },
  };
}

interface ChannelContext {
  stt: SttProvider;
  vad: VadProvider;
  vadParams: VadParams;
  language: string;
  vocabulary: readonly string[];
  clock: Slicer;
  signal: AbortSignal;
}

/** One channel through VAD + STT, 20 ms at a time, one segment's final awaited at a time. */
async function transcribeChannel(pcm: Int16Array, channel: RecordingChannel, c: ChannelContext): Promise<{ segments: RecordingSegment[]; unrecognised: number }> {
  const finals: string[] = [];
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const streamAbort = new AbortController();
  const stream = c.stt.open({
    language: c.language,
    vocabulary: c.vocabulary,
    signal: AbortSignal.any([c.signal, streamAbort.signal]),
    onPartial: () => {},
    onFinal: (text) => {
      finals.push(text);
      wake?.();
    },
    onError: (e) => {
      failure = e;
      wake?.();
    },
  });
  const nextFinal = async (): Promise<string> => {
    while (finals.length === 0) {
      if (failure) throw new TranscriptionError(`speech recognition failed: ${safeMessage(failure)}`);
      c.clock.check();
      await new Promise<void>((resolve) => {
        const done = () => {
          c.signal.removeEventListener('abort', done);
          wake = null;
          resolve();
        };
        wake = done;
        c.signal.addEventListener('abort', done, { once: true });
      });
    }
    return finals.shift()!;
  };

  const vad = c.vad.create({ listening: c.vadParams, speaking: c.vadParams });
  const segments: RecordingSegment[] = [];
  let unrecognised = 0;
  let openAt = -1;
  const close = async (endMs: number) => {
    const startMs = openAt;
    openAt = -1;
    await c.clock.pause(); // the provider's own cost at a boundary gets a turn of the loop to itself
    stream.speechEnded();
    const text = (await nextFinal()).trim();
    if (text) segments.push({ channel, startMs: Math.max(0, Math.round(startMs)), endMs: Math.round(endMs), text });
    else unrecognised++;
    await c.clock.pause();
  };
  try {
    for (let at = 0; at < pcm.length; at += FRAME) {
      const frame = pcm.subarray(at, Math.min(pcm.length, at + FRAME));
      const atMs = (at * 1000) / RATE;
      stream.write(frame);
      const e = vad.process(frame, atMs);
      if (e?.type === 'speechStart') {
        openAt = e.atMs;
        await c.clock.pause();
        stream.speechStarted();
      } else if (e?.type === 'speechEnd' && openAt >= 0) {
        await close(e.atMs);
      } else if (openAt >= 0 && atMs + 20 - openAt >= MAX_SEGMENT_MS) {
        // Still speaking after 14 s: close this piece and open the next one right here.
        await close(atMs + 20);
        openAt = atMs + 20;
        await c.clock.pause();
        stream.speechStarted();
      }
      if (failure) throw new TranscriptionError(`speech recognition failed: ${safeMessage(failure)}`);
      await c.clock.tick();
    }
    if (openAt >= 0) await close((pcm.length * 1000) / RATE);
    return { segments, unrecognised };
  } finally {
    streamAbort.abort();
    stream.close();
  }
}

/** `work`, or a rejection as soon as the signal fires (a fetcher that ignores its signal cannot hold us). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
  });
}

function describe(err: unknown, clock: Slicer): string {
  if (err instanceof TranscriptionError) return err.message;
  const aborted = clock.abortedReason();
  if (aborted) return aborted;
  // VetErrors are written by us (the fetcher's carry no URL, SID or token).
  if (isVetError(err)) return err.message;
  return `transcription failed: ${safeMessage(err)}`;
}

/** A provider's message without URLs, query strings or phone numbers, and short. */
function safeMessage(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  return scrubText(raw.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S+/gi, '[url]')).slice(0, 200);
}
