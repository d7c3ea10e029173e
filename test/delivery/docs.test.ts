/**
 * docs/delivery.md stays true: its copy-paste Node receiver, run as its own process, accepts real
 * deliveries from the outbox and refuses forgeries; its Python function agrees with the engine's
 * signatures; its JSON examples have exactly the payload's fields.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOutbox } from '../../src/delivery/outbox.js';
import { callSummaryPayload, followUpPayload } from '../../src/delivery/payload.js';
import { signVetlineBody } from '../../src/delivery/signature.js';
import { openStore } from '../../src/store/index.js';
import { SECRET, T0, capturedLogger, finishedCall, followUp, manualClock, summaryOf } from './kit.js';

const DOC = new URL('../../docs/delivery.md', import.meta.url);

/** The fenced blocks of one language, in order. */
async function blocks(lang: string): Promise<string[]> {
  const md = await readFile(DOC, 'utf8');
  return [...md.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map((m) => m[1]!);
}

describe('the Node receiver in docs/delivery.md', () => {
  let dir: string;
  let child: ChildProcess;
  let out = '';
  let url: string;

  beforeAll(async () => {
    const [receiver] = await blocks('js');
    expect(receiver).toContain('verifyVetlineSignature');
    dir = await mkdtemp(join(tmpdir(), 'vetline-doc-receiver-'));
    const file = join(dir, 'receiver.mjs');
    await writeFile(file, receiver!);
    child = spawn(process.execPath, [file], { env: { PATH: process.env.PATH, VETLINE_WEBHOOK_SECRET: SECRET, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const port = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the docs receiver did not start: ${out}`)), 5_000);
      const read = (c: Buffer) => {
        out += c.toString('utf8');
        const m = /listening on port (\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      };
      child.stdout!.on('data', read);
      child.stderr!.on('data', read);
    });
    url = `http://127.0.0.1:${port}/vetline`;
  });

  afterAll(async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill();
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('accepts a real delivery, acknowledges a repeat without storing it twice, refuses a forgery', async () => {
    const store = await openStore('sqlite::memory:');
    try {
      const { followUp: f } = await finishedCall(store);
      const o = createOutbox({
        store,
        clinic: () => ({ name: 'Riverside Vet', webhook: { url, secret: SECRET }, email: null, sms: null }),
        logger: capturedLogger().logger,
        now: manualClock(T0 + 60_000).now,
      });
      await o.kick();
      await o.stop();
      expect((await store.deliveriesFor(f.id))[0]).toMatchObject({ status: 'delivered', attempts: 1 });
      expect(out).toContain(`received appointment_request ${f.id}`);

      // The same item again (as after a lost 2xx): acknowledged, not stored again.
      const body = JSON.stringify(followUpPayload({ ...f, status: 'new', handledBy: null, notes: [], updatedAt: T0 }, null));
      const post = (signature: string) =>
        fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Vetline-Signature': signature, 'Idempotency-Key': f.id }, body });
      const again = await post(signVetlineBody(SECRET, body, Date.now()));
      expect([again.status, await again.text()]).toEqual([200, 'duplicate']);

      for (const forged of [signVetlineBody('not-the-secret', body, Date.now()), signVetlineBody(SECRET, `${body} `, Date.now()), signVetlineBody(SECRET, body, Date.now() - 600_000), '']) {
        const res = await post(forged);
        expect([res.status, await res.text()]).toEqual([401, 'bad signature']);
      }
      expect(out.match(/received /g)).toHaveLength(1);
    } finally {
      await store.close();
    }
  });
});

describe('the Python function in docs/delivery.md', () => {
  const python = spawnSync('python3', ['--version']).status === 0;

  it.skipIf(!python)('agrees with the engine on good and bad signatures', async () => {
    const [fn] = await blocks('python');
    const body = '{"id":"x","type":"message","text":"héllo"}';
    const now = Date.now();
    const cases = [
      [signVetlineBody(SECRET, body, now), body, true],
      [signVetlineBody(SECRET, body, now), `${body} `, false],
      [signVetlineBody('other', body, now), body, false],
      [signVetlineBody(SECRET, body, now - 400_000), body, false],
      [`${signVetlineBody('other', body, now)},v1=${signVetlineBody(SECRET, body, now).split('v1=')[1]!}`, body, true],
      ['garbage', body, false],
    ] as const;
    const script = `${fn!}\nimport json, sys\nfor header, body, _ in json.load(sys.stdin):\n    print(verify_vetline_signature(${JSON.stringify(SECRET)}, header, body.encode("utf-8")))\n`;
    const run = spawnSync('python3', ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim().split('\n')).toEqual(cases.map((c) => (c[2] ? 'True' : 'False')));
  });
});

describe('the payload examples in docs/delivery.md', () => {
  it('have exactly the fields the engine sends, in the documented table', async () => {
    const examples = (await blocks('json')).map((b) => JSON.parse(b) as Record<string, unknown>);
    expect(examples.map((e) => e.type)).toEqual(['appointment_request', 'call_summary']);
    const f = followUp();
    const real = [followUpPayload({ ...f, status: 'new', handledBy: null, notes: [], updatedAt: T0 }, summaryOf(f)), callSummaryPayload(summaryOf(f))];
    for (const [i, example] of examples.entries()) expect(Object.keys(example).sort()).toEqual(Object.keys(real[i]!).sort());

    const md = await readFile(DOC, 'utf8');
    const table = md.slice(md.indexOf('| field | type | meaning |'), md.indexOf('An appointment request:'));
    const documented = [...table.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(real[0]!).sort());
  });
});
