/**
 * JOURNAL_S3_URL through the real entry point (`node --import tsx src/main.ts`, as `npm start` runs
 * it), the storage a fake S3 that checks SigV4 like S3 (test/fakes/s3-server.ts), credentials in
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY as the AWS SDK reads them:
 *
 * - a finished call's journal is in the bucket under the prefix, the same bytes as in JOURNAL_DIR,
 *   marked shipped, and the engine still drains to exit 0;
 * - with the storage down, the call and the shutdown go on as before and the journal waits in
 *   JOURNAL_DIR; the next start ships it.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startFakeS3 } from '../fakes/s3-server.js';
import { QUICK_VET } from './conversation-kit.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { startMainProcess, type EngineProcess } from '../support/main-process.js';

const ACCESS_KEY = 'AKIAVETLINEE2E000001';
const SECRET_KEY = 'canary-s3-e2e-secret-0a9b8c7d6e5f4a3b2c1d';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});
const startMain = (env: NodeJS.ProcessEnv) => startMainProcess(env, (fn) => cleanup.push(fn));

/** vitest's polling wait, with a message saying what was awaited. */
const until = (ok: () => boolean, timeout: number, what: string) =>
  vi.waitFor(() => {
    if (!ok()) throw new Error(`still waiting for ${what}`);
  }, { timeout, interval: 20 });

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'vetline-s3-e2e-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const s3 = await startFakeS3({ credentials: { [ACCESS_KEY]: SECRET_KEY }, buckets: ['clinic-journals'] });
  cleanup.push(() => s3.close());
  const journalDir = join(dir, 'journals');
  const env: NodeJS.ProcessEnv = {
    NODE_ENV: 'test', HOST: '127.0.0.1', PUBLIC_BASE_URL: TEST_BASE_URL, TWILIO_AUTH_TOKEN: TEST_TOKEN, TENANTS_DIR: FIXTURE_TENANTS_DIR,
    DATABASE_URL: `sqlite:${join(dir, 'vetline.db')}`, JOURNAL_DIR: journalDir,
    STT_PROVIDER: 'fake', TTS_PROVIDER: 'fake', VAD_PROVIDER: 'energy', AGENT_PROVIDER: 'local', LOG_LEVEL: 'info',
    JOURNAL_S3_URL: `${s3.url}/clinic-journals/vetline/calls`, AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: ACCESS_KEY, AWS_SECRET_ACCESS_KEY: SECRET_KEY,
  };
  return { s3, journalDir, env };
}

/** One short call: the greeting, then the caller hangs up; resolves once the engine has ended it. */
async function oneCall(engine: EngineProcess): Promise<string> {
  const call = await FakeTwilio.call({ serverUrl: engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber() });
  cleanup.push(() => call.dispose());
  await call.untilQuiet(500, 10_000);
  await call.hangUp();
  await engine.line((l) => l.msg === 'call ended' && l.callSid === call.callSid, 10_000, "'call ended'");
  return call.callSid;
}

const journalsIn = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.jsonl'));
const allOutput = (engine: EngineProcess) => engine.lines.map((l) => JSON.stringify(l)).join('\n');

describe('JOURNAL_S3_URL', () => {
  it("a finished call's journal is copied to the bucket, byte for byte, and the engine still drains to exit 0", async () => {
    const { s3, journalDir, env } = await setup();
    const engine = await startMain(env);
    expect(engine.lines.find((l) => l.msg === 'vetline ready')).toMatchObject({
      journalS3: { bucket: 'clinic-journals', prefix: 'vetline/calls/', endpoint: s3.url },
    });
    const callSid = await oneCall(engine);
    const [name] = journalsIn(journalDir).filter((n) => n.includes(callSid));
    expect(name).toBeDefined();
    const key = `clinic-journals/vetline/calls/${name}`;
    await until(() => s3.objects.has(key), 10_000, 'the journal in the bucket');
    expect(s3.objects.get(key)?.body.equals(readFileSync(join(journalDir, name!)))).toBe(true);
    await until(() => existsSync(join(journalDir, `${name}.shipped`)), 5_000, 'the shipped marker');

    engine.child.kill('SIGTERM');
    expect(await engine.exited).toEqual({ code: 0, signal: null });
    expect(engine.lines.find((l) => l.msg === 'stopped')).toMatchObject({ journalsShipped: { shipped: 1, failures: 0, pending: 0 } });
    expect(allOutput(engine)).not.toContain(SECRET_KEY);
  }, 45_000);

  it('with the storage down, the journal waits in JOURNAL_DIR and the next start ships it', async () => {
    const { s3, journalDir, env } = await setup();
    s3.failNext(1_000, 503);
    const first = await startMain(env);
    const callSid = await oneCall(first);
    await first.line((l) => l.code === 'VET_E_JOURNAL' && typeof l.msg === 'string' && l.msg.startsWith('journal upload to S3 failed'), 10_000, 'a failed upload');
    first.child.kill('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    const [name] = journalsIn(journalDir).filter((n) => n.includes(callSid));
    expect(s3.objects.size).toBe(0);
    expect(existsSync(join(journalDir, `${name}.shipped`))).toBe(false);

    s3.failNext(0);
    const second = await startMain(env);
    const key = `clinic-journals/vetline/calls/${name}`;
    await until(() => s3.objects.has(key), 10_000, 'the journal shipped by the next start');
    expect(s3.objects.get(key)?.body.equals(readFileSync(join(journalDir, name!)))).toBe(true);
    second.child.kill('SIGTERM');
    expect(await second.exited).toEqual({ code: 0, signal: null });
    expect(allOutput(first) + allOutput(second)).not.toContain(SECRET_KEY);
  }, 60_000);
});
