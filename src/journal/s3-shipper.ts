/**
 * Copies finished call journals to S3-compatible storage (JOURNAL_S3_URL; docs/operations.md
 * "Journals in S3"). The only module that knows the AWS SDK.
 *
 * JOURNAL_DIR is the spool: a journal is uploaded when its call's journal closes, and a marker file
 * `<journal>.shipped` is written once the storage has acknowledged it. Uploads that fail are retried
 * with a growing delay (5 s up to 5 min); a sweep of the directory at start-up and every 10 minutes
 * finds what a failed upload, a restart or a crash left behind. A journal is taken by the sweep only
 * once it is finished: its last line is the call's outcome, or it has not changed for 10 minutes (a
 * live call writes every few seconds; a process killed mid-call leaves a journal that stops). The
 * object key is the prefix plus the file name, so an upload repeated after a crash, or by two
 * processes sweeping one directory, writes the same object with the same bytes.
 *
 * The request is signed over the body's SHA-256 (SigV4), so the storage refuses a body that was
 * altered on the way. Checksum headers are only sent where the API requires them
 * (`requestChecksumCalculation: 'WHEN_REQUIRED'`): several S3-compatible stores refuse the SDK's
 * default CRC32 headers.
 */
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { constants as fsConstants } from 'node:fs';
import { open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import type { JournalS3Target } from '../config/env-values.js';
import { SHIPPED_SUFFIX } from './writer.js';

/** A journal whose last line is not an outcome is taken as finished once unchanged this long. */
export const STALE_JOURNAL_MS = 10 * 60_000;
const SWEEP_EVERY_MS = 10 * 60_000;
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;
/** Uploads in flight at once. */
const CONCURRENCY = 2;
/** One request's budget (a journal is at most a few MB). */
const REQUEST_TIMEOUT_MS = 30_000;
/** The tail read to find a journal's last line (the outcome line carries the call's record: a few KB). */
const TAIL_BYTES = 64 * 1024;
const OUTCOME_LINE = /^\{"t":[0-9.e+-]+,"type":"outcome"/;

export interface ShipperStats {
  shipped: number;
  /** Failed attempts (each retried later). */
  failures: number;
  /** Journals waiting for an upload or a retry. */
  pending: number;
}

export interface JournalShipper {
  readonly stats: Readonly<ShipperStats>;
  /** A call's journal was closed: ship it now. */
  closed(path: string): void;
  /** Ships every finished journal of the directory not shipped yet; resolves once they were tried. */
  sweep(): Promise<void>;
  /** Starts the periodic sweep (after a first one). */
  start(): void;
  /** Stops the sweep and waits up to `waitMs` for the uploads queued or in flight; the rest waits in JOURNAL_DIR for the next start. */
  close(waitMs: number): Promise<void>;
}

export interface ShipperOptions {
  dir: string;
  target: JournalS3Target;
  region: string;
  logger: Logger;
  /** Paths of journals this process still writes (never swept). */
  isOpen: (path: string) => boolean;
  /** Tests: delays in ms (default 5 s doubling to 5 min) and a client. */
  retry?: { firstMs: number; maxMs: number };
  client?: S3Client;
}

export function createS3Shipper(opts: ShipperOptions): JournalShipper {
  const log = opts.logger.child({ component: 'journal-s3' });
  const client =
    opts.client ??
    new S3Client({
      region: opts.region,
      ...(opts.target.endpoint ? { endpoint: opts.target.endpoint, forcePathStyle: true } : { followRegionRedirects: true }),
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 1, // retried here, with the spool's delays
    });
  const retry = opts.retry ?? { firstMs: RETRY_FIRST_MS, maxMs: RETRY_MAX_MS };
  const stats: ShipperStats = { shipped: 0, failures: 0, pending: 0 };
  /** Journals known to need an upload: the attempt count, the retry timer while one waits, and the first attempt's end. */
  const pending = new Map<string, { attempts: number; timer: NodeJS.Timeout | null; tried: Promise<void>; triedNow: () => void }>();
  const queue: string[] = [];
  const inFlight = new Set<Promise<void>>();
  /** Resolved once nothing is queued or in flight (shutdown). */
  const idleWaiters: (() => void)[] = [];
  const settleIdle = () => {
    if (queue.length === 0 && inFlight.size === 0) for (const wake of idleWaiters.splice(0)) wake();
  };
  let sweepTimer: NodeJS.Timeout | null = null;
  let closed = false;

  const count = () => (stats.pending = pending.size);

  /** Queues `path` (once); resolves after its first attempt. */
  const enqueue = (path: string): Promise<void> => {
    const known = pending.get(path);
    if (known) return known.tried;
    if (closed) return Promise.resolve();
    let triedNow = () => undefined as void;
    const tried = new Promise<void>((resolve) => (triedNow = resolve));
    pending.set(path, { attempts: 0, timer: null, tried, triedNow });
    count();
    queue.push(path);
    pump();
    return tried;
  };

  const pump = () => {
    while (!closed && inFlight.size < CONCURRENCY && queue.length > 0) {
      const path = queue.shift()!;
      const job = upload(path).finally(() => {
        inFlight.delete(job);
        pump();
        settleIdle();
      });
      inFlight.add(job);
    }
  };

  const upload = async (path: string): Promise<void> => {
    const entry = pending.get(path);
    if (!entry) return;
    const name = basename(path);
    try {
      const body = await readFile(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return null; // deleted meanwhile (retention): nothing to ship
        throw err;
      });
      if (body !== null) {
        await client.send(
          new PutObjectCommand({ Bucket: opts.target.bucket, Key: `${opts.target.prefix}${name}`, Body: body, ContentType: 'application/x-ndjson' }),
          { abortSignal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) },
        );
        await writeFile(`${path}${SHIPPED_SUFFIX}`, '', { mode: 0o600 });
        stats.shipped++;
        log.debug({ journal: name }, 'journal shipped');
      }
      pending.delete(path);
      count();
      entry.triedNow();
    } catch (err) {
      entry.triedNow();
      stats.failures++;
      entry.attempts++;
      const delayMs = Math.min(retry.maxMs, retry.firstMs * 2 ** (entry.attempts - 1));
      log.warn(
        { code: 'VET_E_JOURNAL', journal: name, attempts: entry.attempts, retryInMs: delayMs, err: { name: (err as Error).name, message: (err as Error).message } },
        'journal upload to S3 failed; retrying (the journal stays in JOURNAL_DIR meanwhile)',
      );
      if (closed) return;
      entry.timer = setTimeout(() => {
        entry.timer = null;
        queue.push(path);
        pump();
      }, delayMs);
      entry.timer.unref();
    }
  };

  /** Finished: the last line is the outcome, or the file has not changed for STALE_JOURNAL_MS. */
  const finished = async (path: string): Promise<boolean> => {
    const info = await stat(path);
    if (Date.now() - info.mtimeMs >= STALE_JOURNAL_MS) return true;
    const handle = await open(path, fsConstants.O_RDONLY);
    try {
      const length = Math.min(TAIL_BYTES, info.size);
      const { buffer, bytesRead } = await handle.read(Buffer.alloc(length), 0, length, info.size - length);
      const last = buffer.toString('utf8', 0, bytesRead).trimEnd().split('\n').at(-1) ?? '';
      // Whole and parsed: a line still being written (another process closing its journal) is not finished.
      return OUTCOME_LINE.test(last) && (JSON.parse(last) as { type?: unknown }).type === 'outcome';
    } finally {
      await handle.close();
    }
  };

  const sweep = async (): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(opts.dir);
    } catch (err) {
      log.warn({ code: 'VET_E_JOURNAL', err: { message: (err as Error).message } }, 'journal sweep could not read JOURNAL_DIR');
      return;
    }
    const shipped = new Set(names.filter((n) => n.endsWith(SHIPPED_SUFFIX)).map((n) => n.slice(0, -SHIPPED_SUFFIX.length)));
    const tried: Promise<void>[] = [];
    for (const name of names) {
      if (!name.endsWith('.jsonl') || shipped.has(name)) continue;
      const path = join(opts.dir, name);
      if (pending.has(path) || opts.isOpen(path)) continue;
      if (await finished(path).catch(() => false)) tried.push(enqueue(path));
    }
    await Promise.all(tried);
  };

  return {
    stats,
    closed: (path) => void enqueue(path),
    sweep,
    start() {
      void sweep();
      sweepTimer = setInterval(() => void sweep(), SWEEP_EVERY_MS);
      sweepTimer.unref();
    },
    async close(waitMs) {
      if (sweepTimer) clearInterval(sweepTimer);
      // Uploads queued or in flight get the wait; those waiting to be retried are left for the next start.
      const idle = new Promise<void>((resolve) => {
        idleWaiters.push(resolve);
        settleIdle();
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([idle, new Promise((resolve) => (timer = setTimeout(resolve, waitMs)))]);
      clearTimeout(timer);
      closed = true;
      for (const entry of pending.values()) {
        if (entry.timer) clearTimeout(entry.timer);
        entry.triedNow();
      }
      client.destroy();
    },
  };
}
