/**
 * Fault 3 (docs/journal.md "Durability", errors.md VET_E_JOURNAL): the journal stops being
 * writable in the middle of a call. The call must go on as if nothing happened, the failure is
 * logged once per call (not per line) and counted in /metrics, what was written before the fault
 * stays readable, and other calls' journals are unaffected.
 *
 * The tests may run as root, where `chmod 0500` blocks nothing, so the faults are ones root cannot
 * write through: a full disk (ENOSPC from the file's appends, injected through node:fs for the one
 * call's file; the rest of the file system is the real one) and JOURNAL_DIR removed under
 * the running engine (real).
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Fs from 'node:fs';
import type * as FsPromises from 'node:fs/promises';
import { describe, it, vi, type TestContext } from 'vitest';
import { parseJournal } from '../../src/replay/read.js';
import { sleep, tone } from '../e2e/conversation-kit.js';
import { converse, faultRig, later, journalOf, untilState, type FaultRig } from './fault-kit.js';

/** Paths whose appends fail with ENOSPC, matched by substring (a CallSid); the descriptors opened on each path. */
const disk = vi.hoisted(() => ({
  full: new Set<string>(),
  appendsRefused: 0,
  pathOfFd: new Map<number, string>(),
  enospc: () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' }),
}));

// The writer opens a journal with node:fs/promises and appends with node:fs writeSync on its
// descriptor (src/journal/writer.ts): opens are recorded, and writes to a full path are refused.
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof FsPromises>();
  const open: typeof fs.open = async (...args) => {
    const handle = await fs.open(...args);
    const fd = handle.fd;
    disk.pathOfFd.set(fd, String(args[0]));
    // A descriptor number is reused once closed: forget its path then.
    const close = handle.close.bind(handle);
    handle.close = () => {
      disk.pathOfFd.delete(fd);
      return close();
    };
    return handle;
  };
  return { ...fs, open, default: { ...fs, open } };
});
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof Fs>();
  const writeSync = ((fd: number, ...rest: unknown[]) => {
    const path = disk.pathOfFd.get(fd) ?? '';
    if ([...disk.full].some((s) => path.includes(s))) {
      disk.appendsRefused++;
      throw disk.enospc();
    }
    return (fs.writeSync as (fd: number, ...a: unknown[]) => number)(fd, ...rest);
  }) as typeof fs.writeSync;
  return { ...fs, writeSync, default: { ...fs, writeSync } };
});

/** A directory removed when the test finishes (the two tests run at once). */
async function tempDir(ctx: Pick<TestContext, 'onTestFinished'>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vetline-journal-fault-'));
  ctx.onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const journalWarnings = (r: FaultRig, callSid?: string) =>
  r.logs(callSid).filter((l) => l.code === 'VET_E_JOURNAL');

async function metric(r: FaultRig, name: string): Promise<number> {
  const text = await (await fetch(`${r.engine.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

// The two calls wait on audio played in real time, and each fault is its own (one CallSid's appends,
// one test's directory): they run at once.
describe.concurrent('the journal becomes unwritable mid-call', () => {
  it('disk full (ENOSPC) for one call: that call goes on, one VET_E_JOURNAL, counted; what was written stays; the other journal is whole', async (ctx) => {
    const { expect } = ctx;
    const dir = await tempDir(ctx);
    const r = await faultRig(ctx, { journalDir: dir });
    const call = await r.dial();
    const neighbour = await r.dial();
    await untilState(r, call, 'listening.waiting', 10_000);
    await r.engine.journal?.flushAll();
    const before = (await readdir(dir)).find((f) => f.includes(call.callSid));
    const onDisk = await readFile(join(dir, before ?? ''), 'utf8');
    const linesBefore = parseJournal(onDisk).events.length;
    expect(linesBefore).toBeGreaterThan(0);

    disk.full.add(call.callSid);
    ctx.onTestFinished(() => void disk.full.delete(call.callSid));
    const neighbourDone = later(converse(r, neighbour));
    // Two full turns with the journal failing underneath.
    expect(await converseTurn(r, call)).toContain('Monday to Friday');
    expect(await converse(r, call)).toContain('Monday to Friday');
    expect(await neighbourDone).toContain('Monday to Friday');
    await r.engine.journal?.flushAll();

    expect(r.outcomeOf(call.callSid)).toBe('callerHungUp');
    expect(disk.appendsRefused).toBe(1); // the journal stopped at the first failure: no retry per line
    expect(journalWarnings(r, call.callSid)).toHaveLength(1);
    expect(journalWarnings(r)).toHaveLength(1);
    const stats = r.engine.journal?.stats;
    expect(stats?.writeErrors).toBe(1);
    expect(stats?.linesLost).toBeGreaterThan(10);
    expect(stats?.open).toBe(0);
    expect(await metric(r, 'vetline_journal_write_errors_total')).toBe(1);
    expect(await metric(r, 'vetline_journal_lines_lost_total')).toBe(stats?.linesLost);

    // The faulted journal still reads: everything written before the fault, no torn line, no outcome.
    const faulted = await journalOf(dir, call.callSid);
    expect(faulted.tornTail).toBe(false);
    expect(faulted.outcome).toBeNull();
    expect(faulted.events.length).toBe(linesBefore);
    expect((await readFile(join(dir, before ?? ''), 'utf8')).startsWith(onDisk)).toBe(true);

    // The neighbour's journal is complete.
    const whole = await journalOf(dir, neighbour.callSid);
    expect(whole.tornTail).toBe(false);
    expect(whole.outcome?.outcome).toBe('callerHungUp');
    expect(whole.events.map((e) => e.event.type)).toEqual(expect.arrayContaining(['vad.speechEnd', 'stt.final', 'tts.chunk', 'twilio.stop']));
    await ctx.annotate(`ENOSPC: ${stats?.linesLost ?? 0} lines lost, 1 warning, ${linesBefore} events kept from before the fault`);
  }, 40_000);

  it('JOURNAL_DIR removed under the engine: the live call and a new one both go on, one VET_E_JOURNAL each', async (ctx) => {
    const { expect } = ctx;
    const dir = await tempDir(ctx);
    const r = await faultRig(ctx, { journalDir: dir });
    const call = await r.dial();
    await untilState(r, call, 'listening.waiting', 10_000);
    await r.engine.journal?.flushAll();

    await rm(dir, { recursive: true });
    const late = await r.dial(); // its journal cannot even be opened
    const lateDone = later(converse(r, late));
    expect(await converseTurn(r, call)).toContain('Monday to Friday');
    await sleep(1_200); // the live call keeps producing journal lines (marks, VAD) for a while
    expect(await converse(r, call)).toContain('Monday to Friday');
    expect(await lateDone).toContain('Monday to Friday');
    await r.engine.journal?.flushAll();

    expect(r.outcomeOf(call.callSid)).toBe('callerHungUp');
    expect(r.outcomeOf(late.callSid)).toBe('callerHungUp');
    // Appends into the removed directory's still-open file succeed on Linux; the writer must notice.
    expect(journalWarnings(r, call.callSid)).toHaveLength(1);
    expect(journalWarnings(r, late.callSid)).toHaveLength(1);
    expect(r.engine.journal?.stats.writeErrors).toBe(2);
    expect(await metric(r, 'vetline_journal_write_errors_total')).toBe(2);
    expect(r.logs().filter((l) => (l.level as number) >= 50)).toEqual([]);
  }, 40_000);
});

/** One question and answer without hanging up. */
async function converseTurn(r: FaultRig, call: Parameters<typeof converse>[1]): Promise<string> {
  const said = r.engine.registry.session(call.callSid)?.history.length ?? 0;
  await call.say(tone(400));
  await untilState(r, call, (s) => s.startsWith('reply.'), 6_000);
  await untilState(r, call, 'listening.waiting', 10_000);
  return r.engine.registry.session(call.callSid)?.history.slice(said).find((h) => h.role === 'agent')?.text ?? '';
}
