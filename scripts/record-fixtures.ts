/**
 * `npm run fixtures:journals [-- <scenario> …]`: records the journal regression fixtures
 * (docs/journal.md "Fixtures"). Each scenario of the live-conversation suite (test/e2e/) runs live
 * through the real stack (HTTP, Media Streams via FakeTwilio, the energy VAD hearing the caller's
 * tone, a scripted recognizer, the local or a scripted agent, the fake synthesizer: deterministic,
 * so a fixture only changes when the engine does), with a journal and a tap on the session.
 *
 * Before anything is written, the journal is replayed and must reproduce the live call's states
 * and commands exactly (the journal guarantee); then the journal goes to
 * test/fixtures/journals/<scenario>.jsonl and what the live call did (states and command
 * summaries, no times) to <scenario>.live.json, which test/replay/fixtures.test.ts compares every
 * later replay against. Exit 1 (nothing written for that scenario) if a replay disagrees.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import type { SessionTap } from '../src/calls/session.js';
import { summarizeCommand, type CommandSummary } from '../src/journal/format.js';
import type { AgentProvider } from '../src/providers/agent/types.js';
import { createFakeAgent } from '../src/providers/agent/fake.js';
import { localAgent } from '../src/providers/agent/local.js';
import { createFakeStt, type FakeSttUtterance } from '../src/providers/stt/fake.js';
import { createFakeTts } from '../src/providers/tts/fake.js';
import { energyVad } from '../src/providers/vad/energy.js';
import { readJournal, replayJournal } from '../src/replay/replay.js';
import { CONSENT_VET, CPS, QUICK_VET, TENANTS, lastGeneration, playedOf, streamingRecognizer, tone, warmPrompts } from '../test/e2e/conversation-kit.js';
import { FakeTwilio, nextCallerNumber } from '../test/support/fake-twilio.js';
import { restRecorder } from '../test/support/rest-recorder.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../test/support/engine.js';

const OUT = fileURLToPath(new URL('../test/fixtures/journals', import.meta.url));
/** The fixture size bound (media frames never reach a journal; marks and chunks do). */
const MAX_BYTES = 100 * 1024;

/** What the live call did, as `<scenario>.live.json` keeps it: no times, so it is stable. */
export interface LiveRecord {
  scenario: string;
  states: string[];
  commands: CommandSummary[];
}

/** A reply long enough to talk over (3.6 s of fake audio), as in test/e2e/interruptions.test.ts. */
const LONG =
  'We offer vaccinations, dental care and surgery for dogs and cats. Our team also does grooming on weekdays. ' +
  'We can board your pet while you travel. Ask me about any of these services.';
const ASK = 'tell me about your services';

interface Ctx {
  engine: TestEngine;
  call: FakeTwilio;
  state(): string;
  until(ok: string | ((state: string) => boolean), timeoutMs?: number): Promise<void>;
}

interface Scenario {
  name: string;
  to: string;
  agent: () => AgentProvider;
  stt: FakeSttUtterance[];
  /** Twilio REST refuses the transfer (`update`). */
  failUpdate?: boolean;
  /** Drives the call to its end (the engine's or the caller's). */
  run(c: Ctx): Promise<void>;
}

/** Once the engine listens, the caller says something (the recognizer's next scripted line). */
async function answer(c: Ctx, ms = 300): Promise<void> {
  await c.until('listening.waiting', 10_000);
  await c.call.say(tone(ms));
}

/** Asks, waits for the reply, hangs up once the engine listens again. */
async function askThenHangUp(c: Ctx, turns: number): Promise<void> {
  for (let i = 0; i < turns; i++) {
    const replies = c.engine.registry.session(c.call.callSid)?.history.length ?? 0;
    await answer(c, i === 0 ? 400 : 300);
    await c.call.waitFor(() => (c.engine.registry.session(c.call.callSid)?.history.length ?? 0) >= replies + 2, 8_000, `reply ${i + 1}`);
  }
  await c.until('listening.waiting', 8_000);
  await c.call.hangUp();
}

/** Asks for the long reply and waits until `intoReplyMs` of it has been heard. */
async function midReply(c: Ctx, intoReplyMs: number): Promise<number> {
  await c.until('listening.waiting', 5_000);
  const greeting = lastGeneration(c.call);
  await c.call.say(tone(400));
  await c.until('reply.speaking', 4_000);
  await c.call.waitFor((f) => lastGeneration(f) > greeting, 2_000, "the reply's first mark");
  const generation = lastGeneration(c.call);
  await c.call.waitFor((f) => playedOf(f, generation) >= intoReplyMs, 6_000, `${intoReplyMs} ms of the reply heard`);
  return generation;
}

/** Invalid frames (9: one short of the 1008 close) and valid-but-foreign ones, sent mid-reply. */
function garbage(streamSid: string): string[] {
  const media = (over: Record<string, unknown>) =>
    JSON.stringify({ event: 'media', sequenceNumber: '9000', streamSid, media: { track: 'inbound', chunk: '9000', timestamp: '900000', payload: '/////w==', ...over } });
  return [
    'not json {', 'null', '[]', '"media"', media({ payload: '!!!@' }), media({ payload: 'AAA' }),
    JSON.stringify({ event: 'dtmf', streamSid, dtmf: { digit: 'X' } }),
    JSON.stringify({ event: 'mark', streamSid, mark: {} }),
    JSON.stringify({ event: 'stop', stop: 'now' }),
    JSON.stringify({ event: 'hello', streamSid }),
    JSON.stringify({ event: 'connected', protocol: 'Call', version: '1.0.0' }),
    JSON.stringify({ event: 'mark', sequenceNumber: '9002', streamSid, mark: { name: 'not-ours' } }),
  ];
}

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'consent-yes',
    to: CONSENT_VET,
    agent: () => localAgent,
    stt: ['yes', 'what are your hours'],
    async run(c) {
      await c.until('consent.waiting', 6_000);
      await c.call.say(tone(300));
      await askThenHangUp(c, 1);
    },
  },
  {
    name: 'consent-no',
    to: CONSENT_VET,
    agent: () => localAgent,
    stt: ['no', 'where are you located'],
    async run(c) {
      await c.until('consent.waiting', 6_000);
      await c.call.say(tone(300));
      await askThenHangUp(c, 1);
    },
  },
  { name: 'hours', to: QUICK_VET, agent: () => localAgent, stt: ['what are your hours'], run: (c) => askThenHangUp(c, 1) },
  {
    name: 'appointment',
    to: QUICK_VET,
    agent: () => localAgent,
    stt: ['I want to book an appointment', 'Rex', 'my name is Jane Smith', 'his vaccinations', 'tomorrow at 10 am', '555 010 0200', 'yes'],
    run: (c) => askThenHangUp(c, 7),
  },
  {
    name: 'emergency-word',
    to: QUICK_VET,
    agent: () => createFakeAgent({ script: [LONG] }),
    // One keyword in an interim transcript is uncertain: "Is your pet in danger right now?", then "yes".
    stt: [ASK, { partials: ['I think my dog is bleeding'], final: 'I think my dog is bleeding a lot' }, 'yes'],
    async run(c) {
      await midReply(c, 800);
      const spoken = c.call.say(tone(2_400)); // six words of partial need ~1.8 s of speech
      await c.until((s) => s.startsWith('emergency.checking.'), 3_000);
      await spoken;
      await c.until('emergency.checking.waiting', 8_000);
      await c.call.say(tone(300));
      await c.until('transferring.handedOff', 8_000);
      await c.call.stop(); // Twilio runs the <Dial> and stops the stream
    },
  },
  {
    name: 'emergency-key',
    to: QUICK_VET,
    agent: () => createFakeAgent({ script: [LONG] }),
    stt: [ASK],
    async run(c) {
      await midReply(c, 800);
      c.call.dtmf('9');
      await c.until('transferring.handedOff', 6_000);
      await c.call.stop();
    },
  },
  {
    name: 'transfer-failed',
    to: QUICK_VET,
    agent: () => createFakeAgent(),
    stt: [],
    failUpdate: true,
    async run(c) {
      await c.until('listening.waiting', 5_000);
      c.call.dtmf('0');
      await c.until('transferring.failed', 4_000);
      await c.until('listening.waiting', 8_000);
      await c.call.hangUp();
    },
  },
  {
    name: 'silence-goodbye',
    to: QUICK_VET,
    agent: () => localAgent,
    stt: [],
    async run(c) {
      await c.until('ended', 25_000); // greeting, two nudges, goodbye, REST hang-up, stream closed
    },
  },
  {
    name: 'hangup-mid-reply',
    to: QUICK_VET,
    agent: () => createFakeAgent({ script: [LONG] }),
    stt: [ASK],
    async run(c) {
      await midReply(c, 500);
      await c.call.hangUp();
    },
  },
  {
    name: 'backchannel-resume',
    to: QUICK_VET,
    agent: () => createFakeAgent({ script: [LONG] }),
    stt: [ASK, 'mm-hmm'],
    async run(c) {
      await midReply(c, 1_000);
      await c.call.say(tone(400));
      await c.until('reply.speaking', 3_000);
      await c.until('listening.waiting', 8_000);
      await c.call.hangUp();
    },
  },
  {
    // Words that could be the whole turn, a pause, then more: the reply prepared in the pause is thrown away unheard (out.discard).
    name: 'prepared-discarded',
    to: QUICK_VET,
    agent: () => localAgent,
    stt: [{ partials: ['my cat has been sneezing'], final: 'my cat has been sneezing' }, { partials: ['what are your hours'], final: 'what are your hours' }],
    async run(c) {
      await c.until('listening.waiting', 5_000);
      // 320 ms of quiet: the VAD closes the segment at 200 ms, the caller is heard again at ~420 ms, inside the 500 ms window.
      await c.call.say(new Uint8Array([...tone(500), ...new Uint8Array(320 * 8).fill(0xff), ...tone(400)]));
      await c.until('reply.speaking', 4_000);
      await c.until('listening.waiting', 8_000);
      await c.call.hangUp();
    },
  },
  {
    name: 'garbage-frames',
    to: QUICK_VET,
    agent: () => localAgent,
    stt: ['what are your hours', 'where are you located'],
    async run(c) {
      await c.until('listening.waiting', 5_000);
      await c.call.say(tone(400));
      await c.until('reply.speaking', 4_000);
      for (const frame of garbage(c.call.streamSid)) c.call.sendRaw(frame);
      await c.until('listening.waiting', 6_000);
      if (c.call.closed) throw new Error('the stream was closed by the garbage frames');
      await askThenHangUp(c, 1);
    },
  },
];

/** Runs one scenario live; returns the journal's path (in `dir`) and what the live call did. */
async function record(s: Scenario, dir: string): Promise<{ path: string; live: LiveRecord }> {
  const live: LiveRecord = { scenario: s.name, states: [], commands: [] };
  const tap: SessionTap = {
    transition: (_sid, state) => live.states.push(state),
    command: (_sid, command) => live.commands.push(summarizeCommand(command)),
  };
  // The recognizer of test/e2e/conversation-kit.ts: partials as the caller speaks, finals 30 ms after the VAD boundary.
  const stt = createFakeStt({ script: s.stt, ...streamingRecognizer, schedule: (deliver) => void setTimeout(deliver, 30) });
  const engine = await startEngine({
    providers: { vad: energyVad, stt, tts: createFakeTts({ charsPerSecond: CPS }), agent: s.agent() },
    prompts: await warmPrompts(),
    rest: restRecorder({ fail: (op) => op === 'update' && s.failUpdate === true }).rest,
    env: { TENANTS_DIR: TENANTS, LOG_LEVEL: 'warn' },
    journalDir: dir,
    tap,
  });
  const call = await FakeTwilio.call({
    serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: s.to, from: nextCallerNumber(),
  });
  try {
    const state = () => engine.registry.list().find((x) => x.callSid === call.callSid)?.state ?? 'ended';
    const until = (ok: string | ((st: string) => boolean), timeoutMs = 8_000) => {
      const test = typeof ok === 'string' ? (st: string) => st === ok : ok;
      return call.waitFor(() => test(state()), timeoutMs, `state ${String(ok)} (now ${state()})`);
    };
    await s.run({ engine, call, state, until });
    await until('ended', 5_000);
  } finally {
    await call.dispose();
    await engine.close(); // flushes the journal
  }
  const name = (await readdir(dir)).find((f) => f.endsWith(`_${call.callSid}.jsonl`));
  if (!name) throw new Error(`${s.name}: no journal written`);
  return { path: join(dir, name), live };
}

/** The journal guarantee, checked before a fixture is kept: replay = live, and the journal is small. */
async function verify(s: Scenario, path: string, live: LiveRecord): Promise<void> {
  const replay = replayJournal(await readJournal(path));
  const problems: string[] = [...replay.divergences];
  if (!isDeepStrictEqual(replay.transitions.map((x) => x.state), live.states)) problems.push('states differ from the live call');
  if (!isDeepStrictEqual(replay.commands.map(({ t: _t, ...c }) => c), live.commands)) problems.push('commands differ from the live call');
  if (replay.outcome === null || replay.outcome !== replay.recordedOutcome) problems.push(`outcome ${replay.outcome ?? 'none'} vs recorded ${replay.recordedOutcome ?? 'none'}`);
  const { size } = await stat(path);
  if (size >= MAX_BYTES) problems.push(`journal is ${size} B (bound ${MAX_BYTES})`);
  const text = await readFile(path, 'utf8');
  if (/\+?1?555\d{7}/.test(text) || text.includes(TEST_TOKEN)) problems.push('a phone number or the auth token is in the journal');
  if (problems.length > 0) throw new Error(`${s.name}: ${problems.join('; ')}`);
}

/** One state list, then one command per line: readable, and a regenerated fixture diffs line by line. */
function formatLive(live: LiveRecord): string {
  const commands = live.commands.map((c) => `  ${JSON.stringify(c)}`).join(',\n');
  return `{\n "scenario": ${JSON.stringify(live.scenario)},\n "states": ${JSON.stringify(live.states)},\n "commands": [\n${commands}\n ]\n}\n`;
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2).filter((a) => a !== '--');
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario(s): ${unknown.join(', ')}\nknown: ${SCENARIOS.map((s) => s.name).join(', ')}\n`);
    process.exit(2);
  }
  const dir = await mkdtemp(join(tmpdir(), 'vetline-fixtures-'));
  let failed = 0;
  try {
    for (const s of SCENARIOS.filter((x) => wanted.length === 0 || wanted.includes(x.name))) {
      try {
        const { path, live } = await record(s, dir);
        await verify(s, path, live);
        await writeFile(join(OUT, `${s.name}.jsonl`), await readFile(path));
        await writeFile(join(OUT, `${s.name}.live.json`), formatLive(live));
        const { size } = await stat(path);
        process.stderr.write(`${s.name}: ${live.states.length} states, ${live.commands.length} commands, ${size} B\n`);
      } catch (err) {
        failed++;
        process.stderr.write(`${s.name}: FAILED ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.exit(failed > 0 ? 1 : 0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
