/**
 * The call journal writer (docs/journal.md): one append-only JSON Lines file per call in
 * JOURNAL_DIR, `<start ISO time>_<CallSid>.jsonl`.
 *
 * Never in the way of a call: lines are buffered in memory and appended in the background (every
 * `flushIntervalMs`, or at once past `flushBytes`), through one file handle per call; every line is
 * complete JSON ending in a newline, so a crash loses at most the unflushed tail. A failed write is
 * logged once per call and counted, and the journal of that call stops; the call carries on. A
 * journal larger than `maxBytes` gets a `truncated` line and stops taking events (the outcome line
 * is still written).
 *
 * An append is one synchronous write(2) to the page cache: ~6 µs of the event loop, where handing
 * it to libuv's thread pool and taking its completion cost ~30 µs (at 400 calls the appends fell
 * from 8.3 % to 3.3 % of the engine's busy time; docs/performance.md). The price: a disk that stops
 * taking writes now stalls the event loop, where before it filled the thread pool (which also
 * serves host-name lookups and the log's writes). JOURNAL_DIR belongs on a local disk
 * (docs/operations.md). Opening the file and the link check stay asynchronous.
 */
import { constants as fsConstants, writeSync } from 'node:fs';
import { access, chmod, mkdir, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { EventObject } from 'xstate';
import type { CallInput, Outcome } from '../../machines/call/call.types.js';
import {
  encodeEvent,
  encodeHeader,
  encodeOutcome,
  encodeTruncated,
  JOURNAL_VERSION,
  type JournalRecordSummary,
} from './format.js';

export interface JournalOptions {
  dir: string;
  engineVersion: string;
  logger: Logger;
  /** Per-call bound; past it a `truncated` line and no more events. Default 5 MB. */
  maxBytes?: number;
  /**
   * Background flush period while lines are buffered. Default 250 ms (DEFAULT_FLUSH_MS): each
   * flush is one file operation per open journal, and at 50 ms those appends were the engine's
   * largest single cost with hundreds of calls (docs/performance.md).
   */
  flushIntervalMs?: number;
  /** Buffered bytes that trigger an immediate flush (still after the event that crossed it). Default 64 KiB. */
  flushBytes?: number;
  /** A call's journal file is complete and closed (JOURNAL_S3_URL ships it: ./s3-shipper.ts). */
  onClosed?: (path: string) => void;
}

export interface JournalStats {
  opened: number;
  /** Journals currently open (calls in progress, or closing). */
  open: number;
  linesWritten: number;
  bytesWritten: number;
  flushes: number;
  /** Failed opens/appends (each disables that call's journal). */
  writeErrors: number;
  /** Lines a failed journal lacks: those in flight at the failure and every later event and outcome. */
  linesLost: number;
  /** Journals that hit `maxBytes`. */
  truncated: number;
}

export interface OpenCall {
  callSid: string;
  tenantId: string;
  /** ISO time the call started. */
  startedAt: string;
  providers: Record<string, string>;
  input: CallInput;
}

/** One call's journal. Every method returns at once; I/O happens in the background. */
export interface CallJournal {
  readonly path: string;
  /** An event the call actor received; `timer`: it was the actor's own delayed event. */
  event<E extends EventObject>(t: number, event: E, timer: boolean): void;
  /** Writes the outcome line, flushes and closes. Later calls are ignored. */
  end(t: number, outcome: Outcome, record: JournalRecordSummary): void;
  /** Resolves once everything accepted so far is on disk (or given up on). */
  flush(): Promise<void>;
}

export interface JournalFactory {
  readonly dir: string;
  readonly stats: Readonly<JournalStats>;
  open(call: OpenCall): CallJournal;
  /** Whether this process still writes the journal at `path`. */
  isOpen(path: string): boolean;
  /** Flush every open journal (shutdown). */
  flushAll(): Promise<void>;
}

const DEFAULT_MAX_BYTES = 5 * 1024 * 1024;
/**
 * Background append period: a crash loses at most this much of the tail. 50 ms cost one file write
 * per call 20 times a second (15 % of the event loop at 300 calls); 250 ms keeps the loss small.
 */
const DEFAULT_FLUSH_MS = 250;
/** Kept below maxBytes for the `truncated` and outcome lines. */
const TAIL_RESERVE = 16 * 1024;
/** How often an open journal checks that its file still has a name (one fstat; and at the call's end). */
const LINK_CHECK_MS = 5_000;

/** Beside a journal its S3 copy was acknowledged for: `<journal>.jsonl.shipped`, empty (./s3-shipper.ts). */
export const SHIPPED_SUFFIX = '.shipped';

/** `2025-06-01T14:03:07.123Z` + `CA…` → `2025-06-01T14-03-07.123Z_CA….jsonl` (portable, sorts by start). */
export function journalFileName(startedAt: string, callSid: string): string {
  return `${startedAt.replace(/:/g, '-')}_${callSid.replace(/[^A-Za-z0-9_-]/g, '_')}.jsonl`;
}

/** Journals hold what callers said: files 0600, directories 0700 (the umask can only narrow these). */
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/**
 * Creates JOURNAL_DIR if needed (0700, parents included) and checks it is writable. Rejects when it
 * is not: the caller decides whether to run without a journal (main.ts does, with a warning). An
 * existing directory others may read is left as it is (it may be a shared mount) but reported.
 */
export async function createJournalFactory(opts: JournalOptions): Promise<JournalFactory> {
  const dir = resolve(opts.dir);
  const created = await mkdir(dir, { recursive: true, mode: DIR_MODE });
  if (created !== undefined) {
    // Exactly 0700 from the first directory created down to JOURNAL_DIR, whatever the umask took away.
    for (let d = dir; ; d = dirname(d)) {
      await chmod(d, DIR_MODE);
      if (d === resolve(created) || d === dirname(d)) break;
    }
  } else {
    const mode = (await stat(dir)).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      opts.logger.warn(
        { code: 'VET_E_JOURNAL', journalDir: dir, mode: mode.toString(8) },
        'JOURNAL_DIR can be read by other users of this machine (journals hold what callers said): chmod 700 it',
      );
    }
  }
  await access(dir, fsConstants.W_OK);
  return new Journals(dir, opts);
}

class Journals implements JournalFactory {
  readonly stats: JournalStats = { opened: 0, open: 0, linesWritten: 0, bytesWritten: 0, flushes: 0, writeErrors: 0, linesLost: 0, truncated: 0 };
  private readonly live = new Set<FileJournal>();

  constructor(
    readonly dir: string,
    readonly opts: JournalOptions,
  ) {}

  open(call: OpenCall): CallJournal {
    const journal = new FileJournal(this, join(this.dir, journalFileName(call.startedAt, call.callSid)), call);
    this.live.add(journal);
    this.stats.opened++;
    this.stats.open = this.live.size;
    return journal;
  }

  closed(journal: FileJournal): void {
    this.live.delete(journal);
    this.stats.open = this.live.size;
    this.opts.onClosed?.(journal.path);
  }

  isOpen(path: string): boolean {
    for (const journal of this.live) if (journal.path === path) return true;
    return false;
  }

  async flushAll(): Promise<void> {
    await Promise.all([...this.live].map((j) => j.flush()));
  }
}

class FileJournal implements CallJournal {
  private buffer: string[] = [];
  private bufferedBytes = 0;
  /** Bytes accepted (buffered or written): what the size bound counts. */
  private acceptedBytes = 0;
  private droppedEvents = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Serializes opens, appends and the close. Never rejects. */
  private chain: Promise<void> = Promise.resolve();
  private handle: FileHandle | null = null;
  private failed = false;
  private outcomeLost = false;
  /** performance.now() of the last check that the file is still linked (see `checkLinked`). */
  private linkCheckedAt = Number.NEGATIVE_INFINITY;
  private truncated = false;
  private ended = false;
  private readonly log: Logger;
  private readonly maxBytes: number;
  private readonly callSid: string;

  constructor(
    private readonly owner: Journals,
    readonly path: string,
    call: OpenCall,
  ) {
    this.log = owner.opts.logger;
    this.callSid = call.callSid;
    this.maxBytes = owner.opts.maxBytes ?? DEFAULT_MAX_BYTES;
    this.push(
      encodeHeader({
        v: JOURNAL_VERSION,
        type: 'header',
        callSid: call.callSid,
        tenantId: call.tenantId,
        engineVersion: owner.opts.engineVersion,
        providers: call.providers,
        startedAt: call.startedAt,
        input: call.input,
      }),
    );
  }

  event<E extends EventObject>(t: number, event: E, timer: boolean): void {
    if (this.failed) {
      this.owner.stats.linesLost++; // every event of the call after the failure is a line the journal lacks
      return;
    }
    if (this.ended) return;
    if (this.truncated) {
      this.droppedEvents++;
      return;
    }
    let line: string;
    try {
      line = encodeEvent(t, event, timer);
    } catch (err) {
      // Not expected (events are plain data); one bad event must not end the journal or the call.
      this.log.warn({ err, eventType: event.type }, 'journal: event could not be encoded');
      line = JSON.stringify({ t, type: event.type, unencodable: true });
    }
    const bytes = Buffer.byteLength(line) + 1;
    if (this.acceptedBytes + bytes > this.maxBytes - TAIL_RESERVE) {
      this.truncated = true;
      this.droppedEvents++;
      this.owner.stats.truncated++;
      this.log.warn({ callSid: this.callSid, maxBytes: this.maxBytes }, 'journal: size limit reached, later events are not journaled');
      this.push(encodeTruncated(t, this.maxBytes));
      return;
    }
    this.push(line, bytes);
  }

  end(t: number, outcome: Outcome, record: JournalRecordSummary): void {
    if (this.failed && !this.outcomeLost) {
      this.outcomeLost = true;
      this.owner.stats.linesLost++;
    }
    if (this.ended) return;
    this.push(encodeOutcome(t, outcome, record, this.droppedEvents));
    this.ended = true;
    void this.flush();
    this.chain = this.chain.then(() => this.close());
  }

  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.buffer.length > 0) {
      const lines = this.buffer.length;
      const data = this.buffer.join('');
      this.buffer = [];
      this.bufferedBytes = 0;
      this.chain = this.chain.then(() => this.append(data, lines));
    }
    return this.chain;
  }

  /** `bytes`: the line's UTF-8 length with its newline, when the caller has it already. */
  private push(line: string, bytes = Buffer.byteLength(line) + 1): void {
    if (this.failed) {
      this.owner.stats.linesLost++;
      return;
    }
    this.buffer.push(`${line}\n`);
    this.bufferedBytes += bytes;
    this.acceptedBytes += bytes;
    if (this.bufferedBytes >= (this.owner.opts.flushBytes ?? 64 * 1024)) void this.flush();
    else if (!this.timer && !this.ended) {
      this.timer = setTimeout(() => void this.flush(), this.owner.opts.flushIntervalMs ?? DEFAULT_FLUSH_MS);
      this.timer.unref();
    }
  }

  private async append(data: string, lines: number): Promise<void> {
    if (this.failed) {
      this.owner.stats.linesLost += lines;
      return;
    }
    try {
      this.handle ??= await open(this.path, 'a', FILE_MODE);
      const bytes = Buffer.from(data);
      for (let off = 0; off < bytes.length; ) off += writeSync(this.handle.fd, bytes, off); // a short write goes on
      await this.checkLinked();
      this.owner.stats.linesWritten += lines;
      this.owner.stats.bytesWritten += bytes.length;
      this.owner.stats.flushes++;
    } catch (err) {
      this.fail(err, lines);
    }
  }

  /**
   * Appends to a file whose directory was removed keep succeeding (into an unlinked inode): the
   * journal is gone while every write "works". Checked with fstat at most once per
   * LINK_CHECK_MS and on the call's last append; an unlinked file fails like a write error. Lines
   * appended between the removal and the check count as written.
   */
  private async checkLinked(): Promise<void> {
    const now = performance.now();
    if (!this.ended && now - this.linkCheckedAt < LINK_CHECK_MS) return;
    this.linkCheckedAt = now;
    const stat = await this.handle?.stat();
    if (stat?.nlink === 0) throw Object.assign(new Error('journal file was removed (JOURNAL_DIR deleted?)'), { code: 'ENOENT' });
  }

  private fail(err: unknown, lines: number): void {
    this.failed = true;
    this.owner.stats.writeErrors++;
    this.owner.stats.linesLost += lines + this.buffer.length;
    this.buffer = [];
    this.bufferedBytes = 0;
    // Once per call: the journal is off for the rest of it.
    this.log.warn({ err, code: 'VET_E_JOURNAL', callSid: this.callSid, journal: this.path }, 'journal write failed; this call is no longer journaled');
    if (this.ended) return;
    this.ended = true;
    this.chain = this.chain.then(() => this.close());
  }

  private async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    try {
      await handle?.close();
    } catch (err) {
      this.log.warn({ err }, 'journal: close failed');
    }
    this.owner.closed(this);
  }
}

/**
 * `createJournalFactory`, or null with a warning when JOURNAL_DIR cannot be created or written:
 * the engine then runs without journals (start-up does not fail).
 */
export async function openJournalDir(opts: JournalOptions): Promise<JournalFactory | null> {
  try {
    return await createJournalFactory(opts);
  } catch (err) {
    opts.logger.warn({ err, code: 'VET_E_JOURNAL', journalDir: opts.dir }, 'JOURNAL_DIR is not writable: running without call journals');
    return null;
  }
}
