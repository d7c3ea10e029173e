/**
 * `npm run bench -- --providers cloud`: the engine on its real cloud adapters (OpenAI Realtime STT,
 * OpenAI chat, ElevenLabs TTS over HTTP or WebSocket) against the fake vendor servers, which run in
 * the bench process (their CPU is the load generator's, not the engine's) with realistic latencies.
 *
 * Between the engine and each fake sits a small front server (one per vendor, as the engine has one
 * base URL per vendor) that forwards bytes unchanged and stamps, on this process's clock, the
 * moments the engine's own time per turn is measured between: chat request in, the chat chunk that
 * completes the reply's first sentence out, the Realtime final transcript out, the synthesis request
 * in, its first audio out. The transcription fake stamps the commit itself (its responder runs as
 * the commit arrives).
 *
 * Turns are followed by a reference: each simulated caller puts its index in a 20 ms frame of
 * near-silence just before every line (below the VAD's release level, so the VAD does not hear it,
 * but inside the recognizer's 300 ms pre-roll, so the transcription fake receives it); the fake's
 * transcript and the chat fake's answer carry "ref N", so the chat request and the first sentence's
 * synthesis request name their turn. The tag costs each answer ~8 characters of TTS usage.
 */
import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { takeSentences } from '../machines/call/language.js';
import { decodeUlaw } from '../src/audio/ulaw.js';
import { energyVad, energyVadParams } from '../src/providers/vad/energy.js';
import { startFakeScribe, type FakeScribe, type ScribeAudio } from '../test/fakes/elevenlabs-scribe-server.js';
import { startElevenLabsFake, type FakeElevenLabs } from '../test/fakes/elevenlabs-server.js';
import { startOpenAiChatServer, type FakeChatBody, type FakeOpenAiChat } from '../test/fakes/openai-chat-server.js';
import { startFakeOpenAiTranscription, type FakeOpenAiTranscription } from '../test/fakes/openai-transcription-server.js';

export type TtsTransport = 'http' | 'websocket';
export type SttVendor = 'openai' | 'elevenlabs';
const SCRIBE_PATH = '/v1/speech-to-text/';

/** Vendor latencies the fakes play (docs/design/conversation.md §6 budget figures; the e2e cloud test uses the same). */
export const CLOUD_LATENCY = { sttFinalMs: 300, llmFirstByteMs: 250, llmChunkDelayMs: 20, ttsFirstByteMs: 200, ttsChunkDelayMs: 20 } as const;

/** quick-vet's windows (tenant schema defaults): VAD silence that closes a segment, end-of-turn window from speech end. */
const MIN_SILENCE_MS = 200;
const END_OF_TURN_MS = 500;
const FRAME = 160;

/** What the caller "said" (the transcription fake's choice) and the chat fake's answer; no answer asks a yes/no or detail question, so every turn uses the normal end-of-turn window. */
const SCRIPT: ReadonlyArray<{ question: string; answer: (ref: string) => string }> = [
  { question: 'what are your hours', answer: (r) => `We are open Monday to Friday from eight in the morning to six in the evening, ${r}. Is there anything else I can help you with?` },
  { question: 'where are you located', answer: (r) => `We are at 1 Test Street, right next to the park, ${r}. There is free parking outside the clinic.` },
  { question: 'do you see cats', answer: (r) => `Yes, our vets see cats and dogs every day of the week, ${r}.` },
  { question: 'how much is a checkup', answer: (r) => `A standard checkup costs about sixty dollars, ${r}. Vaccinations are priced separately.` },
];
const REF = /\bref (\d+)\b/;

/** Provider-side moments of one turn, performance.now() of this process. */
export interface ProviderTurn {
  ref: number;
  call: number | null;
  commitRx: number;
  finalTx: number | null;
  chatRx: number | null;
  sentenceTx: number | null;
  ttsRx: number | null;
  ttsFirstTx: number | null;
}

// ---------------------------------------------------------------------------------------------
// The caller's tag.

const MAGIC = [0xf9, 0x79, 0xf7, 0x77];

/** 160 bytes of line-level quiet (±8–40 PCM) with the caller index in it: magic, then 4 digits as 0xf1 + d. */
export function callerTag(index: number): Uint8Array {
  const out = new Uint8Array(FRAME).map((_, i) => (i % 2 ? 0xfe : 0x7e));
  const digits = String(index % 10_000).padStart(4, '0').split('').map((d) => 0xf1 + Number(d));
  out.set([...MAGIC, ...digits], FRAME - 24);
  return out;
}

/** The caller index in a committed utterance (μ-law as the recognizer received it), or null. */
export function readTag(ulaw: Uint8Array): number | null {
  for (let i = 0; i + 8 <= ulaw.length; i++) {
    if (ulaw[i] !== MAGIC[0] || ulaw[i + 1] !== MAGIC[1] || ulaw[i + 2] !== MAGIC[2] || ulaw[i + 3] !== MAGIC[3]) continue;
    const d = [4, 5, 6, 7].map((k) => ulaw[i + k]! - 0xf1);
    if (d.every((x) => x >= 0 && x <= 9)) return d.reduce((n, x) => n * 10 + x, 0);
  }
  return null;
}

/**
 * Frames between the caller's last speech frame and the one on which the engine's VAD (quick-vet's
 * listening parameters) closes the segment: the line replayed through the same VAD, after the tag
 * frame and followed by line noise, as FakeTwilio sends it. Usually MIN_SILENCE_MS / 20 = 10; fewer
 * when the line's last frames are already below the release level.
 */
export function framesToSpeechEnd(line: Uint8Array): number {
  const params = energyVadParams({ listeningThresholdDb: -38, speakingThresholdDb: -30, minSpeechMs: 100, minSilenceMs: MIN_SILENCE_MS });
  const vad = energyVad.create(params);
  const noise = new Uint8Array(FRAME * 20).map((_, i) => (i % 3 ? 0xe8 : 0x68)); // ≈ -63 dBFS, like FakeTwilio's
  const lineFrames = Math.ceil(line.length / FRAME);
  const audio = new Uint8Array(FRAME + lineFrames * FRAME + noise.length);
  audio.set(callerTag(0), 0);
  audio.set(noise.subarray(0, lineFrames * FRAME), FRAME);
  audio.set(line, FRAME);
  audio.set(noise, FRAME + lineFrames * FRAME);
  const last = lineFrames; // frame index of the last line frame (the tag is frame 0)
  let decision = last + MIN_SILENCE_MS / 20;
  for (let f = 0; f * FRAME < audio.length; f++) {
    if (vad.process(decodeUlaw(audio.subarray(f * FRAME, (f + 1) * FRAME)), f * 20)?.type === 'speechEnd') decision = f; // the last one: a pause inside the line closes an earlier segment
  }
  return decision - last;
}

// ---------------------------------------------------------------------------------------------
// A front server that forwards HTTP and WebSocket traffic unchanged and reports what passes.

/** Text messages of one direction of a WebSocket (client frames are masked); no extensions. */
class WsTextReader {
  private buf: Buffer = Buffer.alloc(0);
  private parts: Buffer[] = [];
  private headers: boolean;

  constructor(private readonly onText: (text: string) => void, expectHttpHeaders: boolean) {
    this.headers = expectHttpHeaders;
  }

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    if (this.headers) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      this.buf = this.buf.subarray(end + 4);
      this.headers = false;
    }
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      let len = b[1]! & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      const masked = (b[1]! & 0x80) !== 0;
      const maskAt = off;
      if (masked) off += 4;
      if (b.length < off + len) return;
      let payload = b.subarray(off, off + len);
      if (masked) {
        payload = Buffer.from(payload);
        for (let i = 0; i < payload.length; i++) payload[i]! ^= b[maskAt + (i & 3)]!;
      }
      this.buf = b.subarray(off + len);
      const opcode = b[0]! & 0x0f;
      if (opcode === 1 || opcode === 0) {
        this.parts.push(payload);
        if (b[0]! & 0x80) {
          this.onText(Buffer.concat(this.parts).toString('utf8'));
          this.parts = [];
        }
      }
    }
  }
}

interface Exchange {
  path: string;
  /** performance.now() when the request (HTTP: its whole body; WebSocket: the upgrade) arrived. */
  at: number;
}

interface TapHooks {
  /** An HTTP request's body arrived; the returned function sees each response chunk as it is forwarded. */
  http?: (x: Exchange, body: string) => ((chunk: Buffer, at: number) => void) | null;
  /** A WebSocket was upgraded; the returned handlers see text messages each way as they pass. */
  ws?: (x: Exchange) => { fromClient?: (text: string, at: number) => void; fromServer?: (text: string, at: number) => void } | null;
}

async function startTap(target: (path: string) => number, hooks: TapHooks): Promise<{ url: string; server: Server }> {
  const server = createServer((req: IncomingMessage, res) => {
    const path = req.url ?? '/';
    const body: Buffer[] = [];
    let onChunk: ((chunk: Buffer, at: number) => void) | null = null;
    const upstream = request({ host: '127.0.0.1', port: target(path), path, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (chunk: Buffer) => {
        res.write(chunk);
        onChunk?.(chunk, performance.now());
      });
      answer.on('end', () => res.end());
      answer.on('aborted', () => res.destroy());
      answer.on('error', () => res.destroy());
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.on('data', (chunk: Buffer) => {
      body.push(chunk);
      upstream.write(chunk);
    });
    req.on('end', () => {
      onChunk = hooks.http?.({ path, at: performance.now() }, Buffer.concat(body).toString('utf8')) ?? null;
      upstream.end();
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = req.url ?? '/';
    const handlers = hooks.ws?.({ path, at: performance.now() }) ?? null;
    const fromClient = handlers?.fromClient ? new WsTextReader((t) => handlers.fromClient!(t, performance.now()), false) : null;
    const fromServer = handlers?.fromServer ? new WsTextReader((t) => handlers.fromServer!(t, performance.now()), true) : null;
    const upstream = connect(target(path), '127.0.0.1', () => {
      const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : (v ?? '')}`);
      upstream.write(`${req.method ?? 'GET'} ${path} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      if (head.length) fromClient?.push(head);
      socket.on('data', (chunk: Buffer) => {
        upstream.write(chunk);
        fromClient?.push(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        socket.write(chunk);
        fromServer?.push(chunk);
      });
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const portOf = (url: string) => Number(new URL(url).port);

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

// ---------------------------------------------------------------------------------------------
// The fakes, wired.

export interface CloudFakes {
  /** Environment for the engine child: keys, base URLs, providers, transport. */
  readonly env: Record<string, string>;
  readonly turns: ReadonlyMap<number, ProviderTurn>;
  readonly counts: { commits: number; untagged: number; chatRequests: number; ttsRequests: number };
  close(): Promise<void>;
}

const lastUserText = (body: FakeChatBody) => {
  const last = [...body.messages].reverse().find((m) => m.role === 'user');
  return typeof last?.content === 'string' ? last.content : '';
};

/** The last user message of a chat request body ('' if unreadable): the history names earlier turns too. */
function lastUserOf(json: string): string {
  try {
    return lastUserText(JSON.parse(json) as FakeChatBody);
  } catch {
    return '';
  }
}

/** The `text` field of an ElevenLabs request body or stream-input message ('' if none). */
function textOf(json: string): string {
  try {
    const text = (JSON.parse(json) as { text?: unknown }).text;
    return typeof text === 'string' ? text : '';
  } catch {
    return '';
  }
}

/** Content deltas in a piece of an SSE stream (events may be split across chunks: `rest` carries the tail). */
function sseDeltas(state: { rest: string }, chunk: Buffer): { text: string; done: boolean } {
  const lines = (state.rest + chunk.toString('utf8')).split('\n');
  state.rest = lines.pop() ?? '';
  let text = '';
  let done = false;
  for (const line of lines) {
    if (!line.startsWith('data: ')) continue;
    if (line === 'data: [DONE]') {
      done = true;
      continue;
    }
    try {
      const ev = JSON.parse(line.slice(6)) as { choices?: Array<{ delta?: { content?: string | null } }> };
      text += ev.choices?.[0]?.delta?.content ?? '';
    } catch {
      // not an event this reader follows
    }
  }
  return { text, done };
}

/**
 * `stt`: which recognizer the engine uses. Both fakes give the final 300 ms after the commit; the
 * OpenAI one streams its deltas only after it, Scribe sends a partial per word while the caller
 * talks (a word per 300 ms of speech, 150 ms later), as the vendors do. No jitter in the bench, so
 * the two differ only by protocol. Scribe's turn is stamped by its commit (the client's chunk with
 * `commit: true`) and its `committed_transcript`.
 */
export async function startCloudFakes(transport: TtsTransport, stt: SttVendor = 'openai'): Promise<CloudFakes> {
  const L = CLOUD_LATENCY;
  const openaiKey = `sk-bench-${randomBytes(12).toString('hex')}`;
  const elevenKey = `xi-bench-${randomBytes(12).toString('hex')}`;
  const turns = new Map<number, ProviderTurn>();
  const counts = { commits: 0, untagged: 0, chatRequests: 0, ttsRequests: 0 };
  const perCall = new Map<number, number>();
  const turnOf = (text: string) => {
    const m = REF.exec(text);
    return m ? (turns.get(Number(m[1])) ?? null) : null;
  };

  const answer = ({ ulaw }: ScribeAudio) => {
    const at = performance.now();
    const call = readTag(ulaw);
    const ref = ++counts.commits;
    if (call === null) counts.untagged++;
    const k = call === null ? ref : (perCall.get(call) ?? 0);
    if (call !== null) perCall.set(call, k + 1);
    turns.set(ref, { ref, call, commitRx: at, finalTx: null, chatRx: null, sentenceTx: null, ttsRx: null, ttsFirstTx: null });
    // The turn's tag goes first: the end-of-turn rule reads how the words end, and a trailing
    // number ("…hours, ref 12") reads as a caller still giving digits (the 1.8 s window).
    return `ref ${ref}, ${SCRIPT[((call ?? 0) + k) % SCRIPT.length]!.question}`;
  };
  const transcription: FakeOpenAiTranscription = await startFakeOpenAiTranscription({ apiKey: openaiKey, finalMs: L.sttFinalMs, responder: answer });
  const scribe: FakeScribe | null = stt === 'elevenlabs' ? await startFakeScribe({ apiKey: elevenKey, finalMs: L.sttFinalMs, jitterMs: 0, responder: answer }) : null;
  const chat: FakeOpenAiChat = await startOpenAiChatServer({
    apiKey: openaiKey,
    responder: (body) => {
      const said = lastUserText(body);
      const ref = REF.exec(said)?.[0];
      const entry = SCRIPT.find((s) => said.endsWith(s.question));
      return { text: entry && ref ? entry.answer(ref) : 'Sorry, could you say that again?' };
    },
  });
  chat.faults.setDefault({ firstByteMs: L.llmFirstByteMs, chunkDelayMs: L.llmChunkDelayMs });
  const eleven: FakeElevenLabs = await startElevenLabsFake({ apiKey: elevenKey });
  eleven.faults.setDefault({ firstByteMs: L.ttsFirstByteMs, chunkDelayMs: L.ttsChunkDelayMs });

  const openaiFront = await startTap((path) => (path.startsWith('/v1/chat/') ? portOf(chat.url) : portOf(transcription.httpUrl)), {
    http: (x, body) => {
      if (!x.path.startsWith('/v1/chat/')) return null;
      counts.chatRequests++;
      const t = turnOf(lastUserOf(body));
      if (!t || t.chatRx !== null) return null;
      t.chatRx = x.at;
      const sse = { rest: '' };
      let text = '';
      return (chunk, at) => {
        if (t.sentenceTx !== null) return;
        const d = sseDeltas(sse, chunk);
        text += d.text;
        // The engine hands a sentence to the synthesizer once it is followed by a space, or at the end of the stream.
        if (takeSentences(text).sentences.length > 0 || d.done) t.sentenceTx = at;
      };
    },
    ws: () => ({
      fromServer: (text, at) => {
        if (!text.includes('input_audio_transcription.completed')) return;
        const turn = turnOf(text);
        if (turn && turn.finalTx === null) turn.finalTx = at;
      },
    }),
  });

  /** The first synthesis request that names a turn is its first sentence's. */
  const claim = (text: string, at: number): ProviderTurn | null => {
    const turn = turnOf(text);
    if (!turn || turn.ttsRx !== null) return null;
    turn.ttsRx = at;
    return turn;
  };
  const firstAudio = (turn: ProviderTurn | null, at: number) => {
    if (turn && turn.ttsFirstTx === null) turn.ttsFirstTx = at;
  };
  const elevenFront = await startTap((path) => (scribe && path.startsWith(SCRIBE_PATH) ? portOf(scribe.url) : portOf(eleven.url)), {
    http: (x, body) => {
      counts.ttsRequests++;
      const turn = claim(textOf(body), x.at);
      return turn ? (_chunk, at) => firstAudio(turn, at) : null;
    },
    ws: (x) => {
      if (x.path.startsWith(SCRIBE_PATH)) {
        const commits: number[] = [];
        return {
          fromClient: (text, at) => {
            if (text.includes('"commit":true')) commits.push(at);
          },
          fromServer: (text, at) => {
            if (!text.includes('"committed_transcript"')) return;
            const committedAt = commits.shift();
            const turn = turnOf(text);
            if (!turn || turn.finalTx !== null) return;
            turn.finalTx = at;
            if (committedAt !== undefined) turn.commitRx = committedAt;
          },
        };
      }
      counts.ttsRequests++;
      let sent = '';
      let turn: ProviderTurn | null = null;
      return {
        fromClient: (text) => {
          if (turn) return;
          sent += textOf(text);
          turn = claim(sent, x.at); // the span starts at the upgrade: the handshake is the vendor's round trip
        },
        fromServer: (text, at) => {
          if (text.includes('"audio"')) firstAudio(turn, at);
        },
      };
    },
  });

  return {
    env: {
      STT_PROVIDER: stt,
      AGENT_PROVIDER: 'openai',
      TTS_PROVIDER: 'elevenlabs',
      OPENAI_API_KEY: openaiKey,
      OPENAI_BASE_URL: `${openaiFront.url}/v1`,
      ELEVENLABS_API_KEY: elevenKey,
      ELEVENLABS_BASE_URL: elevenFront.url,
      ELEVENLABS_TRANSPORT: transport,
    },
    turns,
    counts,
    async close() {
      await Promise.all([closeServer(openaiFront.server), closeServer(elevenFront.server)]);
      await Promise.all([transcription.close(), chat.close(), eleven.close(), scribe?.close()]);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Engine time per turn.

/** One speech turn as the caller saw it, on this process's clock. */
export interface CallerTurn {
  call: number;
  /** Send time of the caller's last speech frame, and of the frame on which the VAD closes the segment. */
  endAt: number;
  decisionAt: number;
  /** First reply `media` received. */
  firstAudioAt: number;
}

export interface TurnBreakdown {
  callerLatencyMs: number;
  engineAddedMs: number;
  segments: { vadToCommit: number; finalToAgentRequest: number; sentenceToTtsRequest: number; ttsAudioToCaller: number };
  provider: { stt: number; agentFirstSentence: number; ttsFirstAudio: number };
  windows: { vadSilence: number; endOfTurnRemainder: number };
}

/**
 * engine added = (STT commit in − VAD decision frame sent)
 *              + (chat request in − max(final out, end-of-turn window end))
 *              + (first-sentence TTS request in − chunk completing that sentence out)
 *              + (first reply media at the caller − first TTS audio out)
 * The rest of the caller's latency is the VAD's silence window, the STT, LLM and TTS spans and the
 * end-of-turn window's remainder; loopback hops and the front servers count against the engine.
 */
export function breakdown(c: CallerTurn, p: ProviderTurn): TurnBreakdown | null {
  const { finalTx, chatRx, sentenceTx, ttsRx, ttsFirstTx } = p;
  if (finalTx === null || chatRx === null || sentenceTx === null || ttsRx === null || ttsFirstTx === null) return null;
  const windowEnd = c.decisionAt + END_OF_TURN_MS - MIN_SILENCE_MS;
  const segments = {
    vadToCommit: p.commitRx - c.decisionAt,
    finalToAgentRequest: chatRx - Math.max(finalTx, windowEnd),
    sentenceToTtsRequest: ttsRx - sentenceTx,
    ttsAudioToCaller: c.firstAudioAt - ttsFirstTx,
  };
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    callerLatencyMs: r(c.firstAudioAt - c.endAt),
    engineAddedMs: r(segments.vadToCommit + segments.finalToAgentRequest + segments.sentenceToTtsRequest + segments.ttsAudioToCaller),
    segments: { vadToCommit: r(segments.vadToCommit), finalToAgentRequest: r(segments.finalToAgentRequest), sentenceToTtsRequest: r(segments.sentenceToTtsRequest), ttsAudioToCaller: r(segments.ttsAudioToCaller) },
    provider: { stt: r(finalTx - p.commitRx), agentFirstSentence: r(sentenceTx - chatRx), ttsFirstAudio: r(ttsFirstTx - ttsRx) },
    windows: { vadSilence: r(c.decisionAt - c.endAt), endOfTurnRemainder: r(Math.max(0, windowEnd - finalTx)) },
  };
}

/** The provider turn of a caller turn: same caller, commit within a frame before to 300 ms after the VAD's decision. */
export function matchTurns(callers: readonly CallerTurn[], providers: Iterable<ProviderTurn>): Array<{ caller: CallerTurn; provider: ProviderTurn }> {
  const byCall = new Map<number, ProviderTurn[]>();
  for (const p of providers) if (p.call !== null) byCall.set(p.call, [...(byCall.get(p.call) ?? []), p]);
  const out: Array<{ caller: CallerTurn; provider: ProviderTurn }> = [];
  for (const c of callers) {
    const candidates = (byCall.get(c.call) ?? []).filter((p) => p.commitRx >= c.decisionAt - 20 && p.commitRx <= c.decisionAt + 300);
    const best = candidates.sort((a, b) => Math.abs(a.commitRx - c.decisionAt) - Math.abs(b.commitRx - c.decisionAt))[0];
    if (best) out.push({ caller: c, provider: best });
  }
  return out;
}
