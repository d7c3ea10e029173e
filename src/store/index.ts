/**
 * Opening the durable store from DATABASE_URL (docs/store.md):
 *   unset / null       → SQLite at `<dataDir>/vetline.db` (dataDir defaults to `data`, relative to the cwd;
 *                        the directory is created 0700 when missing)
 *   sqlite:<path>      → SQLite at that path (`sqlite::memory:` for tests; `sqlite:///abs/path` also accepted)
 *   postgres://…, postgresql://… → PostgreSQL
 * Anything else: VetError VET_E_CONFIG. Cannot open or migrate: VetError VET_E_STORE.
 */
import { join } from 'node:path';
import { VetError } from '../errors.js';
import { openPostgresStore } from './postgres.js';
import { openSqliteStore } from './sqlite.js';
import type { FollowUpStore } from './types.js';

export type * from './types.js';
export { FOLLOW_UP_STATUSES, FOLLOW_UP_TYPES } from './types.js';
export { redactUrl } from './postgres.js';

export interface OpenStoreOptions {
  /** Where the default SQLite database lives when DATABASE_URL is unset. Default `data` (relative to the cwd). */
  dataDir?: string;
}

export const DEFAULT_DATA_DIR = 'data';
export const DEFAULT_SQLITE_FILE = 'vetline.db';

export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

/** Where DATABASE_URL points, without opening anything. Throws VET_E_CONFIG for an unsupported value. */
export function storeLocation(databaseUrl: string | null | undefined, opts: OpenStoreOptions = {}): StoreLocation {
  const url = databaseUrl?.trim() ?? '';
  if (url === '') return { kind: 'sqlite', path: join(opts.dataDir ?? DEFAULT_DATA_DIR, DEFAULT_SQLITE_FILE) };
  if (/^postgres(ql)?:\/\//i.test(url)) return { kind: 'postgres', url };
  if (/^sqlite:/i.test(url)) {
    let path = url.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2); // sqlite:///abs/path
    if (path !== '') return { kind: 'sqlite', path };
  }
  throw new VetError('VET_E_CONFIG', 'DATABASE_URL must be sqlite:<path> or postgres://…');
}

/** Opens the store DATABASE_URL names and applies pending migrations. */
export async function openStore(databaseUrl: string | null, opts: OpenStoreOptions = {}): Promise<FollowUpStore> {
  const where = storeLocation(databaseUrl, opts);
  return where.kind === 'sqlite' ? openSqliteStore(where.path) : openPostgresStore(where.url);
}
