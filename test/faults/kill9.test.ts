/**
 * Fault 5 (docs/design/reliability.md §4 recipe 5, docs/journal.md "Durability"): `kill -9` of an engine with
 * live calls. A child process runs the engine with a journal directory; three calls are in
 * different phases (talking, being answered, listening) when it is killed. Afterwards every journal
 * must read with the replay reader (src/replay/read.ts): each complete line parses, at most the last
 * is torn, and nothing the engine had time to flush (received more than the flush interval plus a
 * margin before the kill: "acknowledged") is missing. The mark echoes the fake Twilio sent are what
 * the test can count: the furthest acknowledged playback position must be journaled (the session
 * hands the machine only some echoes, src/calls/mark-echoes.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, it } from 'vitest';
import { parseJournal } from '../../src/replay/read.js';
import { QUICK_VET, sleep, tone } from '../e2e/conversation-kit.js';
import { TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { furthestMark, journaledMarks, onCallClock } from './fault-kit.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/**
 * The writer's background flush period (250 ms), the session's mark hand-over (at most 250 ms
 * after the echo arrives: src/calls/mark-echoes.ts), and room for a loaded 2-core machine.
 */
const ACK_MS = 850;

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function startChild(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/faults/kill9-engine.ts', dir], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanup.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return Promise.resolve();
  });
  let out = '';
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`engine child did not start:\n${out}`)), 30_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{"url"'));
      if (!line) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.on('exit', () => reject(new Error(`engine child exited:\n${out}`)));
  });
  return { child, url };
}

describe('kill -9 mid-call', () => {
  it('every journal reads up to its last complete line and no acknowledged event is lost', async ({ expect, annotate }) => {
    const dir = await mkdtemp(join(tmpdir(), 'vetline-kill9-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const { child, url } = await startChild(dir);
    const dial = () =>
      FakeTwilio.call({ serverUrl: url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber() });
    const calls = await Promise.all([dial(), dial(), dial()]);
    cleanup.push(() => Promise.all(calls.map((c) => c.dispose())).then(() => undefined));
    await Promise.all(calls.map((c) => c.untilQuiet(500, 10_000))); // greetings played and echoed
    const [talking, answered] = calls; // the third only listens

    // One call being answered (reply audio and mark echoes flowing), one mid-sentence, one idle.
    await answered.say(tone(400));
    await answered.waitFor((c) => c.heardMs() > 0 && c.marksEchoed.length >= 12, 6_000, 'the reply playing');
    void talking.say(tone(3_000));
    await sleep(600);

    const killedAt = performance.now();
    child.kill('SIGKILL');
    const exit = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    expect(exit).toBe('SIGKILL');
    await Promise.all(calls.map((c) => c.waitForClose(3_000)));

    const files = await readdir(dir);
    expect(files).toHaveLength(3);
    let acknowledged = 0;
    let lost = 0;
    let tail = 0;
    let torn = 0;
    for (const call of calls) {
      const name = files.find((f) => f.endsWith(`_${call.callSid}.jsonl`)) ?? '';
      const text = await readFile(join(dir, name), 'utf8');
      // Every line but a torn last one is complete JSON.
      const lines = text.split('\n');
      const last = lines.pop() ?? '';
      for (const line of lines) expect(() => JSON.parse(line) as unknown).not.toThrow();
      const journal = parseJournal(text, name);
      expect(journal.tornTail).toBe(last !== '');
      if (journal.tornTail) torn++;
      expect(journal.header.callSid).toBe(call.callSid);
      expect(journal.outcome).toBeNull(); // killed: no call ended

      // The furthest playback position acknowledged (echoed long enough before the kill for the
      // session to hand it over and the writer to flush it) is in the journal; nothing journaled
      // was never echoed.
      const kill = onCallClock(call, killedAt);
      const marks = journaledMarks(journal.events);
      const acked = call.marksEchoed.filter((m) => m.atMs < kill - ACK_MS).map((m) => m.name);
      const sent = call.marksEchoed.filter((m) => m.atMs < kill).map((m) => m.name);
      expect(marks.every((name) => sent.includes(name))).toBe(true);
      acknowledged += acked.length;
      if (furthestMark(marks) < furthestMark(acked)) lost++;
      tail += sent.length - marks.length;
    }
    expect(acknowledged).toBeGreaterThanOrEqual(20);
    expect(lost).toBe(0);
    const types = (await Promise.all(calls.map(async (c) => parseJournal(await readFile(join(dir, files.find((f) => f.includes(c.callSid)) ?? ''), 'utf8')))))
      .map((j) => j.events.map((e) => e.event.type));
    expect(types[1]).toEqual(expect.arrayContaining(['stt.final', 'tts.chunk']));
    expect(types[0]).toContain('vad.speechStart');
    await annotate(`kill -9 with 3 calls: ${acknowledged} acknowledged mark echoes, ${lost} calls whose furthest acknowledged position was lost; ${tail} echoes not journaled (held over, or in the last ${ACK_MS} ms); ${torn} torn tails`);
  }, 50_000);
});
