/**
 * JOURNAL_S3_URL's shipper (src/journal/s3-shipper.ts) with the real AWS SDK against a fake S3 that
 * checks SigV4 signatures and payload hashes as S3 does (test/fakes/s3-server.ts): a closed journal
 * is uploaded byte for byte and marked; failed uploads are retried until they land, once; the sweep
 * takes finished journals left behind and nothing a call still writes.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createS3Shipper, STALE_JOURNAL_MS, type JournalShipper } from '../../src/journal/s3-shipper.js';
import { pruneJournals } from '../../src/journal/retention.js';
import { startFakeS3, type FakeS3 } from '../fakes/s3-server.js';
import { capturedLogger } from '../delivery/kit.js';

const ACCESS_KEY = 'AKIAVETLINETEST00001';
const SECRET_KEY = 'canary-s3-secret-5b1d9e7f3a2c4e6d8f0a';
const HEADER = '{"type":"header","version":3,"callSid":"CA1"}';
const OUTCOME = '{"t":31250,"type":"outcome","outcome":"callerHungUp","record":{"turns":[]}}';

let s3: FakeS3;
let dir: string;
let shipper: JournalShipper | null = null;

beforeEach(async () => {
  // The pinned SDK runs on Node 20; its notice that later releases will need Node 22 is for operators, not test output.
  vi.stubEnv('AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED', 'true');
  s3 = await startFakeS3({ credentials: { [ACCESS_KEY]: SECRET_KEY }, buckets: ['clinic-journals'] });
  dir = await mkdtemp(join(tmpdir(), 'vetline-s3-'));
});
afterEach(async () => {
  await shipper?.close(0);
  shipper = null;
  await s3.close();
  await rm(dir, { recursive: true, force: true });
});

function makeShipper(opts: { secret?: string; open?: Set<string>; prefix?: string } = {}) {
  const log = capturedLogger();
  const client = new S3Client({
    region: 'eu-west-1',
    endpoint: s3.url,
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: opts.secret ?? SECRET_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    maxAttempts: 1,
  });
  shipper = createS3Shipper({
    dir,
    target: { bucket: 'clinic-journals', prefix: opts.prefix ?? 'calls/', endpoint: s3.url },
    region: 'eu-west-1',
    logger: log.logger,
    isOpen: (path) => opts.open?.has(path) ?? false,
    retry: { firstMs: 50, maxMs: 200 },
    client,
  });
  return { shipper, log };
}

/** A journal file; finished unless told otherwise. */
async function journal(name: string, opts: { finished?: boolean; ageMs?: number } = {}) {
  const path = join(dir, `${name}.jsonl`);
  await writeFile(path, `${HEADER}\n{"t":10,"type":"twilio.start"}\n${opts.finished === false ? '' : `${OUTCOME}\n`}`, { mode: 0o600 });
  if (opts.ageMs) {
    const at = new Date(Date.now() - opts.ageMs);
    await utimes(path, at, at);
  }
  return path;
}

/** vitest's polling wait, with a message saying what was awaited. */
const until = (what: string, ok: () => boolean, timeout = 5_000) =>
  vi.waitFor(() => {
    if (!ok()) throw new Error(`still waiting for ${what}`);
  }, { timeout, interval: 10 });

describe('journal shipping to S3 (JOURNAL_S3_URL)', () => {
  it('uploads a closed journal byte for byte under the prefix, signed, then marks it shipped', async () => {
    const { shipper: s } = makeShipper();
    const path = await journal('2026-12-08T00-00-00.000Z_CA1');
    s.closed(path);
    await until('the object', () => s3.objects.has('clinic-journals/calls/2026-12-08T00-00-00.000Z_CA1.jsonl'));
    const object = s3.objects.get('clinic-journals/calls/2026-12-08T00-00-00.000Z_CA1.jsonl')!;
    expect(object.body.equals(await readFile(path))).toBe(true);
    expect(object.contentType).toBe('application/x-ndjson');
    // The marker is written before the upload counts as done (it exists as soon as it is created).
    await until('the upload done', () => s.stats.shipped === 1);
    expect(existsSync(`${path}.shipped`)).toBe(true);
    expect(s.stats).toMatchObject({ shipped: 1, failures: 0, pending: 0 });
    expect(s3.requests.map((r) => r.status)).toEqual([200]);
  });

  it('retries a failed upload with growing delays until it lands, once; the journal stays meanwhile', async () => {
    const { shipper: s, log } = makeShipper();
    s3.failNext(2, 503);
    const path = await journal('2026-12-08T00-00-01.000Z_CA2');
    s.closed(path);
    s.closed(path); // a second notice of the same journal is the same upload
    await until('the object', () => s3.objects.size === 1);
    expect(s3.requests.map((r) => r.error)).toEqual(['SlowDown', 'SlowDown', null]);
    expect([...s3.objects.values()][0]?.puts).toBe(1);
    await until('the upload done', () => s.stats.shipped === 1);
    expect(existsSync(`${path}.shipped`)).toBe(true);
    expect(existsSync(path)).toBe(true);
    expect(s.stats).toMatchObject({ shipped: 1, failures: 2, pending: 0 });
    const warnings = log.lines.filter((l) => l.code === 'VET_E_JOURNAL');
    expect(warnings.map((w) => [w.attempts, w.retryInMs])).toEqual([[1, 50], [2, 100]]);
    expect(log.text()).not.toContain(SECRET_KEY);
  });

  it('is refused by the storage with the wrong secret: nothing stored, nothing marked, the secret never logged', async () => {
    const { shipper: s, log } = makeShipper({ secret: 'not-the-secret-key-0000000000000000' });
    const path = await journal('2026-12-08T00-00-02.000Z_CA3');
    s.closed(path);
    await until('two attempts', () => s3.requests.length >= 2);
    expect(s3.requests.every((r) => r.error === 'SignatureDoesNotMatch')).toBe(true);
    expect(s3.objects.size).toBe(0);
    expect(existsSync(`${path}.shipped`)).toBe(false);
    expect(log.text()).toContain('SignatureDoesNotMatch');
    expect(log.text()).not.toContain('not-the-secret-key');
  });

  it('the sweep takes finished journals left behind and leaves shipped, live and unfinished ones', async () => {
    const done = await journal('a_done');
    const shipped = await journal('b_shipped');
    await writeFile(`${shipped}.shipped`, '');
    const live = await journal('c_live', { finished: false });
    const liveHere = await journal('d_open_here');
    const crashed = await journal('e_crashed', { finished: false, ageMs: STALE_JOURNAL_MS + 60_000 });
    const { shipper: s } = makeShipper({ open: new Set([liveHere]), prefix: '' });
    await s.sweep();
    expect([...s3.objects.keys()].sort()).toEqual(['clinic-journals/a_done.jsonl', 'clinic-journals/e_crashed.jsonl']);
    expect(existsSync(`${done}.shipped`) && existsSync(`${crashed}.shipped`)).toBe(true);
    expect(existsSync(`${live}.shipped`) || existsSync(`${liveHere}.shipped`)).toBe(false);
    await s.sweep(); // nothing twice
    expect(s3.requests).toHaveLength(2);
  });

  it('a journal whose upload never got through is shipped by the next process', async () => {
    const first = makeShipper().shipper;
    s3.failNext(1_000);
    const path = await journal('2026-12-08T00-00-03.000Z_CA4');
    first.closed(path);
    await until('a failed attempt', () => s3.requests.length >= 1);
    await first.close(100);
    shipper = null;
    expect(s3.objects.size).toBe(0);

    s3.failNext(0);
    const next = makeShipper().shipper;
    await next.sweep();
    expect(s3.objects.get('clinic-journals/calls/2026-12-08T00-00-03.000Z_CA4.jsonl')?.body.equals(await readFile(path))).toBe(true);
    expect(existsSync(`${path}.shipped`)).toBe(true);
  });

  it('at shutdown, uploads queued or in flight get the wait, and no more', async () => {
    const s = makeShipper().shipper;
    s3.setLatency(300);
    const paths = await Promise.all(['f_1', 'f_2', 'f_3'].map((n) => journal(n))); // three: one waits for a slot (two at a time)
    for (const path of paths) s.closed(path);
    const t0 = Date.now();
    await s.close(5_000);
    expect(Date.now() - t0).toBeLessThan(2_000); // two rounds of 300 ms, not the whole wait
    expect(s.stats).toMatchObject({ shipped: 3, pending: 0 });
    shipper = null;

    const slow = makeShipper().shipper;
    s3.setLatency(1_000);
    const late = await journal('g_late');
    slow.closed(late);
    const t1 = Date.now();
    await slow.close(100);
    expect(Date.now() - t1).toBeLessThan(900); // the wait, not the upload
    expect(slow.stats).toMatchObject({ shipped: 0, pending: 1 });
    expect(existsSync(`${late}.shipped`)).toBe(false); // left for the next start's sweep
  });

  it('retention deletes old journals and their markers alike, and counts journals only', async () => {
    const old = await journal('old', { ageMs: 3 * 86_400_000 });
    await writeFile(`${old}.shipped`, '');
    const at = new Date(Date.now() - 3 * 86_400_000);
    await utimes(`${old}.shipped`, at, at);
    const recent = await journal('recent');
    await writeFile(`${recent}.shipped`, '');
    expect(await pruneJournals(dir, { maxAgeDays: 2 })).toEqual({ deleted: 1, kept: 1 });
    expect([existsSync(old), existsSync(`${old}.shipped`), existsSync(recent), existsSync(`${recent}.shipped`)]).toEqual([false, false, true, true]);
  });
});
