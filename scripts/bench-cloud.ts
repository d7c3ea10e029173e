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
 * Turns are followed without touching what the caller says: each simulated caller puts its index
 * in a 20 ms frame of near-silence just before every line (below the VAD's release level, so the
 * VAD does not hear it, but inside the recognizer's 300 ms pre-roll, so the transcription fake
 * receives it) and the fake picks the turn's words from a pool, never words another recent turn was
 * given; a chat request names its turn by the caller's words, a synthesis request by the answer
 * it is part of (each question has its own answer).
 */
import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { takeSpeech } from '../machines/call/language.js';
import { decodeUlaw } from '../src/audio/ulaw.js';
import { VadOverrides } from '../src/config/tenant.schema.js';
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

/** quick-vet's VAD (the clinic schema's defaults: 200 ms of silence closes a segment, 100 ms reports a pause); the end-of-turn window is the engine's choice per turn. */
const VAD = VadOverrides.parse({});
const FRAME = 160;

/**
 * What the caller "said" (the transcription fake's choice) and the chat fake's answer. Every
 * question is four words and reads as finished (`classifyTurnEnd`: complete), like the lines the
 * callers speak (0.84–0.96 s of speech: about a word per 200 ms, the Scribe fake's `wordMs` here);
 * no answer asks a yes/no or detail question. The transcript carries no tag: a turn is known by its
 * words, which no other turn uses while it may still be asked about (`HOLD_MS`), and a synthesis
 * request by the answer it is part of (every piece the engine synthesizes belongs to one answer:
 * test/bench-cloud.test.ts). 12 fixed questions and 10 × 12 about one kind of pet (each piece of
 * those answers names the pet): enough for every turn of 100 callers to stay unique.
 */
const FIXED: ReadonlyArray<{ question: string; answer: string }> = [
  { question: 'what are your hours', answer: 'We are open Monday to Friday, from eight in the morning to six in the evening. Is there anything else I can help you with?' },
  { question: 'where are you located', answer: 'We are at 1 Test Street, right next to the park. There is free parking outside the clinic.' },
  { question: 'how much are checkups', answer: 'A standard checkup costs about sixty dollars, and vaccinations are priced separately.' },
  { question: 'are you open saturdays', answer: 'On Saturdays we are open, from nine in the morning until one in the afternoon.' },
  { question: 'can i park outside', answer: 'Parking is free, right by the front door of the clinic.' },
  { question: 'do you do vaccinations', answer: 'We vaccinate cats and dogs, on any weekday without a long wait.' },
  { question: 'is there a pharmacy', answer: 'Our pharmacy is open, whenever the clinic is open during the week.' },
  { question: 'do you take cards', answer: 'We take all major cards, as well as cash and bank transfers.' },
  { question: 'who are your vets', answer: 'Our three vets are Doctor Lee, Doctor Shah and Doctor Moreno.' },
  { question: 'do you treat birds', answer: 'We treat most pet birds, though not large parrots or poultry.' },
  { question: 'do you sell food', answer: 'We sell prescription diets, and the shop stocks most everyday brands.' },
  { question: 'do you board pets', answer: 'We do not board pets, but we can recommend a kennel nearby.' },
];
const PETS = ['cats', 'dogs', 'rabbits', 'ferrets', 'hamsters', 'tortoises', 'snakes', 'lizards', 'budgies', 'chinchillas', 'hedgehogs', 'gerbils'];
const ABOUT_PETS: ReadonlyArray<(p: string) => { question: string; answer: string }> = [
  (p) => ({ question: `do you see ${p}`, answer: `Yes, our vets see ${p}, and ${p} are welcome every day of the week.` }),
  (p) => ({ question: `do you treat ${p}`, answer: `We do treat ${p} here, and one of our vets has trained with ${p}.` }),
  (p) => ({ question: `can you vaccinate ${p}`, answer: `We can vaccinate ${p}, and boosters for ${p} need no long wait.` }),
  (p) => ({ question: `do you board ${p}`, answer: `We do not board ${p}, but a kennel nearby takes ${p} for us.` }),
  (p) => ({ question: `do you groom ${p}`, answer: `Grooming for ${p} is weekly, and ${p} go home the same afternoon.` }),
  (p) => ({ question: `can you neuter ${p}`, answer: `We neuter ${p} most weekdays, and ${p} stay with us for the day.` }),
  (p) => ({ question: `do you microchip ${p}`, answer: `Microchips for ${p} take minutes, and we register ${p} for you.` }),
  (p) => ({ question: `who looks after ${p}`, answer: `Doctor Shah looks after ${p}, and she has kept ${p} herself for years.` }),
  (p) => ({ question: `can i bring ${p}`, answer: `You can bring ${p} in, and please carry ${p} in a closed box.` }),
  (p) => ({ question: `are ${p} seen today`, answer: `We see ${p} today until six, and ${p} need no appointment before noon.` }),
];
export const SCRIPT: ReadonlyArray<{ question: string; answer: string }> = [...FIXED, ...PETS.flatMap((p) => ABOUT_PETS.map((make) => make(p)))];
/** A question is not given to another turn for this long after its turn began (first speech, or the commit). */
const HOLD_MS = 3_000;
/** Speech per word the Scribe fake reveals: the callers' lines say four words in 0.84–0.96 s. */
export const BENCH_WORD_MS = 200;
const said = (text: string) => text.toLowerCase().replace(/[^a-z0-9' ]+/g, ' ').replace(/\s+/g, ' ').trim();

/** Provider-side moments of one turn, performance.now() of this process. */
export interface ProviderTurn {
  ref: number;
  call: number | null;
  question: string;
  /** Another turn held the same words when this one began (the pool ran out): not broken down. */
  ambiguous: boolean;
  commitRx: number;
  /** Scribe: the first partial carrying all the turn's words went out (a reply cannot be prepared on them before). */
  wordsTx: number | null;
  finalTx: number | null;
  /** Chat requests that named this turn (more than one: a prepared reply was thrown away and asked again). */
  chatRequests: number;
  /** The first chat request's arrival; the stamps below are of the last request (the reply kept). */
  firstChatRx: number | null;
  chatRx: number | null;
  /** The chat chunk that completed the reply's first clause (what the engine synthesizes first). */
  clauseTx: number | null;
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
 * Frames between the caller's last speech frame and the ones on which the engine's VAD (quick-vet's
 * listening parameters) reports the final pause (`pause`) and closes the segment (`close`): the
 * line replayed through the same VAD, after the tag frame and followed by line noise, as FakeTwilio
 * sends it. Usually pauseMs / 20 = 5 and minSilenceMs / 20 = 10; fewer when the line's last
 * frames are already below the release level.
 */
export function vadFrames(line: Uint8Array): { pause: number; close: number } {
  const params = energyVadParams(VAD);
  const vad = energyVad.create(params);
  const noise = new Uint8Array(FRAME * 20).map((_, i) => (i % 3 ? 0xe8 : 0x68)); // ≈ -63 dBFS, like FakeTwilio's
  const lineFrames = Math.ceil(line.length / FRAME);
  const audio = new Uint8Array(FRAME + lineFrames * FRAME + noise.length);
  audio.set(callerTag(0), 0);
  audio.set(noise.subarray(0, lineFrames * FRAME), FRAME);
  audio.set(line, FRAME);
  audio.set(noise, FRAME + lineFrames * FRAME);
  const last = lineFrames; // frame index of the last line frame (the tag is frame 0)
  let close = last + VAD.minSilenceMs / 20;
  let pause = last + VAD.pauseMs / 20;
  let open: number | null = null;
  for (let f = 0; f * FRAME < audio.length; f++) {
    // The last ones: a pause inside the line reports (or closes) earlier.
    const e = vad.process(decodeUlaw(audio.subarray(f * FRAME, (f + 1) * FRAME)), f * 20);
    if (e?.type === 'pause') open = f;
    else if (e?.type === 'resume') open = null;
    else if (e?.type === 'speechEnd') [close, pause, open] = [f, open ?? f, null];
  }
  return { pause: pause - last, close: close - last };
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
  readonly counts: { commits: number; untagged: number; ambiguous: number; chatRequests: number; ttsRequests: number };
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

/** A string field of a JSON message ('' if none or unreadable). */
function fieldOf(json: string, field: string): string {
  try {
    const value = (JSON.parse(json) as Record<string, unknown>)[field];
    return typeof value === 'string' ? value : '';
  } catch {
    return '';
  }
}

/** The `text` field of an ElevenLabs request body or stream-input message ('' if none). */
const textOf = (json: string) => fieldOf(json, 'text');

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
  const counts = { commits: 0, untagged: 0, ambiguous: 0, chatRequests: 0, ttsRequests: 0 };
  const perCall = new Map<number, number>();
  /** The latest turn given these words: chat requests (their last user message is the caller's words). */
  const byWords = new Map<string, ProviderTurn>();
  const turnSaying = (text: string) => byWords.get(said(text)) ?? null;
  /** The latest turn whose answer this synthesized text is part of. */
  const turnOf = (text: string) => {
    const t = said(text);
    const entry = t ? SCRIPT.filter((s) => said(s.answer).includes(t)) : [];
    return entry.length === 1 ? (byWords.get(entry[0]!.question) ?? null) : null;
  };

  const answer = ({ ulaw }: ScribeAudio) => {
    const at = performance.now();
    const call = readTag(ulaw);
    const ref = ++counts.commits;
    if (call === null) counts.untagged++;
    const k = call === null ? ref : (perCall.get(call) ?? 0);
    if (call !== null) perCall.set(call, k + 1);
    // The caller's rotation, skipping questions another turn may still be asked about.
    const start = (call ?? 0) + k;
    const held = (q: string) => {
      const t = byWords.get(q);
      return t !== undefined && at - t.commitRx < HOLD_MS;
    };
    let pick = SCRIPT[start % SCRIPT.length]!.question;
    for (let i = 0; i < SCRIPT.length; i++) {
      const q = SCRIPT[(start + i) % SCRIPT.length]!.question;
      if (!held(q)) {
        pick = q;
        break;
      }
    }
    const ambiguous = held(pick);
    if (ambiguous) {
      counts.ambiguous++;
      byWords.get(pick)!.ambiguous = true;
    }
    const turn: ProviderTurn = { ref, call, question: pick, ambiguous, commitRx: at, wordsTx: null, finalTx: null, chatRequests: 0, firstChatRx: null, chatRx: null, clauseTx: null, ttsRx: null, ttsFirstTx: null };
    turns.set(ref, turn);
    byWords.set(pick, turn);
    return pick;
  };
  const transcription: FakeOpenAiTranscription = await startFakeOpenAiTranscription({ apiKey: openaiKey, finalMs: L.sttFinalMs, responder: answer });
  const scribe: FakeScribe | null = stt === 'elevenlabs' ? await startFakeScribe({ apiKey: elevenKey, finalMs: L.sttFinalMs, jitterMs: 0, wordMs: BENCH_WORD_MS, responder: answer }) : null;
  const chat: FakeOpenAiChat = await startOpenAiChatServer({
    apiKey: openaiKey,
    responder: (body) => {
      const turn = turnSaying(lastUserText(body));
      const entry = turn ? SCRIPT.find((s) => s.question === turn.question) : undefined;
      return { text: entry?.answer ?? 'Sorry, could you say that again?' };
    },
  });
  chat.faults.setDefault({ firstByteMs: L.llmFirstByteMs, chunkDelayMs: L.llmChunkDelayMs });
  const eleven: FakeElevenLabs = await startElevenLabsFake({ apiKey: elevenKey });
  eleven.faults.setDefault({ firstByteMs: L.ttsFirstByteMs, chunkDelayMs: L.ttsChunkDelayMs });

  const openaiFront = await startTap((path) => (path.startsWith('/v1/chat/') ? portOf(chat.url) : portOf(transcription.httpUrl)), {
    http: (x, body) => {
      if (!x.path.startsWith('/v1/chat/')) return null;
      counts.chatRequests++;
      const t = turnSaying(lastUserOf(body));
      if (!t) return null;
      // A later request for the same words is the reply asked again (the prepared one was thrown
      // away): the stamps follow the last request, the reply that is kept.
      t.chatRequests++;
      t.firstChatRx ??= x.at;
      Object.assign(t, { chatRx: x.at, clauseTx: null, ttsRx: null, ttsFirstTx: null });
      const mine = t.chatRequests;
      const sse = { rest: '' };
      let text = '';
      return (chunk, at) => {
        if (t.clauseTx !== null || t.chatRequests !== mine) return;
        const d = sseDeltas(sse, chunk);
        text += d.text;
        // The engine hands its first item (first clause, or whole sentence) to the synthesizer as takeSpeech yields it, or at the end of the stream.
        if (takeSpeech(text, true).items.length > 0 || d.done) t.clauseTx = at;
      };
    },
    ws: () => ({
      fromServer: (text, at) => {
        if (!text.includes('input_audio_transcription.completed')) return;
        const turn = turnSaying(fieldOf(text, 'transcript'));
        if (turn && turn.finalTx === null) turn.finalTx = at;
      },
    }),
  });

  /** The first synthesis request that names a turn (since its last chat request) is its first clause's. */
  const claim = (text: string, at: number): { turn: ProviderTurn; request: number } | null => {
    const turn = turnOf(text);
    if (!turn || turn.ttsRx !== null) return null;
    turn.ttsRx = at;
    return { turn, request: turn.chatRequests };
  };
  const firstAudio = (claimed: { turn: ProviderTurn; request: number } | null, at: number) => {
    if (claimed && claimed.turn.chatRequests === claimed.request && claimed.turn.ttsFirstTx === null) claimed.turn.ttsFirstTx = at;
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
            if (text.includes('"partial_transcript"')) {
              const turn = turnSaying(fieldOf(text, 'text'));
              if (turn && turn.wordsTx === null) turn.wordsTx = at;
              return;
            }
            if (!text.includes('"committed_transcript"')) return;
            const committedAt = commits.shift();
            const turn = turnSaying(fieldOf(text, 'text'));
            if (!turn || turn.finalTx !== null) return;
            turn.finalTx = at;
            if (committedAt !== undefined) turn.commitRx = committedAt;
          },
        };
      }
      counts.ttsRequests++;
      let sent = '';
      let turn: { turn: ProviderTurn; request: number } | null = null;
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
  /** Send time of the caller's last speech frame, of the frame on which the VAD reports the pause, and of the one on which it closes the segment. */
  endAt: number;
  pauseAt: number;
  decisionAt: number;
  /** First reply `media` received. */
  firstAudioAt: number;
  /** The end-of-turn window the engine chose for the turn (its `turn latency` line: `endOfTurn.windowMs`), from the end of speech; null if unmatched. */
  windowMs: number | null;
}

export interface TurnBreakdown {
  ref: number;
  call: number;
  callerLatencyMs: number;
  engineAddedMs: number;
  /** The reply kept was asked for before the final transcript came (prepared during the window). */
  prepared: boolean;
  /** Chat requests for the turn, and those thrown away (all but the last). */
  requests: number;
  discarded: number;
  /** What the first audio waited for last, had the engine taken no time: the reply's audio, the window or the final. */
  boundBy: 'reply' | 'window' | 'final';
  segments: { vadToCommit: number; toAgentRequest: number; clauseToTtsRequest: number; release: number };
  provider: { stt: number; agentFirstClause: number; ttsFirstAudio: number };
  windows: { vadSilence: number; endOfTurn: number };
}

/**
 * The turn's latency minus every wait on a vendor or a chosen window: the latency the engine would
 * have with no time of its own, on the same vendor spans and windows, subtracted from the caller's.
 *
 *   D (VAD decision)  = the frame on which the VAD closes the segment (endAt + its silence window)
 *   final             = D + (final out − commit in)                     STT span
 *   window end        = endAt + windowMs                                the chosen end-of-turn window
 *   P (VAD pause)     = the frame on which the VAD reports the final silence as a pause (endAt + 100)
 *   reply start       = prepared (the kept reply was asked before the final): max(P, words), where words
 *                       is when the recognizer's partial first carried all the turn's words (Scribe; the
 *                       engine cannot prepare on words it has not been sent), or D when those words came
 *                       before the speech ended (the engine's rule: such words may be one short, so they
 *                       wait for the close); else max(final, window end)
 *   reply audio       = reply start + (first clause out − chat in) + (first TTS audio out − TTS request in)
 *   ideal first audio = max(reply audio, window end, final)             the turn is committed on both
 *   engine added      = first reply media at the caller − ideal first audio
 *
 * Loopback hops, the front servers and the load generator's own lateness count against the engine.
 */
export function breakdown(c: CallerTurn, p: ProviderTurn): TurnBreakdown | null {
  const { finalTx, chatRx, clauseTx, ttsRx, ttsFirstTx } = p;
  if (p.ambiguous || c.windowMs === null || finalTx === null || chatRx === null || clauseTx === null || ttsRx === null || ttsFirstTx === null) return null;
  const D = c.decisionAt;
  const span = { stt: finalTx - p.commitRx, llm: clauseTx - chatRx, tts: ttsFirstTx - ttsRx };
  const prepared = chatRx < finalTx;
  const windowEnd = c.endAt + c.windowMs;
  const finalIdeal = D + span.stt;
  const preparedAt = p.wordsTx !== null && p.wordsTx < c.endAt ? D : Math.max(c.pauseAt, p.wordsTx ?? c.pauseAt);
  const startIdeal = prepared ? preparedAt : Math.max(finalIdeal, windowEnd);
  const audioIdeal = startIdeal + span.llm + span.tts;
  const ideal = Math.max(audioIdeal, windowEnd, finalIdeal);
  const boundBy = ideal === audioIdeal ? 'reply' : ideal === windowEnd ? 'window' : 'final';
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    ref: p.ref,
    call: c.call,
    callerLatencyMs: r(c.firstAudioAt - c.endAt),
    engineAddedMs: r(c.firstAudioAt - ideal),
    prepared,
    requests: p.chatRequests,
    discarded: Math.max(0, p.chatRequests - 1),
    boundBy,
    segments: {
      vadToCommit: r(p.commitRx - D),
      toAgentRequest: r(chatRx - (prepared ? preparedAt : Math.max(finalTx, windowEnd))),
      clauseToTtsRequest: r(ttsRx - clauseTx),
      release: r(c.firstAudioAt - Math.max(ttsFirstTx, windowEnd, finalTx)),
    },
    provider: { stt: r(span.stt), agentFirstClause: r(span.llm), ttsFirstAudio: r(span.tts) },
    windows: { vadSilence: r(D - c.endAt), endOfTurn: c.windowMs },
  };
}

/** The provider turn of a caller turn: same caller, commit within a frame before to 300 ms after the VAD's decision. */
export function matchTurns<C extends CallerTurn>(callers: readonly C[], providers: Iterable<ProviderTurn>): Array<{ caller: C; provider: ProviderTurn }> {
  const byCall = new Map<number, ProviderTurn[]>();
  for (const p of providers) if (p.call !== null) byCall.set(p.call, [...(byCall.get(p.call) ?? []), p]);
  const out: Array<{ caller: C; provider: ProviderTurn }> = [];
  for (const c of callers) {
    const candidates = (byCall.get(c.call) ?? []).filter((p) => p.commitRx >= c.decisionAt - 20 && p.commitRx <= c.decisionAt + 300);
    const best = candidates.sort((a, b) => Math.abs(a.commitRx - c.decisionAt) - Math.abs(b.commitRx - c.decisionAt))[0];
    if (best) out.push({ caller: c, provider: best });
  }
  return out;
}
