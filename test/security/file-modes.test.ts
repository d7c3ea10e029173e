/**
 * Files that hold callers' words and numbers (call journals, the SQLite database and its -wal/-shm)
 * are created 0600 in directories created 0700, whatever the umask widened (it can only narrow).
 * An existing journal directory that others can read is reported at start-up.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toCallTenant } from '../../src/calls/call-input.js';
import { loadTenants } from '../../src/config/tenants.js';
import { createJournalFactory, openJournalDir } from '../../src/journal/writer.js';
import { openStore } from '../../src/store/index.js';
import { followUp } from '../desk/kit.js';

const TENANTS = new URL('../fixtures/tenants', import.meta.url).pathname;
const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'vetline-modes-'));
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function capture() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (c: Buffer, _e, done) => (lines.push(JSON.parse(c.toString('utf8')) as Record<string, unknown>), done()) }));
  return { logger, lines };
}

describe('call journals', () => {
  it('are written 0600 into a JOURNAL_DIR created 0700 (parents included)', async () => {
    const dir = join(root, 'data', 'journals');
    const journals = await createJournalFactory({ dir, engineVersion: 't', logger: capture().logger });
    const tenant = (await loadTenants(TENANTS)).byId('quick-vet');
    if (!tenant) throw new Error('fixture clinic quick-vet missing');
    const journal = journals.open({
      callSid: 'CA0123', tenantId: 'quick-vet', startedAt: '2025-06-01T14:03:07.123Z',
      providers: { vad: 'energy', stt: 'local', agent: 'local', tts: 'local' }, input: { callSid: 'CA0123', tenant: toCallTenant(tenant) },
    });
    journal.event(1, { type: 'stt.final', text: 'my name is emily' }, false);
    journal.end(2, 'completed', { durationMs: 2, turns: [], bargeIns: [], requests: 0, recordings: 0, dialStatus: null, emergency: null });
    await journals.flushAll();
    expect((await modeOf(journal.path)).toString(8)).toBe('600');
    expect((await modeOf(dir)).toString(8)).toBe('700');
    expect((await modeOf(join(root, 'data'))).toString(8)).toBe('700');
  });

  it('an existing JOURNAL_DIR others can read is reported (not changed: it may be a shared mount)', async () => {
    const dir = join(root, 'shared');
    await mkdir(dir, { mode: 0o755 });
    const { logger, lines } = capture();
    expect(await openJournalDir({ dir, engineVersion: 't', logger })).not.toBeNull();
    expect(lines).toEqual([expect.objectContaining({ level: 40, code: 'VET_E_JOURNAL', mode: '755', msg: expect.stringContaining('chmod 700') as unknown })]);
    expect((await modeOf(dir)).toString(8)).toBe('755');
    const quiet = capture();
    await mkdir(join(root, 'private'), { mode: 0o700 });
    await openJournalDir({ dir: join(root, 'private'), engineVersion: 't', logger: quiet.logger });
    expect(quiet.lines).toEqual([]);
  });
});

describe('the SQLite store', () => {
  it('creates the database, its -wal and -shm 0600 in a directory created 0700', async () => {
    const path = join(root, 'state', 'vetline.db');
    const store = await openStore(`sqlite:${path}`);
    try {
      await store.recordFollowUp(followUp({ clinicId: 'quick-vet' }), []);
      for (const file of [path, `${path}-wal`, `${path}-shm`]) expect([file, (await modeOf(file)).toString(8)]).toEqual([file, '600']);
      expect((await modeOf(join(root, 'state'))).toString(8)).toBe('700');
    } finally {
      await store.close();
    }
    // Reopened after the WAL was checkpointed away, the recreated -wal and -shm are 0600 too.
    const again = await openStore(`sqlite:${path}`);
    try {
      await again.recordFollowUp(followUp({ clinicId: 'quick-vet' }), []);
      for (const file of [`${path}-wal`, `${path}-shm`]) expect([file, (await modeOf(file)).toString(8)]).toEqual([file, '600']);
    } finally {
      await again.close();
    }
  });
});
