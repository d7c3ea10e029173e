import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pruneJournals } from '../../src/journal/retention.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('journal retention', () => {
  it('deletes journals older than the retention and keeps the rest (and other files)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vetline-retention-'));
    dirs.push(dir);
    const now = Date.now();
    const day = 86_400_000;
    for (const [name, ageDays] of [['old.jsonl', 40], ['recent.jsonl', 2], ['notes.txt', 90]] as const) {
      await writeFile(join(dir, name), '{}\n');
      const t = new Date(now - ageDays * day);
      await utimes(join(dir, name), t, t);
    }
    expect(await pruneJournals(dir, { maxAgeDays: 30, now })).toEqual({ deleted: 1, kept: 1 });
    expect((await readdir(dir)).sort()).toEqual(['notes.txt', 'recent.jsonl']);
  });

  it('keeps everything when retention is 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vetline-retention-'));
    dirs.push(dir);
    await writeFile(join(dir, 'a.jsonl'), '{}\n');
    await utimes(join(dir, 'a.jsonl'), new Date(0), new Date(0));
    expect(await pruneJournals(dir, { maxAgeDays: 0 })).toEqual({ deleted: 0, kept: 0 });
    expect(await readdir(dir)).toEqual(['a.jsonl']);
  });
});
