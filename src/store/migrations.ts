/**
 * The store's schema, as versioned migrations (docs/store.md "Migrations"). Each migration has a
 * SQLite and a PostgreSQL text describing the same tables; both stores apply the ones a database
 * lacks at open, in version order, inside one transaction, and record each in `schema_migrations`
 * (PostgreSQL first takes an advisory lock, so instances starting together do not race).
 *
 * Rules: never edit or reorder a released migration, only append one. Times are epoch milliseconds
 * (INTEGER / BIGINT); JSON is stored as text so it reads back exactly as written.
 */

import { VetError } from '../errors.js';

export interface Migration {
  /** 1, 2, 3…: strictly increasing, never reused. */
  version: number;
  /** Short description, recorded beside the version. */
  name: string;
  sqlite: string;
  postgres: string;
}

/** The advisory lock key PostgreSQL instances hold while migrating ("vetline" in ASCII, as an int). */
export const PG_MIGRATION_LOCK = 0x7665746c;

/** The table that records applied migrations (same shape in both databases). */
export const SCHEMA_MIGRATIONS_SQLITE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at INTEGER NOT NULL
) STRICT`;

export const SCHEMA_MIGRATIONS_POSTGRES = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

const TYPES = `'appointment_request', 'refill_request', 'message', 'emergency'`;
const DELIVERY_KINDS = `${TYPES}, 'call_summary'`;

/**
 * Columns shared by both dialects except the integer type (`INTEGER` in SQLite, `BIGINT` for
 * times in PostgreSQL) and SQLite's STRICT / AUTOINCREMENT spelling.
 */
function initialSchema(dialect: 'sqlite' | 'postgres'): string {
  const time = dialect === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const strict = dialect === 'sqlite' ? ' STRICT' : '';
  const serial = dialect === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY';
  return `
CREATE TABLE follow_ups (
  id TEXT PRIMARY KEY,
  clinic_id TEXT NOT NULL,
  call_sid TEXT NOT NULL,
  type TEXT NOT NULL CHECK (type IN (${TYPES})),
  created_at ${time} NOT NULL,
  caller_number TEXT,
  caller_name TEXT,
  pet_name TEXT,
  pet_species TEXT,
  reason TEXT,
  preferred_time TEXT,
  message TEXT,
  recipient TEXT,
  urgency TEXT NOT NULL CHECK (urgency IN ('routine', 'soon', 'urgent', 'emergency')),
  emergency TEXT,
  status TEXT NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'in_progress', 'done')),
  handled_by TEXT,
  updated_at ${time} NOT NULL
)${strict};
CREATE INDEX follow_ups_desk ON follow_ups (clinic_id, status, created_at);
CREATE INDEX follow_ups_clinic_created ON follow_ups (clinic_id, created_at);
CREATE INDEX follow_ups_created ON follow_ups (created_at);
CREATE INDEX follow_ups_call ON follow_ups (call_sid);

CREATE TABLE follow_up_notes (
  id ${serial},
  follow_up_id TEXT NOT NULL REFERENCES follow_ups (id) ON DELETE CASCADE,
  noted_at ${time} NOT NULL,
  noted_by TEXT NOT NULL,
  body TEXT NOT NULL
)${strict};
CREATE INDEX follow_up_notes_follow_up ON follow_up_notes (follow_up_id, id);

CREATE TABLE call_summaries (
  call_sid TEXT PRIMARY KEY,
  clinic_id TEXT NOT NULL,
  started_at ${time} NOT NULL,
  ended_at ${time} NOT NULL,
  outcome TEXT NOT NULL,
  summary TEXT NOT NULL,
  summary_source TEXT NOT NULL CHECK (summary_source IN ('llm', 'template')),
  transcript TEXT NOT NULL,
  caller_number TEXT,
  recordings TEXT NOT NULL
)${strict};
CREATE INDEX call_summaries_clinic_ended ON call_summaries (clinic_id, ended_at);

CREATE TABLE deliveries (
  id TEXT PRIMARY KEY,
  clinic_id TEXT NOT NULL,
  call_sid TEXT NOT NULL,
  channel TEXT NOT NULL CHECK (channel IN ('webhook', 'email', 'sms')),
  kind TEXT NOT NULL CHECK (kind IN (${DELIVERY_KINDS})),
  subject_id TEXT NOT NULL,
  created_at ${time} NOT NULL,
  hold_until ${time},
  expires_at ${time} NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('held', 'pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at ${time} NOT NULL,
  last_error TEXT,
  delivered_at ${time}
)${strict};
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_held ON deliveries (status, hold_until);
CREATE INDEX deliveries_call ON deliveries (call_sid);
CREATE INDEX deliveries_subject ON deliveries (subject_id);
CREATE INDEX deliveries_clinic_created ON deliveries (clinic_id, created_at);
`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'follow-ups, notes, call summaries, delivery outbox',
    sqlite: initialSchema('sqlite'),
    postgres: initialSchema('postgres'),
  },
];

/** The newest version this code knows. */
export const LATEST_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);

/**
 * The migrations a database with `applied` versions still needs, in order. Throws when the
 * database was migrated by newer code (a version this code does not know; VetError VET_E_STORE):
 * running old code on a newer schema could corrupt it.
 */
export function pendingMigrations(applied: readonly number[]): Migration[] {
  const newer = applied.filter((v) => v > LATEST_VERSION);
  if (newer.length > 0) {
    throw new VetError('VET_E_STORE', `the database schema is at version ${Math.max(...newer)}, newer than this engine knows (${LATEST_VERSION}): run the newer engine or restore a matching backup`);
  }
  const done = new Set(applied);
  return [...MIGRATIONS].sort((a, b) => a.version - b.version).filter((m) => !done.has(m.version));
}
