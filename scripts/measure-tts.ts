/**
 * `npx tsx scripts/measure-tts.ts [--runs N]`: time to first audio (TTFA) of the two ElevenLabs
 * adapters, HTTP stream (src/providers/tts/elevenlabs.ts) and stream-input WebSocket
 * (src/providers/tts/elevenlabs-ws.ts), against the local fake (test/fakes/elevenlabs-server.ts) set
 * to a realistic 200 ms to first byte and 20 ms between chunks. Prints one JSON object.
 *
 * Scenarios:
 * - `sentence`: the whole sentence is known (what the tts actor does today); TTFA from the call.
 *   `cold` is the first request of a client (HTTP: new connection), `warm` the rest.
 * - `tokens`: a reply arrives as LLM tokens every 30 ms; TTFA from the first token. HTTP has to wait
 *   for the first sentence to be complete before it can ask; the WebSocket takes tokens as they come
 *   (sentence ends flushed), with the server's default chunk schedule and with [50].
 *
 * What this cannot show: ElevenLabs' real model time, its buffering of partial text, TLS and
 * network round trips (the fake is on loopback, so a WebSocket handshake costs ~1 ms here, not the
 * 100–300 ms a fresh TLS connection to api.elevenlabs.io does). The fake generates as soon as its
 * (documented) triggers fire, so the figures compare the adapters' protocol behaviour, not the vendor.
 */
import { parseArgs } from 'node:util';
import { createElevenLabsTts, loadElevenLabs, type ElevenLabsTts } from '../src/providers/tts/elevenlabs.js';
import { createElevenLabsWsTts, type ElevenLabsWsTts } from '../src/providers/tts/elevenlabs-ws.js';
import { FAKE_ELEVENLABS_KEY, startElevenLabsFake } from '../test/fakes/elevenlabs-server.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '10' } } });
const RUNS = Math.max(1, Number(values.runs) || 10);
const FIRST_BYTE_MS = 200;
const CHUNK_DELAY_MS = 20;
const TOKEN_MS = 30;
const SENTENCE = 'Thanks for calling Riverside Vet, how can I help you today?';
const REPLY = "I'm sorry to hear Max is unwell, let me check the next available appointment for you. One moment please.";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const options = (signal: AbortSignal) => ({ voice: 'measureVoice0000001', language: 'en-US', signal });

/** Token-sized pieces (~4 characters, as LLM tokens run), each after TOKEN_MS. */
async function* llmTokens(text: string): AsyncGenerator<string> {
  for (const t of text.match(/\s?[^\s]{1,4}/g) ?? []) {
    await sleep(TOKEN_MS);
    yield t;
  }
}

/** ms from `t0` to the first chunk; then the request is cancelled (as a barge-in would). */
async function firstAudio(start: (signal: AbortSignal) => AsyncIterable<Uint8Array>, t0: number): Promise<number> {
  const ac = new AbortController();
  for await (const chunk of start(ac.signal)) {
    if (chunk.length === 0) continue;
    ac.abort();
    return performance.now() - t0;
  }
  throw new Error('no audio');
}

/** HTTP with tokens: collect until the first sentence ends, then ask (as the tts actor would). */
async function httpFromTokens(tts: ElevenLabsTts): Promise<number> {
  const t0 = performance.now();
  let sentence = '';
  for await (const t of llmTokens(REPLY)) {
    sentence += t;
    if (/[.!?]$/.test(t)) break;
  }
  return firstAudio((signal) => tts.synthesize(sentence.trim(), options(signal)), t0);
}

const wsFromTokens = (tts: ElevenLabsWsTts) => firstAudio((signal) => tts.synthesizeStream(llmTokens(REPLY), options(signal)), performance.now());

function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
  return { n: s.length, min: Math.round(s[0]!), p50: at(0.5), p90: at(0.9), max: Math.round(s.at(-1)!) };
}

async function repeat(runs: number, once: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) out.push(await once());
  return out;
}

async function main() {
  const t0 = performance.now();
  await loadElevenLabs();
  const sdkImportMs = Math.round(performance.now() - t0);

  const fake = await startElevenLabsFake();
  fake.faults.setDefault({ firstByteMs: FIRST_BYTE_MS, chunkDelayMs: CHUNK_DELAY_MS });
  const base = { apiKey: FAKE_ELEVENLABS_KEY, baseUrl: fake.url, defaultVoice: 'measureVoice0000001' };
  try {
    const http = createElevenLabsTts(base);
    const ws = createElevenLabsWsTts(base);
    const sentence = (tts: ElevenLabsTts) => () => firstAudio((signal) => tts.synthesize(SENTENCE, options(signal)), performance.now());
    const [httpCold] = await repeat(1, sentence(http));
    const [wsCold] = await repeat(1, sentence(ws));
    const result = {
      fake: { firstByteMs: FIRST_BYTE_MS, chunkDelayMs: CHUNK_DELAY_MS, tokenEveryMs: TOKEN_MS, loopback: true },
      sdkImportMs,
      sentence: {
        chars: SENTENCE.length,
        http: { coldMs: Math.round(httpCold!), warm: stats(await repeat(RUNS, sentence(http))) },
        ws: { coldMs: Math.round(wsCold!), warm: stats(await repeat(RUNS, sentence(ws))) },
      },
      tokens: {
        firstSentenceChars: REPLY.indexOf('.') + 1,
        /** When the first sentence's last token arrives: the floor for anything that waits for it. */
        firstSentenceCompleteMs: Math.ceil((REPLY.slice(0, REPLY.indexOf('.') + 1).match(/\s?[^\s]{1,4}/g) ?? []).length) * TOKEN_MS,
        httpAfterSentence: stats(await repeat(RUNS, () => httpFromTokens(http))),
        wsDefaultSchedule: stats(await repeat(RUNS, () => wsFromTokens(ws))),
        wsSchedule50: stats(await repeat(RUNS, () => wsFromTokens(createElevenLabsWsTts({ ...base, chunkLengthSchedule: [50] })))),
      },
      requests: fake.requests.length,
      charactersBilled: { http: http.characters, ws: ws.characters },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await fake.close();
  }
}

await main();
