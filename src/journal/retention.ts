/**
 * Journal retention: deletes call journals older than the configured age, shipped to S3 or not
 * (JOURNAL_S3_URL's copies follow the bucket's own lifecycle rules). Journals hold transcripts
 * (personal data), so they should not outlive the clinic's recordings policy.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SHIPPED_SUFFIX } from './writer.js';

export async function pruneJournals(dir: string, opts: { maxAgeDays: number; now?: number }): Promise<{ deleted: number; kept: number }> {
  if (opts.maxAgeDays <= 0) return { deleted: 0, kept: 0 };
  const cutoff = (opts.now ?? Date.now()) - opts.maxAgeDays * 86_400_000;
  let deleted = 0;
  let kept = 0;
  for (const name of await readdir(dir)) {
    // A journal, or the marker JOURNAL_S3_URL's shipper leaves beside a journal it copied (written after it).
    const marker = name.endsWith(`.jsonl${SHIPPED_SUFFIX}`);
    if (!name.endsWith('.jsonl') && !marker) continue;
    const path = join(dir, name);
    try {
      if ((await stat(path)).mtimeMs < cutoff) {
        await unlink(path);
        if (!marker) deleted++;
      } else if (!marker) kept++;
    } catch {
      // Removed meanwhile (another instance pruning the same directory): nothing to do.
    }
  }
  return { deleted, kept };
}
