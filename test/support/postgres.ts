/**
 * A throwaway PostgreSQL server for tests (test/store/postgres.test.ts): Debian's binaries
 * (`/usr/lib/postgresql/<version>/bin`, or `PG_BINDIR`), a fresh cluster in a temporary directory
 * (`initdb -U vetline --auth=trust`), listening on a free loopback port with its socket in that
 * directory and `fsync=off`. Started as root (CI containers), initdb and postgres refuse to run, so
 * they run as the `postgres` user the Debian package creates (else `nobody`), owning the directory.
 */
import { spawn, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { spawnServer, tail } from './child-server.js';
import { freePort } from './net.js';

export interface PostgresBinaries {
  initdb: string;
  postgres: string;
  version: string;
}

/** The newest installed PostgreSQL's initdb and postgres, or null when there is none. */
export function findPostgresBinaries(): PostgresBinaries | null {
  const candidates: { dir: string; version: string }[] = [];
  if (process.env.PG_BINDIR) candidates.push({ dir: process.env.PG_BINDIR, version: 'PG_BINDIR' });
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    for (const v of versions) candidates.push({ dir: join(root, v, 'bin'), version: v });
  }
  for (const { dir, version } of candidates) {
    const initdb = join(dir, 'initdb');
    const postgres = join(dir, 'postgres');
    if (existsSync(initdb) && existsSync(postgres)) return { initdb, postgres, version };
  }
  return null;
}

export interface PostgresServer {
  port: number;
  version: string;
  /** A new empty database; returns its URL (user `vetline`, no password: trust auth). */
  createDatabase(name?: string): Promise<string>;
  /** Fast shutdown, then the cluster directory is removed. */
  stop(): Promise<void>;
}

/** uid/gid to run the server as: ourselves, or an unprivileged user when we are root. */
function runAs(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  for (const user of ['postgres', 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
      return { uid, gid };
    } catch {
      // no such user: try the next
    }
  }
  throw new Error('running as root and neither the "postgres" nor the "nobody" user exists: PostgreSQL refuses to run as root');
}

function run(bin: string, args: string[], user: { uid: number; gid: number } | null, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const out: string[] = [];
    const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) });
    child.stdout.on('data', (d: Buffer) => tail(out, d.toString()));
    child.stderr.on('data', (d: Buffer) => tail(out, d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${bin} exited with ${code}:\n${out.join('')}`))));
  });
}

export async function startPostgres(bins: PostgresBinaries): Promise<PostgresServer> {
  const user = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'vetline-pg-'));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', TZ: 'UTC' };
  try {
    await run(bins.initdb, ['-D', data, '-U', 'vetline', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'], user, env);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const port = await freePort();
  // SIGINT: PostgreSQL's fast shutdown.
  const { log, exited, stop } = spawnServer(
    bins.postgres,
    ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'],
    { dir, stopSignal: 'SIGINT', killAfterMs: 10_000, spawn: { env, ...(user ?? {}) } },
  );

  const url = (db: string) => `postgres://vetline@127.0.0.1:${port}/${db}`;
  const deadline = Date.now() + 30_000;
  // Ready when a connection succeeds (the log line differs between versions; connecting does not).
  for (;;) {
    if (exited()) {
      await stop();
      throw new Error(`postgres exited during start-up:\n${log.join('')}`);
    }
    const client = new pg.Client({ connectionString: url('postgres'), connectionTimeoutMillis: 1_000 });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (err) {
      await client.end().catch(() => {});
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`postgres did not accept connections within 30 s (${String(err)}):\n${log.join('')}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  let n = 0;
  return {
    port,
    version: bins.version,
    async createDatabase(name = `t${process.pid}_${++n}`) {
      const admin = new pg.Client({ connectionString: url('postgres') });
      await admin.connect();
      try {
        const ident = `"${name.replaceAll('"', '')}"`;
        // FILE_COPY (PostgreSQL 15+) copies the template's files instead of WAL-logging every block: faster with fsync off.
        await admin.query(`CREATE DATABASE ${ident} STRATEGY FILE_COPY`).catch(() => admin.query(`CREATE DATABASE ${ident}`));
      } finally {
        await admin.end();
      }
      return url(name);
    },
    stop,
  };
}
