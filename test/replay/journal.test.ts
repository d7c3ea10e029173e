/**
 * The journal's parts without a live call: the writer (format, background flushing, failures,
 * size bound), the reader (validation, line numbers, torn tails), replay's timer modes, and the
 * committed fixture journals produced by real runs (test/replay/replay.test.ts).
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallInput } from '../../machines/call/call.types.js';
import { toCallTenant } from '../../src/calls/call-input.js';
import { loadTenants } from '../../src/config/tenants.js';
import { encodeEvent, type JournalRecordSummary } from '../../src/journal/format.js';
import { createJournalFactory, journalFileName, openJournalDir, type OpenCall } from '../../src/journal/writer.js';
import { parseJournal, readJournal, replayJournal, firstDivergence } from '../../src/replay/replay.js';

const TENANTS = fileURLToPath(new URL('../fixtures/tenants', import.meta.url));
const FIXTURE = (name: string) => new URL(`../fixtures/journals/${name}`, import.meta.url);

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
        done();
      },
    }),
  );
  return { logger, lines };
}

async function quickVetInput(callSid = 'CA0123'): Promise<CallInput> {
  const tenant = (await loadTenants(TENANTS)).byId('quick-vet');
  if (!tenant) throw new Error('fixture clinic quick-vet missing');
  return { callSid, tenant: toCallTenant(tenant) };
}

const record: JournalRecordSummary = { durationMs: 1000, turns: [], bargeIns: [], requests: 0, recordings: 0, dialStatus: null, emergency: null };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vetline-journal-unit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openCall = async (callSid = 'CA0123'): Promise<OpenCall> => ({
  callSid,
  tenantId: 'quick-vet',
  startedAt: '2025-06-01T14:03:07.123Z',
  providers: { vad: 'energy', stt: 'local', agent: 'local', tts: 'local' },
  input: await quickVetInput(callSid),
});

describe('journal writer', () => {
  it('writes a header, one line per event and the outcome, in the background', async () => {
    const { logger } = capture();
    const journals = await createJournalFactory({ dir, engineVersion: '9.9.9', logger, flushIntervalMs: 10_000 });
    const journal = journals.open(await openCall());
    expect(journal.path).toBe(join(dir, '2025-06-01T14-03-07.123Z_CA0123.jsonl'));
    journal.event(0.1, { type: 'twilio.start', streamSid: 'MZ1' }, false);
    journal.event(5.25, { type: 'tts.chunk', generation: 1, audio: new Uint8Array(3200) }, false);
    journal.event(700, { type: 'xstate.after.endOfTurn.call.listening.pausing' }, true);
    journal.event(701, { type: 'xstate.error.actor.0.call.transferring.dialing', error: new Error('Twilio said no to +15550100199 with key sk-abcdefghijklmnop') }, false);
    // Nothing is written on the caller's path: the lines sit in memory until a flush.
    expect(await readdir(dir)).toEqual([]);
    journal.end(800, 'completed', record);
    await journals.flushAll();

    const lines = (await readFile(journal.path, 'utf8')).split('\n');
    expect(lines.at(-1)).toBe('');
    const parsed = lines.slice(0, -1).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(parsed[0]).toMatchObject({ v: 1, type: 'header', callSid: 'CA0123', tenantId: 'quick-vet', engineVersion: '9.9.9', providers: { stt: 'local' }, input: { callSid: 'CA0123', tenant: { id: 'quick-vet' } } });
    expect(parsed.slice(1)).toEqual([
      { t: 0.1, type: 'twilio.start', streamSid: 'MZ1' },
      { t: 5.25, type: 'tts.chunk', generation: 1, bytes: 3200 },
      { t: 700, type: 'xstate.after.endOfTurn.call.listening.pausing', timer: true },
      { t: 701, type: 'xstate.error.actor.0.call.transferring.dialing', error: { name: 'Error', message: 'Twilio said no to [number] with key [redacted]' } },
      { t: 800, type: 'outcome', outcome: 'completed', record },
    ]);
    expect(journals.stats).toMatchObject({ opened: 1, open: 0, linesWritten: 6, writeErrors: 0, linesLost: 0 });
  });

  it('flushes on its own every flushIntervalMs, and at once past flushBytes', async () => {
    const { logger } = capture();
    const journals = await createJournalFactory({ dir, engineVersion: 't', logger, flushIntervalMs: 20, flushBytes: 4096 });
    const journal = journals.open(await openCall());
    journal.event(1, { type: 'twilio.start', streamSid: 'MZ1' }, false);
    await new Promise((r) => setTimeout(r, 80));
    expect((await readFile(journal.path, 'utf8')).split('\n')).toHaveLength(3);
    for (let i = 0; i < 100; i++) journal.event(2 + i, { type: 'stt.partial', text: 'x'.repeat(60) }, false);
    await journal.flush();
    expect((await readFile(journal.path, 'utf8')).split('\n')).toHaveLength(103);
    expect(journals.stats.flushes).toBeGreaterThanOrEqual(3); // the timer's, at least one size-triggered, the last
    journal.end(200, 'callerHungUp', record);
    await journals.flushAll();
  });

  it('an unwritable JOURNAL_DIR: createJournalFactory rejects, openJournalDir warns and returns null', async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, '');
    await expect(createJournalFactory({ dir: join(file, 'journals'), engineVersion: 't', logger: capture().logger })).rejects.toThrow();
    const { logger, lines } = capture();
    expect(await openJournalDir({ dir: join(file, 'journals'), engineVersion: 't', logger })).toBeNull();
    expect(lines).toEqual([expect.objectContaining({ level: 40, code: 'VET_E_JOURNAL', msg: expect.stringContaining('without call journals') as unknown })]);
  });

  it('a failing write is logged once per call, counted, and never throws', async () => {
    const { logger, lines } = capture();
    // Flushed only when told to: a timer flush racing the removal would open the file first, and
    // its appends would then go on "succeeding" into the unlinked inode until the next link check.
    const journals = await createJournalFactory({ dir, engineVersion: 't', logger, flushIntervalMs: 60_000 });
    const journal = journals.open(await openCall());
    await rm(dir, { recursive: true }); // the directory vanishes under the running engine
    journal.event(1, { type: 'twilio.start', streamSid: 'MZ1' }, false);
    await journal.flush();
    for (let i = 0; i < 10; i++) journal.event(2 + i, { type: 'twilio.dtmf', digit: '1' }, false);
    await journal.flush();
    journal.end(20, 'completed', record);
    await journals.flushAll();
    expect(lines.filter((l) => l.code === 'VET_E_JOURNAL')).toHaveLength(1);
    expect(journals.stats.writeErrors).toBe(1);
    expect(journals.stats.linesLost).toBeGreaterThanOrEqual(2);
    expect(journals.stats.open).toBe(0);
  });

  it('stops at maxBytes with a truncated line, and still writes the outcome', async () => {
    const { logger, lines } = capture();
    const journals = await createJournalFactory({ dir, engineVersion: 't', logger, maxBytes: 24 * 1024 });
    const journal = journals.open(await openCall());
    journal.event(0, { type: 'twilio.start', streamSid: 'MZ1' }, false);
    for (let i = 1; i <= 500; i++) journal.event(i, { type: 'tts.chunk', generation: 1, audio: new Uint8Array(3200) }, false);
    journal.end(600, 'callerHungUp', record);
    await journals.flushAll();
    const text = await readFile(journal.path, 'utf8');
    expect(Buffer.byteLength(text)).toBeLessThan(24 * 1024);
    const parsed = parseJournal(text);
    expect(parsed.truncatedAt).not.toBeNull();
    expect(parsed.events.length).toBeGreaterThan(50);
    expect(parsed.events.length).toBeLessThan(500);
    expect(parsed.outcome).toMatchObject({ outcome: 'callerHungUp', droppedEvents: 501 - parsed.events.length });
    expect(journals.stats.truncated).toBe(1);
    expect(lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('size limit'))).toHaveLength(1);
  });

  it('names files <start ISO time>_<CallSid>.jsonl and keeps odd characters out of paths', () => {
    expect(journalFileName('2025-06-01T14:03:07.123Z', 'CAabc')).toBe('2025-06-01T14-03-07.123Z_CAabc.jsonl');
    expect(journalFileName('2025-06-01T14:03:07.123Z', '../../etc/passwd')).toBe('2025-06-01T14-03-07.123Z_______etc_passwd.jsonl');
  });

  it('encodes one event in a few microseconds', () => {
    const events = [
      { type: 'tts.chunk', generation: 3, audio: new Uint8Array(3200) },
      { type: 'twilio.mark', generation: 3, epoch: 0, endMs: 2400 },
      { type: 'stt.final', text: 'what are your hours', atMs: 5120 },
    ];
    const n = 30_000;
    const start = performance.now();
    for (let i = 0; i < n; i++) encodeEvent(i, events[i % 3]!, false);
    const usPerEvent = ((performance.now() - start) * 1000) / n;
    expect(usPerEvent).toBeLessThan(50);
  });
});

describe('journal reader', () => {
  const header = async () => JSON.stringify({ v: 1, type: 'header', callSid: 'CA1', tenantId: 'quick-vet', engineVersion: 't', providers: {}, startedAt: '2025-06-01T14:03:07.123Z', input: await quickVetInput('CA1') });

  it('points at the bad line', async () => {
    const h = await header();
    expect(() => parseJournal(`${h}\n{"t":1,"type":"twilio.start","streamSid":"MZ"}\n{"t":2,"type":"tts.chunk","generation":1}\n`, 'x.jsonl')).toThrow(
      'x.jsonl:3: tts.chunk: bytes: Invalid input: expected number, received undefined',
    );
    expect(() => parseJournal(`${h}\n{"t":1,"type":"twilio.start"\n{"t":2,"type":"twilio.stop"}\n`, 'x.jsonl')).toThrow(/^x\.jsonl:2: not JSON/);
    expect(() => parseJournal(`${h}\n{"t":1,"type":"twilio.teleport"}\n`, 'x.jsonl')).toThrow('x.jsonl:2: unknown event type "twilio.teleport"');
    expect(() => parseJournal(`${h}\n{"t":5,"type":"twilio.stop"}\n{"t":4,"type":"twilio.stop"}\n`, 'x.jsonl')).toThrow('x.jsonl:3: t goes backwards');
    expect(() => parseJournal('{"t":0,"type":"twilio.stop"}\n', 'x.jsonl')).toThrow(/^x\.jsonl:1: header: /);
  });

  it('drops a torn last line (a crash mid-write) and says so', async () => {
    const j = parseJournal(`${await header()}\n{"t":1,"type":"twilio.start","streamSid":"MZ"}\n{"t":2,"type":"twilio.mar`);
    expect(j.tornTail).toBe(true);
    expect(j.events).toHaveLength(1);
    expect(j.outcome).toBeNull();
  });

  it('rebuilds audio as zeros of the recorded length and actor errors as Errors', async () => {
    const j = parseJournal(
      `${await header()}\n{"t":1,"type":"tts.chunk","generation":1,"bytes":320}\n{"t":2,"type":"xstate.error.actor.0.call.transferring.dialing","error":{"name":"VetError","message":"no","code":"VET_E_TWILIO_REST"}}\n`,
    );
    const [chunk, failure] = j.events;
    expect(chunk?.event).toEqual({ type: 'tts.chunk', generation: 1, audio: new Uint8Array(320) });
    const error = (failure?.event as unknown as { error: Error & { code: string }; actorId: string });
    expect(error.error).toBeInstanceOf(Error);
    expect(error.error).toMatchObject({ name: 'VetError', message: 'no', code: 'VET_E_TWILIO_REST' });
    expect(error.actorId).toBe('0.call.transferring.dialing');
  });
});

describe('replay timers', () => {
  /**
   * Live, the end-of-turn timer (500 ms) is due at 1500 but fires late (event loop busy); the
   * caller's next syllable arrives at 1501 and cancels it. A simulated clock would fire it at 1500.
   */
  async function racingJournal(): Promise<string> {
    const h = JSON.stringify({ v: 1, type: 'header', callSid: 'CA1', tenantId: 'quick-vet', engineVersion: 't', providers: {}, startedAt: '2025-06-01T14:03:07.123Z', input: await quickVetInput('CA1') });
    const lines = [
      encodeEvent(0, { type: 'twilio.start', streamSid: 'MZ1' }, false),
      encodeEvent(1, { type: 'tts.chunk', generation: 1, audio: new Uint8Array(800) }, false),
      encodeEvent(1, { type: 'tts.segment', generation: 1, text: '', ms: 100 }, false),
      encodeEvent(1, { type: 'tts.done', generation: 1 }, false),
      encodeEvent(101, { type: 'twilio.mark', generation: 1, epoch: 0, endMs: 100 }, false),
      encodeEvent(500, { type: 'vad.speechStart', atMs: 480 }, false),
      encodeEvent(1000, { type: 'vad.speechEnd', atMs: 1000, speechMs: 500 }, false),
      // Open words: the normal 500 ms window, the reply prepared during it.
      encodeEvent(1000, { type: 'stt.final', text: 'my dog has been limping', atMs: 1000 }, false),
      encodeEvent(1501, { type: 'vad.speechStart', atMs: 1490 }, false),
      encodeEvent(2400, { type: 'twilio.stop' }, false),
      JSON.stringify({ t: 2400, type: 'outcome', outcome: 'callerHungUp', record }),
    ];
    return `${h}\n${lines.join('\n')}\n`;
  }

  it('recorded (default): the live order holds even when an event raced a timer', async () => {
    const journal = parseJournal(await racingJournal());
    expect(journal.input.tenant.timing.endOfTurnMs).toBe(500);
    const recorded = replayJournal(journal);
    expect(recorded.transitions.map((s) => s.state)).toEqual([
      'connecting', 'greeting', 'listening.waiting', 'listening.hearing', 'listening.transcribing', 'reply.preparing.pausing', 'listening.hearing', 'ended',
    ]);
    expect(recorded.divergences).toEqual([]);
    expect(recorded.commands.filter((c) => c.type === 'out.discard')).toMatchObject([{ reason: 'callerResumed' }]);

    // Simulated timers fire on the dot and take the turn before the caller's syllable arrives.
    const simulated = replayJournal(journal, { timers: 'simulated' });
    expect(simulated.transitions.map((s) => s.state)).toContain('reply.thinking');
    expect(simulated.transitions.find((s) => s.state === 'reply.thinking')?.t).toBe(1500);
    expect(firstDivergence(recorded, simulated)).toMatchObject({ a: { kind: 'command', command: { type: 'out.discard' } }, b: { kind: 'command', command: { type: 'out.turn' } } });
  });

  it('recorded: a timer fires at its journal position, and its lateness is measured', async () => {
    const text = (await racingJournal()).replace(
      /\n\{"t":1501,"type":"vad.speechStart"[^\n]*/,
      `\n${encodeEvent(1503.5, { type: 'xstate.after.endOfTurn.call.reply.preparing.pausing' }, true)}`,
    );
    const replay = replayJournal(parseJournal(text));
    expect(replay.transitions.find((s) => s.state === 'reply.thinking')?.t).toBe(1503.5);
    expect(replay.timers).toEqual({ fired: 1, meanLateMs: 3.5, maxLateMs: 3.5 });
    expect(replay.commands.find((c) => c.type === 'out.turn')).toMatchObject({ t: 1503.5, transcript: 'my dog has been limping', prepared: true, endOfTurn: { kind: 'open', windowMs: 500 } });
  });

  it('recorded: a timer the machine never set is reported, not invented', async () => {
    const text = (await racingJournal()).replace(/\n\{"t":1501,"type":"vad.speechStart"[^\n]*/, `\n${encodeEvent(1501, { type: 'xstate.after.filler.call.reply.thinking' }, true)}`);
    const replay = replayJournal(parseJournal(text));
    expect(replay.divergences).toEqual([expect.stringContaining('timer "xstate.after.filler.call.reply.thinking" fired live but is not pending in the replay')]);
  });
});

describe('fixture journals (recorded from real runs)', () => {
  it('barge-in.jsonl replays to its recorded outcome through the interruption', async () => {
    const journal = await readJournal(FIXTURE('barge-in.jsonl'));
    const replay = replayJournal(journal);
    expect(replay.divergences).toEqual([]);
    expect(replay.transitions.map((s) => s.state)).toEqual(BARGE_IN_PATH);
    expect(replay.outcome).toBe('callerHungUp');
    expect(replay.commands.filter((c) => c.type === 'out.clear')).toHaveLength(1);
  });

  it('barge-in.jsonl, the pure way: XState transitions over the recorded events', async () => {
    const journal = await readJournal(FIXTURE('barge-in.jsonl'));
    let [snapshot] = initialTransition(callMachine, journal.input);
    for (const { event } of journal.events) [snapshot] = transition(callMachine, snapshot, event);
    expect(snapshot.value).toBe('ended');
  });

  it('dtmf-transfer.jsonl replays the key press, the REST result and the hand-off', async () => {
    const journal = await readJournal(FIXTURE('dtmf-transfer.jsonl'));
    const replay = replayJournal(journal);
    expect(replay.divergences).toEqual([]);
    expect(replay.transitions.map((s) => s.state)).toEqual(['connecting', 'greeting', 'listening.waiting', 'transferring.announcing', 'transferring.dialing', 'transferring.handedOff', 'ended']);
    expect(replay.outcome).toBe('transferred');
  });
});

/** The state path of the committed barge-in call (see test/replay/replay.test.ts). */
const BARGE_IN_PATH = [
  'connecting',
  'greeting',
  'listening.waiting',
  'listening.hearing',
  'listening.transcribing',
  'listening.pausing',
  'reply.thinking',
  'reply.speaking',
  'reply.interrupted.callerTalking',
  'listening.hearing',
  'listening.transcribing',
  'listening.pausing',
  'reply.thinking',
  'reply.speaking',
  'listening.waiting',
  'ended',
];
