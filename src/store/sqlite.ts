/**
 * The embedded store (docs/store.md): one SQLite file through better-sqlite3, for a single engine
 * process. better-sqlite3 is synchronous; each method runs its statements in one transaction on
 * the calling tick and returns a settled promise (the contract is asynchronous for PostgreSQL).
 *
 * Durability: WAL journal with `synchronous=FULL`. In WAL mode a committed transaction is in the
 * -wal file before the commit returns, so a killed process (`kill -9`, OOM) loses nothing that
 * resolved even with NORMAL; FULL also fsyncs the WAL on every commit, so an OS crash or power loss
 * loses nothing that resolved either ("when recordFollowUp resolves, nothing can lose it"). The
 * cost is one fsync per write transaction, a few per call: negligible at a clinic's call volume.
 *
 * Permissions: the directory is created 0700 when missing; the database file and its -wal/-shm
 * are 0600 (they hold caller numbers, messages and transcripts).
 */
import Database from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { VetError } from '../errors.js';
import { SCHEMA_MIGRATIONS_SQLITE, pendingMigrations } from './migrations.js';
import {
  DELIVERY_COLUMNS,
  FOLLOW_UP_COLUMNS,
  MAX_ERROR_CHARS,
  SUMMARY_COLUMNS,
  deliveryValues,
  followUpValues,
  listLimit,
  listOrder,
  ms,
  noteToAppend,
  summaryValues,
  text,
  toDelivery,
  toFollowUp,
  toFollowUps,
  toSummary,
  truncateChars,
  type DeliveryRow,
  type FollowUpRow,
  type NoteRow,
  type SummaryRow,
} from './rows.js';
import type {
  CallSummary,
  CallSummaryInput,
  Delivery,
  DeliveryInput,
  FollowUp,
  FollowUpChange,
  FollowUpInput,
  FollowUpQuery,
  FollowUpStore,
} from './types.js';

/** How long a statement waits for another connection's write lock before failing with SQLITE_BUSY. */
export const SQLITE_BUSY_TIMEOUT_MS = 5_000;

const placeholders = (n: number): string => Array.from({ length: n }, () => '?').join(', ');

/** A settled promise from synchronous work: a throw becomes a rejection, never an exception at the call site. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

/** The directory 0700 when this creates it; the file created (empty) 0600 before SQLite opens it. */
function prepareFile(path: string): void {
  const dir = dirname(path);
  const created = mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) chmodSync(dir, 0o700); // the umask may have narrowed it, never widened; be exact
  closeSync(openSync(path, 'a', 0o600));
}

/** 0600 on the database and whichever of its -wal/-shm exist (SQLite gives them the database's mode; this makes sure). */
function restrictFiles(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    if (existsSync(file)) chmodSync(file, 0o600);
  }
}

/**
 * Opens (creating when missing) the SQLite database at `path`, or an in-memory one for
 * `:memory:`, and applies pending migrations. Failure: VetError VET_E_STORE.
 */
export function openSqliteStore(path: string): Promise<FollowUpStore> {
  return settle(() => {
    const memory = path === ':memory:';
    let db: Database.Database;
    try {
      if (!memory) prepareFile(path);
      db = new Database(path, { timeout: SQLITE_BUSY_TIMEOUT_MS });
    } catch (err) {
      throw new VetError(
        'VET_E_STORE',
        `could not open the SQLite database ${path} (${(err as Error).message}): check that its directory exists or can be created and that the engine's user can write to it`,
        { cause: err },
      );
    }
    try {
      if (!memory) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
      db.pragma('foreign_keys = ON');
      migrate(db);
      if (!memory) restrictFiles(path);
    } catch (err) {
      db.close();
      if (err instanceof VetError) throw err;
      throw new VetError('VET_E_STORE', `could not prepare the SQLite database ${path} (${(err as Error).message}): check that it is a Vetline database and not damaged`, {
        cause: err,
      });
    }
    return new SqliteStore(db);
  });
}

function migrate(db: Database.Database): void {
  db.transaction(() => {
    db.exec(SCHEMA_MIGRATIONS_SQLITE);
    const applied = db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[];
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of pendingMigrations(applied)) {
      db.exec(m.sqlite);
      record.run(m.version, m.name, Date.now());
    }
  }).immediate();
}

const DUE_WHERE = `(status = 'pending' AND next_attempt_at <= @now) OR (status = 'held' AND hold_until <= @now)`;

class SqliteStore implements FollowUpStore {
  readonly kind = 'sqlite' as const;
  readonly #db: Database.Database;
  readonly #s: ReturnType<typeof statements>;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#s = statements(db);
  }

  recordFollowUp(followUp: FollowUpInput, deliveries: readonly DeliveryInput[]): Promise<void> {
    return settle(() =>
      this.#db
        .transaction(() => {
          // Idempotent per follow-up id: a retried record (same id) changes nothing.
          if (this.#s.insertFollowUp.run(...followUpValues(followUp)).changes === 0) return;
          for (const d of deliveries) this.#s.insertDelivery.run(...deliveryValues(d));
        })
        .immediate(),
    );
  }

  finishCall(summary: CallSummaryInput, deliveries: readonly DeliveryInput[], now: number): Promise<void> {
    return settle(() =>
      this.#db
        .transaction(() => {
          if (this.#s.insertSummary.run(...summaryValues(summary)).changes === 0) return; // finished before
          for (const d of deliveries) this.#s.insertDelivery.run(...deliveryValues(d));
          this.#s.releaseCall.run(ms(now), summary.callSid);
        })
        .immediate(),
    );
  }

  getFollowUp(id: string): Promise<FollowUp | null> {
    return settle(() => this.#db.transaction(() => this.#readFollowUp(id)).deferred());
  }

  #readFollowUp(id: string): FollowUp | null {
    const row = this.#s.getFollowUp.get(id) as FollowUpRow | undefined;
    if (!row) return null;
    return toFollowUp(row, this.#s.notesOf.all(id) as NoteRow[]);
  }

  listFollowUps(query: FollowUpQuery): Promise<FollowUp[]> {
    return settle(() => {
      const where: string[] = [];
      const params: unknown[] = [];
      const add = (cond: string, value: unknown) => {
        where.push(cond);
        params.push(value);
      };
      if (query.clinicId !== null) add('clinic_id = ?', query.clinicId);
      if (query.status !== undefined) add('status = ?', query.status);
      if (query.type !== undefined) add('type = ?', query.type);
      if (query.from !== undefined) add('created_at >= ?', ms(query.from));
      if (query.to !== undefined) add('created_at < ?', ms(query.to));
      params.push(listLimit(query));
      const sql = `SELECT ${FOLLOW_UP_COLUMNS} FROM follow_ups ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${listOrder('id')} LIMIT ?`;
      return this.#db
        .transaction(() => {
          const rows = this.#db.prepare(sql).all(...params) as FollowUpRow[];
          if (rows.length === 0) return [];
          const notes = this.#s.notesOfMany.all(JSON.stringify(rows.map((r) => r.id))) as NoteRow[];
          return toFollowUps(rows, notes);
        })
        .deferred();
    });
  }

  updateFollowUp(id: string, clinicId: string | null, change: FollowUpChange, now: number): Promise<FollowUp | null> {
    return settle(() => {
      const note = noteToAppend(change.note);
      return this.#db
        .transaction(() => {
          const row = this.#s.getFollowUp.get(id) as FollowUpRow | undefined;
          if (!row || (clinicId !== null && row.clinic_id !== clinicId)) return null;
          const status = change.status ?? row.status;
          const handledBy = change.status !== undefined && change.handledBy !== undefined ? text(change.handledBy) : row.handled_by;
          this.#s.updateFollowUp.run(status, handledBy, ms(now), id);
          if (note !== null) this.#s.insertNote.run(id, ms(now), change.handledBy === undefined ? 'staff' : text(change.handledBy), note);
          return this.#readFollowUp(id);
        })
        .immediate();
    });
  }

  getCallSummary(callSid: string): Promise<CallSummary | null> {
    return settle(() => {
      const row = this.#s.getSummary.get(callSid) as SummaryRow | undefined;
      return row ? toSummary(row) : null;
    });
  }

  claimDueDeliveries(now: number, limit: number, leaseMs: number): Promise<Delivery[]> {
    return settle(() => {
      const max = Math.floor(limit);
      if (!(max > 0)) return [];
      const t = ms(now);
      const leasedUntil = ms(now + leaseMs);
      return this.#db
        .transaction(() => {
          const rows = this.#s.due.all({ now: t, limit: max }) as DeliveryRow[];
          for (const row of rows) this.#s.lease.run(leasedUntil, row.id);
          return rows.map((row) => toDelivery({ ...row, status: 'pending', next_attempt_at: leasedUntil }));
        })
        .immediate();
    });
  }

  markDelivered(id: string, now: number): Promise<void> {
    return settle(() => {
      this.#s.delivered.run(ms(now), id);
    });
  }

  markAttemptFailed(id: string, error: string, retryAt: number | null, now: number): Promise<void> {
    return settle(() => {
      const lastError = text(truncateChars(error, MAX_ERROR_CHARS));
      if (retryAt === null) this.#s.failed.run(lastError, ms(now), id);
      else this.#s.retry.run(lastError, ms(retryAt), id);
    });
  }

  deliveriesFor(subjectId: string): Promise<Delivery[]> {
    return settle(() => (this.#s.deliveriesFor.all(subjectId) as DeliveryRow[]).map(toDelivery));
  }

  releaseHeld(now: number): Promise<number> {
    return settle(() => this.#s.releaseAll.run(ms(now)).changes);
  }

  prune(clinicId: string, before: number): Promise<number> {
    return settle(() => {
      const b = ms(before);
      return this.#db
        .transaction(() => {
          this.#s.pruneNotes.run(clinicId, b);
          return this.#s.pruneFollowUps.run(clinicId, b).changes + this.#s.pruneSummaries.run(clinicId, b).changes + this.#s.pruneDeliveries.run(clinicId, b).changes;
        })
        .immediate();
    });
  }

  close(): Promise<void> {
    return settle(() => {
      if (this.#db.open) this.#db.close();
    });
  }
}

function statements(db: Database.Database) {
  return {
    insertFollowUp: db.prepare(`INSERT INTO follow_ups (${FOLLOW_UP_COLUMNS}) VALUES (${placeholders(18)}) ON CONFLICT (id) DO NOTHING`),
    insertDelivery: db.prepare(`INSERT INTO deliveries (${DELIVERY_COLUMNS}) VALUES (${placeholders(14)}) ON CONFLICT (id) DO NOTHING`),
    insertSummary: db.prepare(`INSERT INTO call_summaries (${SUMMARY_COLUMNS}) VALUES (${placeholders(10)}) ON CONFLICT (call_sid) DO NOTHING`),
    releaseCall: db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE call_sid = ? AND status = 'held'`),
    releaseAll: db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE status = 'held'`),
    getFollowUp: db.prepare(`SELECT ${FOLLOW_UP_COLUMNS} FROM follow_ups WHERE id = ?`),
    notesOf: db.prepare('SELECT follow_up_id, noted_at, noted_by, body FROM follow_up_notes WHERE follow_up_id = ? ORDER BY id'),
    notesOfMany: db.prepare('SELECT follow_up_id, noted_at, noted_by, body FROM follow_up_notes WHERE follow_up_id IN (SELECT value FROM json_each(?)) ORDER BY id'),
    updateFollowUp: db.prepare('UPDATE follow_ups SET status = ?, handled_by = ?, updated_at = ? WHERE id = ?'),
    insertNote: db.prepare('INSERT INTO follow_up_notes (follow_up_id, noted_at, noted_by, body) VALUES (?, ?, ?, ?)'),
    getSummary: db.prepare(`SELECT ${SUMMARY_COLUMNS} FROM call_summaries WHERE call_sid = ?`),
    due: db.prepare(`SELECT ${DELIVERY_COLUMNS} FROM deliveries WHERE ${DUE_WHERE} ORDER BY next_attempt_at, created_at, id LIMIT @limit`),
    lease: db.prepare(`UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE id = ?`),
    delivered: db.prepare(`UPDATE deliveries SET attempts = attempts + 1, status = 'delivered', delivered_at = ? WHERE id = ? AND status = 'pending'`),
    failed: db.prepare(`UPDATE deliveries SET attempts = attempts + 1, status = 'failed', last_error = ?, next_attempt_at = ? WHERE id = ? AND status = 'pending'`),
    retry: db.prepare(`UPDATE deliveries SET attempts = attempts + 1, status = 'pending', last_error = ?, next_attempt_at = ? WHERE id = ? AND status = 'pending'`),
    deliveriesFor: db.prepare(`SELECT ${DELIVERY_COLUMNS} FROM deliveries WHERE subject_id = ? ORDER BY created_at, id`),
    pruneNotes: db.prepare('DELETE FROM follow_up_notes WHERE follow_up_id IN (SELECT id FROM follow_ups WHERE clinic_id = ? AND created_at < ?)'),
    pruneFollowUps: db.prepare('DELETE FROM follow_ups WHERE clinic_id = ? AND created_at < ?'),
    pruneSummaries: db.prepare('DELETE FROM call_summaries WHERE clinic_id = ? AND ended_at < ?'),
    pruneDeliveries: db.prepare(`DELETE FROM deliveries WHERE clinic_id = ? AND created_at < ? AND status IN ('delivered', 'failed')`),
  };
}
