/**
 * The SQLite store: the shared contract on temporary database files, plus what only SQLite has
 * (file permissions, WAL durability across kill -9, DATABASE_URL parsing, start-up failures).
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { isVetError } from '../../src/errors.js';
import { openStore, storeLocation } from '../../src/store/index.js';
import { LATEST_VERSION } from '../../src/store/migrations.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { followUpInput, storeContract, type StoreTarget } from './store.contract.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'vetline-store-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const newPath = () => join(tmp, `db${++n}`, 'vetline.db');

const mode = (path: string) => statSync(path).mode & 0o777;

async function codeOf(p: Promise<unknown>): Promise<string | null> {
  return p.then(
    () => null,
    (e: unknown) => (isVetError(e) ? e.code : String(e)),
  );
}

describe('SQLite contract', () => {
  const target: StoreTarget = {
    fresh() {
      const path = newPath();
      return Promise.resolve({ open: () => openStore(`sqlite:${path}`, {}) });
    },
  };
  storeContract(() => target);
});

describe('SQLite files', () => {
  it('creates the directory 0700 and the database, -wal and -shm 0600', async () => {
    const dir = join(tmp, 'perm', 'nested');
    const store = await openStore(null, { dataDir: dir });
    try {
      await store.recordFollowUp(followUpInput(), []);
      expect(mode(dir)).toBe(0o700);
      for (const f of ['vetline.db', 'vetline.db-wal', 'vetline.db-shm']) expect([f, mode(join(dir, f))]).toEqual([f, 0o600]);
    } finally {
      await store.close();
    }
  });

  it('tightens an existing database file to 0600 and leaves an existing directory alone', async () => {
    const dir = join(tmp, 'existing');
    const path = join(dir, 'x.db');
    const store0 = await openSqliteStore(path); // creates it
    await store0.close();
    const { chmodSync } = await import('node:fs');
    chmodSync(dir, 0o755);
    chmodSync(path, 0o644);
    const store = await openSqliteStore(path);
    await store.close();
    expect(mode(path)).toBe(0o600);
    expect(mode(dir)).toBe(0o755);
  });

  it('runs in WAL mode and records each migration once', async () => {
    const path = newPath();
    await (await openStore(`sqlite:${path}`, {})).close();
    await (await openStore(`sqlite:${path}`, {})).close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all()).toEqual(
        Array.from({ length: LATEST_VERSION }, (_, i) => i + 1),
      );
    } finally {
      db.close();
    }
  });

  it('sqlite::memory: works (tests)', async () => {
    const store = await openStore('sqlite::memory:', {});
    const f = followUpInput();
    await store.recordFollowUp(f, []);
    expect((await store.getFollowUp(f.id))?.id).toBe(f.id);
    await store.close();
  });

  it('loses nothing that resolved when the process is killed with SIGKILL', async ({ annotate }) => {
    const path = newPath();
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/store/kill9-store.ts', path], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child did not commit in time:\n${out}\n${err}`)), 15_000);
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        // Kill mid-stream: while it is committing more (and possibly inside a transaction).
        if (out.split('\n').length > 25) {
          clearTimeout(timer);
          child.kill('SIGKILL');
          resolve();
        }
      });
      void exited.then(() => reject(new Error(`child exited early:\n${out}\n${err}`)));
    });
    expect(await exited).toBe('SIGKILL');
    // Only lines printed completely count as acknowledged.
    const committed = out
      .split('\n')
      .slice(0, -1)
      .map((line) => line.split(' '))
      .filter((parts) => parts[0] === 'committed');
    expect(committed.length).toBeGreaterThanOrEqual(25);

    const store = await openStore(`sqlite:${path}`, {});
    try {
      for (const [, followUpId, deliveryId] of committed) {
        expect((await store.getFollowUp(followUpId ?? ''))?.id).toBe(followUpId);
        expect((await store.deliveriesFor(followUpId ?? '')).map((d) => [d.id, d.status])).toEqual([[deliveryId, 'held']]);
      }
      const all = await store.listFollowUps({ clinicId: null, limit: 500 });
      await annotate(`kill -9 after ${committed.length} acknowledged records: all present; ${all.length - committed.length} more committed but unacknowledged`);
      expect(all.length).toBeGreaterThanOrEqual(committed.length);
    } finally {
      await store.close();
    }
  }, 30_000);
});

describe('openStore', () => {
  it('reads DATABASE_URL: unset → data/vetline.db, sqlite:<path>, postgres(ql)://', () => {
    expect(storeLocation(null)).toEqual({ kind: 'sqlite', path: join('data', 'vetline.db') });
    expect(storeLocation('')).toEqual({ kind: 'sqlite', path: join('data', 'vetline.db') });
    expect(storeLocation(null, { dataDir: '/var/lib/vetline' })).toEqual({ kind: 'sqlite', path: '/var/lib/vetline/vetline.db' });
    expect(storeLocation('sqlite:db/x.db')).toEqual({ kind: 'sqlite', path: 'db/x.db' });
    expect(storeLocation('sqlite:/abs/x.db')).toEqual({ kind: 'sqlite', path: '/abs/x.db' });
    expect(storeLocation('sqlite:///abs/x.db')).toEqual({ kind: 'sqlite', path: '/abs/x.db' });
    expect(storeLocation('sqlite::memory:')).toEqual({ kind: 'sqlite', path: ':memory:' });
    expect(storeLocation('postgres://u:p@h/db')).toEqual({ kind: 'postgres', url: 'postgres://u:p@h/db' });
    expect(storeLocation('postgresql://h:5433/db?sslmode=require')).toEqual({ kind: 'postgres', url: 'postgresql://h:5433/db?sslmode=require' });
  });

  it('refuses anything else with VET_E_CONFIG', async () => {
    for (const url of ['mysql://h/db', 'sqlite:', 'data/vetline.db', 'http://x']) {
      let caught: unknown;
      try {
        storeLocation(url);
      } catch (e) {
        caught = e;
      }
      expect(isVetError(caught) && caught.code === 'VET_E_CONFIG' && caught.message).toBe('DATABASE_URL must be sqlite:<path> or postgres://…');
    }
    expect(await codeOf(openStore('mongodb://h/db', {}))).toBe('VET_E_CONFIG');
  });

  it('reports a database it cannot create as VET_E_STORE', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'not a directory');
    expect(await codeOf(openStore(`sqlite:${join(file, 'x.db')}`, {}))).toBe('VET_E_STORE');
    const notDb = join(tmp, 'garbage.db');
    writeFileSync(notDb, 'x'.repeat(4096));
    expect(await codeOf(openStore(`sqlite:${notDb}`, {}))).toBe('VET_E_STORE');
  });

  it('refuses a database migrated by a newer engine (VET_E_STORE)', async () => {
    const path = newPath();
    await (await openStore(`sqlite:${path}`, {})).close();
    const db = new Database(path);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(LATEST_VERSION + 1, 'future', 0);
    db.close();
    const err = await openStore(`sqlite:${path}`, {}).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isVetError(err) && err.code).toBe('VET_E_STORE');
    expect(String(err)).toMatch(/newer than this engine/);
  });
});
