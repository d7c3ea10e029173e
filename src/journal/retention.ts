/**
 * Journal retention: deletes call journals older than the configured age. Journals hold transcripts
 * (personal data), so they should not outlive the clinic's recordings policy.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export async function pruneJournals(dir: string, opts: { maxAgeDays: number; now?: number }): Promise<{ deleted: number; kept: number }> {
  if (opts.maxAgeDays <= 0) return { deleted: 0, kept: 0 };
  const cutoff = (opts.now ?? Date.now()) - opts.maxAgeDays * 86_400_000;
  let deleted = 0;
  let kept = 0;
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.jsonl')) continue;
    const path = join(dir, name);
    try {
      if ((await stat(path)).mtimeMs < cutoff) {
        await unlink(path);
        deleted++;
      } else kept++;
    } catch {
      // Removed meanwhile (another instance pruning the same directory): nothing to do.
    }
  }
  return { deleted, kept };
}
