/**
 * WORKERS=2 in the real entry point (issue #14 part 3, docs/operations.md "Workers"): two engine
 * processes behind one port. Calls made with the fake Twilio land on both workers (webhook and
 * stream may reach different ones); /twilio/health counts the workers, /twilio/sessions lists every
 * worker's calls, /metrics sums them. A worker killed with SIGKILL is replaced; its call's stream
 * closes abnormally, so Twilio runs the fallback key menu after </Connect>, which the surviving
 * worker answers; the other worker's calls go on. Twilio's status callbacks reach whichever worker
 * and are relayed to the one holding the call; an inspector page on either worker follows every
 * worker's calls. SIGTERM drains every worker and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { QUICK_VET } from '../e2e/conversation-kit.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { freePort } from '../support/net.js';
import { formBody, signedForm } from '../support/twilio-sign.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

type Listed = { callSid: string; instance?: string };
const lines = (out: string) => out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
/** The sum of a metric's samples in Prometheus text (every label set). */
const metricSum = (text: string, name: string) =>
  text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);

/**
 * A signed Twilio callback on a connection of its own: the primary deals connections to the workers
 * in turn, and a kept-alive connection may lead to a worker that was just killed (ECONNRESET).
 */
function callbackOnNewConnection(url: string, path: string, params: Record<string, string>): Promise<{ status: number; body: string }> {
  const { headers } = signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path, params });
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'POST', agent: false, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(formBody(params));
  });
}

let proc: ChildProcess | null = null;
let dir = '';
const calls: FakeTwilio[] = [];

afterAll(async () => {
  await Promise.all(calls.map((c) => c.dispose()));
  if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('WORKERS=2 behind one port', () => {
  it('both workers take calls; health, listing and metrics cover both; a killed worker is replaced and its call goes to the menu; SIGTERM drains all', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vetline-workers-'));
    const port = await freePort();
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port), HOST: '127.0.0.1', VETLINE_DEV: '1', WORKERS: '2',
        PUBLIC_BASE_URL: TEST_BASE_URL, TWILIO_AUTH_TOKEN: TEST_TOKEN, TWILIO_ACCOUNT_SID: TEST_ACCOUNT, TENANTS_DIR: FIXTURE_TENANTS_DIR,
        STT_PROVIDER: 'fake', TTS_PROVIDER: 'fake', AGENT_PROVIDER: 'fake', VAD_PROVIDER: 'fake',
        DATABASE_URL: `sqlite:${join(dir, 'vetline.db')}`, JOURNAL_DIR: join(dir, 'journals'), DRAIN_TIMEOUT_MS: '2000', LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc = child;
    let output = '';
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const url = `http://127.0.0.1:${port}`;
    const ready = () => lines(output).filter((l) => l.msg === 'vetline ready');
    await expect.poll(() => ready().length, { timeout: 60_000, interval: 200 }).toBe(2);
    const health = async () => (await (await fetch(`${url}/twilio/health`)).json()) as { workers: number };
    await expect.poll(async () => (await health()).workers, { timeout: 5_000 }).toBe(2);

    const dial = () => FakeTwilio.call({ serverUrl: url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber() });
    for (let i = 0; i < 4; i++) calls.push(await dial());
    await Promise.all(calls.map((c) => c.waitFor((x) => x.outbound.some((o) => o.message?.event === 'media'), 10_000, 'greeting audio')));

    // Every worker's calls, each naming its worker, from whichever worker answers the listing.
    const listed = async () => ((await (await fetch(`${url}/twilio/sessions`)).json()) as { calls: Listed[] }).calls;
    const all = await listed();
    expect(all.map((c) => c.callSid).sort()).toEqual(calls.map((c) => c.callSid).sort());
    const byWorker = new Map(all.map((c) => [c.callSid, c.instance ?? '']));
    expect(new Set(byWorker.values())).toEqual(new Set(ready().map((l) => l.worker)));
    expect((await listed()).length).toBe(4); // the other worker answers the same
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricSum(metrics, 'vetline_calls_active')).toBe(4);

    // SIGKILL the worker of the first call.
    const victim = byWorker.get(calls[0]!.callSid)!;
    const pid = Number(ready().find((l) => l.worker === victim)?.pid);
    const survivors = calls.filter((c) => byWorker.get(c.callSid) !== victim);
    const lost = calls.filter((c) => byWorker.get(c.callSid) === victim);
    process.kill(pid, 'SIGKILL');
    for (const c of lost) {
      const closed = await c.waitForClose(5_000);
      expect(closed.code).toBe(1006); // no close frame: the process is gone, Twilio runs the verbs after </Connect>
      expect(c.twiml.afterConnect).toMatch(/<Gather[^>]*input="dtmf"/);
      // The fallback menu's key press reaches a live worker (on a new connection, as Twilio's would).
      const menu = await callbackOnNewConnection(url, '/twilio/dtmf?attempt=1', { CallSid: c.callSid, AccountSid: TEST_ACCOUNT, From: nextCallerNumber(), To: QUICK_VET, Digits: '9' });
      expect(menu.status).toBe(200);
      expect(menu.body).toContain('<Response>');
    }
    for (const c of survivors) expect(c.closed).toBeNull();
    await expect.poll(() => ready().length, { timeout: 60_000, interval: 200 }).toBe(3); // a new worker started
    await expect.poll(async () => (await health()).workers, { timeout: 5_000 }).toBe(2);
    expect(lines(output).some((l) => l.msg === 'worker died; its calls went to the fallback menu; starting another' && l.worker === victim)).toBe(true);
    expect((await listed()).map((c) => c.callSid).sort()).toEqual(survivors.map((c) => c.callSid).sort());

    // A new call after the restart is answered.
    const late = await dial();
    calls.push(late);
    await late.waitFor((x) => x.outbound.some((o) => o.message?.event === 'media'), 10_000, 'greeting audio after the restart');

    // An inspector page, on whichever worker its socket reaches, lists every worker's live calls (the
    // others resync theirs through the primary when it opens) and hears their state changes.
    const page = new WebSocket(`${url.replace(/^http/, 'ws')}/inspector/ws`);
    type Summary = { callSid: string; live: boolean };
    const heard: { type: string; call?: Summary; calls?: Summary[] }[] = [];
    page.on('message', (d: Buffer) => heard.push(JSON.parse(d.toString('utf8')) as (typeof heard)[number]));
    // The page's own worker's calls come with its `hello`; the other worker's as relayed summaries.
    const liveOnPage = () => new Set(heard.flatMap((m) => (m.type === 'hello' ? (m.calls ?? []) : m.type === 'summary' && m.call ? [m.call] : [])).filter((c) => c.live).map((c) => c.callSid));
    await expect.poll(() => [...survivors, late].every((c) => liveOnPage().has(c.callSid)), { timeout: 3_000 }).toBe(true);

    // Twilio's completion of each surviving call, each on a new connection: at least one reaches the
    // worker that does not hold its call and is relayed; every call ends (the machine closes 1000).
    for (const c of survivors) {
      expect((await callbackOnNewConnection(url, '/twilio/status', { CallSid: c.callSid, AccountSid: TEST_ACCOUNT, CallStatus: 'completed', SequenceNumber: '3' })).status).toBe(200);
    }
    for (const c of survivors) expect((await c.waitForClose(5_000)).code).toBe(1000);
    // Their ends reach the page too, whichever worker held them.
    const endedOnPage = (sid: string) => heard.filter((m) => m.type === 'summary' && m.call?.callSid === sid).at(-1)?.call?.live === false;
    await expect.poll(() => survivors.every((c) => endedOnPage(c.callSid)), { timeout: 3_000 }).toBe(true);
    page.terminate();
    expect((await listed()).map((c) => c.callSid)).toEqual([late.callSid]);

    // SIGTERM: every worker drains (hand-off at DRAIN_TIMEOUT_MS), then the primary exits 0.
    child.kill('SIGTERM');
    await late.waitForClose(15_000);
    expect(await exited).toBe(0);
    expect(output).toContain('draining every worker');
    expect(lines(output).filter((l) => l.msg === 'worker stopped').map((l) => l.exitCode)).toEqual([0, 0]);
    expect(output).toContain('all workers stopped');
  }, 120_000);
});
