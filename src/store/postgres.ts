/**
 * The shared store (docs/store.md): PostgreSQL through a small `pg` pool, for several engine
 * instances on one database. Same behaviour as the SQLite store (test/store/store.contract.ts runs
 * against both). Times are BIGINT epoch milliseconds, parsed to numbers by a type parser local to
 * this pool (pg's global parsers are left alone). The outbox claim uses `FOR UPDATE SKIP LOCKED`, so
 * instances draining it at once never take the same row. A commit returns after PostgreSQL has
 * flushed it (`synchronous_commit` on, the server default).
 */
import pg from 'pg';
import { VetError } from '../errors.js';
import { PG_MIGRATION_LOCK, SCHEMA_MIGRATIONS_POSTGRES, pendingMigrations } from './migrations.js';
import {
  DELIVERY_COLUMNS,
  FOLLOW_UP_COLUMNS,
  MAX_ERROR_CHARS,
  SUMMARY_COLUMNS,
  byDueOrder,
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

export interface PostgresStoreOptions {
  /** Pool size per instance. Default 4: the desk and the outbox are light, and servers cap connections. */
  max?: number;
}

const INT8_OID = 20;
type Parser = (value: string) => unknown;
/** BIGINT (epoch ms, counts) as a JavaScript number, for this pool only. */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): Parser =>
    oid === INT8_OID && format !== 'binary' ? Number : (pg.types.getTypeParser(oid, format) as Parser)) as pg.CustomTypesConfig['getTypeParser'],
};

/** The URL with its password replaced by `***` (for messages and logs). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    u.password = '***';
    return u.toString();
  } catch {
    // Not parseable as a URL (odd characters in the password): blank whatever sits between "user:" and "@".
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
  }
}

/** An error's code and message; Node's connect errors to several addresses are AggregateErrors with an empty message. */
function describeError(err: unknown): string {
  const e = err instanceof AggregateError && err.errors.length > 0 ? (err.errors[0] as unknown) : err;
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  const parts = [typeof code === 'string' ? code : '', e.message].filter((p) => p !== '');
  return parts.join(': ') || e.name;
}

/**
 * Connects to PostgreSQL at `url` (postgres:// or postgresql://), applies pending migrations under
 * an advisory lock, and returns the store. Failure: VetError VET_E_STORE (password never shown).
 */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<FollowUpStore> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 4,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
    statement_timeout: 30_000,
    idle_in_transaction_session_timeout: 60_000,
    application_name: 'vetline',
    types,
  });
  // An idle client whose connection dies emits here; without a listener the process would crash.
  // Nothing to do: the pool drops that client, and the next query reports any lasting outage.
  pool.on('error', () => {});
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    await pool.end().catch(() => {});
    throw new VetError(
      'VET_E_STORE',
      `could not connect to PostgreSQL at ${redactUrl(url)} (${describeError(err)}): check that the server is running and reachable, and the host, port, user, password and database name in DATABASE_URL`,
      { cause: err },
    );
  }
  try {
    await migrate(client);
    client.release();
  } catch (err) {
    client.release(true);
    await pool.end().catch(() => {});
    if (err instanceof VetError) throw err;
    throw new VetError('VET_E_STORE', `could not migrate the PostgreSQL database at ${redactUrl(url)} (${describeError(err)}): check that the user may create tables in it`, {
      cause: err,
    });
  }
  return new PostgresStore(pool);
}

async function migrate(client: pg.PoolClient): Promise<void> {
  await client.query('BEGIN');
  try {
    // Held until COMMIT: a second instance starting now waits here, then finds nothing to do.
    await client.query('SELECT pg_advisory_xact_lock($1)', [PG_MIGRATION_LOCK]);
    await client.query(SCHEMA_MIGRATIONS_POSTGRES);
    const applied = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    for (const m of pendingMigrations(applied.rows.map((r) => r.version))) {
      await client.query(m.postgres);
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

const placeholders = (n: number): string => Array.from({ length: n }, (_, i) => `$${i + 1}`).join(', ');

/** Follow-up columns plus its notes (oldest first) as JSON, read in one statement (one snapshot). */
const WITH_NOTES = `${FOLLOW_UP_COLUMNS}, (
  SELECT COALESCE(json_agg(json_build_object('follow_up_id', n.follow_up_id, 'noted_at', n.noted_at, 'noted_by', n.noted_by, 'body', n.body) ORDER BY n.id), '[]'::json)
  FROM follow_up_notes n WHERE n.follow_up_id = follow_ups.id
) AS notes_json`;

type FollowUpWithNotes = FollowUpRow & { notes_json: NoteRow[] };

function withNotes(row: FollowUpWithNotes): FollowUp {
  const { notes_json: notes, ...rest } = row;
  return toFollowUp(rest, notes);
}

const SQL = {
  insertFollowUp: `INSERT INTO follow_ups (${FOLLOW_UP_COLUMNS}) VALUES (${placeholders(18)}) ON CONFLICT (id) DO NOTHING`,
  insertDelivery: `INSERT INTO deliveries (${DELIVERY_COLUMNS}) VALUES (${placeholders(14)}) ON CONFLICT (id) DO NOTHING`,
  insertSummary: `INSERT INTO call_summaries (${SUMMARY_COLUMNS}) VALUES (${placeholders(10)}) ON CONFLICT (call_sid) DO NOTHING`,
  releaseCall: `UPDATE deliveries SET status = 'pending', next_attempt_at = $1 WHERE call_sid = $2 AND status = 'held'`,
  releaseAll: `UPDATE deliveries SET status = 'pending', next_attempt_at = $1 WHERE status = 'held'`,
  getFollowUp: `SELECT ${WITH_NOTES} FROM follow_ups WHERE id = $1`,
  lockFollowUp: 'SELECT clinic_id, status, handled_by FROM follow_ups WHERE id = $1 FOR UPDATE',
  updateFollowUp: 'UPDATE follow_ups SET status = $1, handled_by = $2, updated_at = $3 WHERE id = $4',
  insertNote: 'INSERT INTO follow_up_notes (follow_up_id, noted_at, noted_by, body) VALUES ($1, $2, $3, $4)',
  getSummary: `SELECT ${SUMMARY_COLUMNS} FROM call_summaries WHERE call_sid = $1`,
  // Locked rows (another claimer's, in flight) are skipped, not waited for; a row another claimer
  // leased and committed meanwhile no longer matches (PostgreSQL re-checks the WHERE on the latest version).
  claim: `WITH due AS (
    SELECT id, next_attempt_at AS claim_due FROM deliveries
    WHERE (status = 'pending' AND next_attempt_at <= $1) OR (status = 'held' AND hold_until <= $1)
    ORDER BY next_attempt_at, created_at, id COLLATE "C"
    LIMIT $2
    FOR UPDATE SKIP LOCKED
  )
  UPDATE deliveries d SET status = 'pending', next_attempt_at = $3
  FROM due WHERE d.id = due.id
  RETURNING d.*, due.claim_due`,
  delivered: `UPDATE deliveries SET attempts = attempts + 1, status = 'delivered', delivered_at = $1 WHERE id = $2 AND status = 'pending'`,
  failed: `UPDATE deliveries SET attempts = attempts + 1, status = 'failed', last_error = $1, next_attempt_at = $2 WHERE id = $3 AND status = 'pending'`,
  retry: `UPDATE deliveries SET attempts = attempts + 1, status = 'pending', last_error = $1, next_attempt_at = $2 WHERE id = $3 AND status = 'pending'`,
  deliveriesFor: `SELECT ${DELIVERY_COLUMNS} FROM deliveries WHERE subject_id = $1 ORDER BY created_at, id COLLATE "C"`,
  pruneNotes: 'DELETE FROM follow_up_notes WHERE follow_up_id IN (SELECT id FROM follow_ups WHERE clinic_id = $1 AND created_at < $2)',
  pruneFollowUps: 'DELETE FROM follow_ups WHERE clinic_id = $1 AND created_at < $2',
  pruneSummaries: 'DELETE FROM call_summaries WHERE clinic_id = $1 AND ended_at < $2',
  pruneDeliveries: `DELETE FROM deliveries WHERE clinic_id = $1 AND created_at < $2 AND status IN ('delivered', 'failed')`,
} as const;

class PostgresStore implements FollowUpStore {
  readonly kind = 'postgres' as const;
  readonly #pool: pg.Pool;
  #closed = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** `fn` inside BEGIN … COMMIT on one pooled client; rolled back when it throws. */
  async #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await c.query('BEGIN');
      const result = await fn(c);
      await c.query('COMMIT');
      return result;
    } catch (err) {
      await c.query('ROLLBACK').catch((e: unknown) => {
        broken = e instanceof Error ? e : new Error(String(e)); // the connection is unusable: the pool drops it
      });
      throw err;
    } finally {
      c.release(broken);
    }
  }

  async recordFollowUp(followUp: FollowUpInput, deliveries: readonly DeliveryInput[]): Promise<void> {
    await this.#tx(async (c) => {
      // Idempotent per follow-up id: a retried record (same id) changes nothing.
      if ((await c.query(SQL.insertFollowUp, followUpValues(followUp))).rowCount === 0) return;
      for (const d of deliveries) await c.query(SQL.insertDelivery, deliveryValues(d));
    });
  }

  async finishCall(summary: CallSummaryInput, deliveries: readonly DeliveryInput[], now: number): Promise<void> {
    await this.#tx(async (c) => {
      if ((await c.query(SQL.insertSummary, summaryValues(summary))).rowCount === 0) return; // finished before
      for (const d of deliveries) await c.query(SQL.insertDelivery, deliveryValues(d));
      await c.query(SQL.releaseCall, [ms(now), summary.callSid]);
    });
  }

  async getFollowUp(id: string): Promise<FollowUp | null> {
    const { rows } = await this.#pool.query<FollowUpWithNotes>(SQL.getFollowUp, [id]);
    return rows[0] ? withNotes(rows[0]) : null;
  }

  async listFollowUps(query: FollowUpQuery): Promise<FollowUp[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (cond: (p: string) => string, value: unknown) => {
      params.push(value);
      where.push(cond(`$${params.length}`));
    };
    if (query.clinicId !== null) add((p) => `clinic_id = ${p}`, query.clinicId);
    if (query.status !== undefined) add((p) => `status = ${p}`, query.status);
    if (query.type !== undefined) add((p) => `type = ${p}`, query.type);
    if (query.from !== undefined) add((p) => `created_at >= ${p}`, ms(query.from));
    if (query.to !== undefined) add((p) => `created_at < ${p}`, ms(query.to));
    params.push(listLimit(query));
    const sql = `SELECT ${WITH_NOTES} FROM follow_ups ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${listOrder('id COLLATE "C"')} LIMIT $${params.length}`;
    const { rows } = await this.#pool.query<FollowUpWithNotes>(sql, params);
    return rows.map(withNotes);
  }

  async updateFollowUp(id: string, clinicId: string | null, change: FollowUpChange, now: number): Promise<FollowUp | null> {
    const note = noteToAppend(change.note);
    return this.#tx(async (c) => {
      const { rows } = await c.query<{ clinic_id: string; status: string; handled_by: string | null }>(SQL.lockFollowUp, [id]);
      const row = rows[0];
      if (!row || (clinicId !== null && row.clinic_id !== clinicId)) return null;
      const status = change.status ?? row.status;
      const handledBy = change.status !== undefined && change.handledBy !== undefined ? text(change.handledBy) : row.handled_by;
      await c.query(SQL.updateFollowUp, [status, handledBy, ms(now), id]);
      if (note !== null) await c.query(SQL.insertNote, [id, ms(now), change.handledBy === undefined ? 'staff' : text(change.handledBy), note]);
      const updated = await c.query<FollowUpWithNotes>(SQL.getFollowUp, [id]);
      return updated.rows[0] ? withNotes(updated.rows[0]) : null;
    });
  }

  async getCallSummary(callSid: string): Promise<CallSummary | null> {
    const { rows } = await this.#pool.query<SummaryRow>(SQL.getSummary, [callSid]);
    return rows[0] ? toSummary(rows[0]) : null;
  }

  async claimDueDeliveries(now: number, limit: number, leaseMs: number): Promise<Delivery[]> {
    const max = Math.floor(limit);
    if (!(max > 0)) return [];
    const { rows } = await this.#pool.query<DeliveryRow & { claim_due: number }>(SQL.claim, [ms(now), max, ms(now + leaseMs)]);
    // RETURNING has no order: restore the claim order (oldest due first).
    return rows
      .map(({ claim_due: due, ...row }) => ({ due, row }))
      .sort(byDueOrder)
      .map(({ row }) => toDelivery(row));
  }

  async markDelivered(id: string, now: number): Promise<void> {
    await this.#pool.query(SQL.delivered, [ms(now), id]);
  }

  async markAttemptFailed(id: string, error: string, retryAt: number | null, now: number): Promise<void> {
    const lastError = text(truncateChars(error, MAX_ERROR_CHARS));
    if (retryAt === null) await this.#pool.query(SQL.failed, [lastError, ms(now), id]);
    else await this.#pool.query(SQL.retry, [lastError, ms(retryAt), id]);
  }

  async deliveriesFor(subjectId: string): Promise<Delivery[]> {
    const { rows } = await this.#pool.query<DeliveryRow>(SQL.deliveriesFor, [subjectId]);
    return rows.map(toDelivery);
  }

  async releaseHeld(now: number): Promise<number> {
    return (await this.#pool.query(SQL.releaseAll, [ms(now)])).rowCount ?? 0;
  }

  async prune(clinicId: string, before: number): Promise<number> {
    const params = [clinicId, ms(before)];
    return this.#tx(async (c) => {
      await c.query(SQL.pruneNotes, params);
      let deleted = 0;
      for (const sql of [SQL.pruneFollowUps, SQL.pruneSummaries, SQL.pruneDeliveries]) deleted += (await c.query(sql, params)).rowCount ?? 0;
      return deleted;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}
