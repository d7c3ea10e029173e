/**
 * The PostgreSQL store against a real server this file starts (test/support/postgres.ts): the
 * shared contract (a fresh database per test), then what only PostgreSQL has: concurrent outbox
 * claims from separate pools, migrations under the advisory lock, BIGINT parsing kept local to the
 * store's pool, and start-up errors that never show the password.
 *
 * Without PostgreSQL binaries the suite is skipped and says so in its name; under CI (CI set) a
 * missing PostgreSQL fails instead, since .ci/run installs it.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isVetError } from '../../src/errors.js';
import { openStore } from '../../src/store/index.js';
import { LATEST_VERSION } from '../../src/store/migrations.js';
import { openPostgresStore, redactUrl } from '../../src/store/postgres.js';
import type { FollowUpStore } from '../../src/store/types.js';
import { freePort } from '../support/net.js';
import { findPostgresBinaries, startPostgres, type PostgresServer } from '../support/postgres.js';
import { T0, deliveryInput, followUpInput, storeContract, type StoreTarget } from './store.contract.js';

const bins = findPostgresBinaries();
const available = bins !== null;
const inCi = Boolean(process.env.CI);

// Registered only when it must fail, so a normal run does not count it as skipped.
if (!available && inCi) {
  describe('PostgreSQL contract (CI)', () => {
    it('has PostgreSQL binaries (.ci/run installs the postgresql package)', () => {
      expect.fail('CI is set but there is no /usr/lib/postgresql/*/bin/postgres: test/store/postgres.test.ts needs it (.ci/run installs postgresql)');
    });
  });
}

describe.skipIf(!available)(available ? `PostgreSQL ${bins.version} contract` : 'PostgreSQL contract (skipped: no postgres binaries; .ci/run installs them)', () => {
  let server: PostgresServer;
  beforeAll(async () => {
    if (!bins) return;
    server = await startPostgres(bins);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 30_000);

  const target: StoreTarget = {
    async fresh() {
      const url = await server.createDatabase();
      return { open: () => openStore(url, {}) };
    },
  };
  storeContract(() => target);

  describe('PostgreSQL only', () => {
    const stores: FollowUpStore[] = [];
    afterAll(async () => {
      for (const s of stores.splice(0)) await s.close();
    });

    it('four pools draining one outbox at once: every row claimed exactly once (SKIP LOCKED)', async ({ annotate }) => {
      const url = await server.createDatabase();
      const pools = await Promise.all([1, 2, 3, 4].map(() => openPostgresStore(url, { max: 3 })));
      stores.push(...pools);
      const n = 600;
      const rows = Array.from({ length: n }, (_, i) => deliveryInput({ createdAt: T0 + (i % 13) }));
      for (let i = 0; i < n; i += 50) await pools[0]?.recordFollowUp(followUpInput(), rows.slice(i, i + 50));
      const claims = new Map<string, number>();
      let batches = 0;
      const worker = async (s: FollowUpStore) => {
        // bounded: a broken lease would hand out the same rows forever
        for (let round = 0; round < n; round++) {
          const got = await s.claimDueDeliveries(T0 + 60_000, 5, 3_600_000);
          if (got.length === 0) return;
          batches++;
          for (const d of got) claims.set(d.id, (claims.get(d.id) ?? 0) + 1);
        }
      };
      // three concurrent workers per pool: 12 claimers on 4 pools
      await Promise.all(pools.flatMap((s) => [worker(s), worker(s), worker(s)]));
      expect(claims.size).toBe(n);
      expect([...claims.values()].every((c) => c === 1)).toBe(true);
      await annotate(`${n} deliveries claimed by 12 workers on 4 pools in ${batches} batches, none twice`);
    }, 60_000);

    it('instances starting together migrate once (advisory lock)', async () => {
      const url = await server.createDatabase();
      stores.push(...(await Promise.all(Array.from({ length: 5 }, () => openPostgresStore(url, { max: 1 })))));
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
        expect(rows.map((r) => r.version)).toEqual(Array.from({ length: LATEST_VERSION }, (_, i) => i + 1));
      } finally {
        await client.end();
      }
    });

    it('parses BIGINT to numbers in its own pool only (pg global parsers untouched)', async () => {
      const url = await server.createDatabase();
      const store = await openPostgresStore(url);
      stores.push(store);
      const f = followUpInput({ createdAt: 2 ** 52 + 1 });
      await store.recordFollowUp(f, []);
      expect((await store.getFollowUp(f.id))?.createdAt).toBe(2 ** 52 + 1);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const { rows } = await client.query<{ created_at: unknown }>('SELECT created_at FROM follow_ups');
        expect(rows[0]?.created_at).toBe(String(2 ** 52 + 1));
      } finally {
        await client.end();
      }
    });

    it('refuses a newer schema than it knows (VET_E_STORE)', async () => {
      const url = await server.createDatabase();
      await (await openPostgresStore(url)).close();
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, 0)', [LATEST_VERSION + 1, 'future']);
      await client.end();
      const err = await openPostgresStore(url).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isVetError(err) && err.code).toBe('VET_E_STORE');
      expect(String(err)).toMatch(/newer than this engine/);
    });

    it('start-up failures are VET_E_STORE and never show the password', async () => {
      const closed = await freePort();
      const refused = await openStore(`postgres://vetline:s3cret-pw@127.0.0.1:${closed}/vetline`, {}).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isVetError(refused) && refused.code).toBe('VET_E_STORE');
      const message = (refused as Error).message;
      expect(message).not.toContain('s3cret-pw');
      expect(message).toContain(`postgres://vetline:***@127.0.0.1:${closed}/vetline`);
      expect(message).toContain('ECONNREFUSED');
      expect(message).toMatch(/check that the server is running/);

      const missing = await openStore(`postgresql://vetline:pw2@127.0.0.1:${server.port}/no_such_db`, {}).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isVetError(missing) && missing.code).toBe('VET_E_STORE');
      expect((missing as Error).message).toMatch(/database "no_such_db" does not exist/);
      expect((missing as Error).message).not.toContain('pw2');
    });
  });
});

describe('redactUrl', () => {
  it('hides the password, keeps the rest', () => {
    expect(redactUrl('postgres://u:p%40ss@db.example:5432/vet?sslmode=require')).toBe('postgres://u:***@db.example:5432/vet?sslmode=require');
    expect(redactUrl('postgres://u@db/vet')).toBe('postgres://u@db/vet');
    expect(redactUrl('postgres://u:we ird[pw@db/vet')).not.toContain('ird');
  });
});
