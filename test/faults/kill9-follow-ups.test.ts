/**
 * kill -9 with a committed follow-up whose delivery is still held (docs/follow-ups.md, docs/delivery.md):
 * the engine exactly as `npm start` runs it (`node --import tsx src/main.ts`, so main's own start-up
 * does the store, the release of held deliveries and the outbox), with DATABASE_URL=sqlite:<tmp>, the
 * OpenAI receptionist pointed at the fake chat server, fake STT/TTS, and a clinic whose webhook
 * receiver is down.
 *
 * The caller presses 1 ("appointments"); the fake model answers with a request_appointment tool call,
 * the engine commits it (held delivery: the call is not over) and logs 'request stored'; on that line
 * the process is SIGKILLed mid-call. The follow-up and its held delivery are on disk. A new engine
 * process starts on the same file with the receiver up: within 10 s of its spawn the delivery arrives,
 * signed, with the follow-up's id as Idempotency-Key, exactly once (nothing more after a whole outbox
 * poll), and the store says delivered after one attempt.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { OUTBOX_POLL_MS } from '../../src/delivery/outbox.js';
import { openStore } from '../../src/store/index.js';
import { startReceiver, type Receiver } from '../delivery/kit.js';
import { startOpenAiChatServer, type FakeChatBody, type FakeChatReply, type FakeOpenAiChat } from '../fakes/openai-chat-server.js';
import { QUICK_VET } from '../e2e/conversation-kit.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio, nextCallerNumber } from '../support/fake-twilio.js';
import { startMainProcess } from '../support/main-process.js';

const SECRET = 'whsec_kill9-follow-ups-0123456789abcdef';
const OPENAI_KEY = 'sk-kill9-follow-ups-0123456789abcdef';
/** The acceptance bound: from the new process's spawn to the delivery at the receiver. */
const REDELIVERY_BOUND_MS = 10_000;

const cleanup: (() => Promise<void> | void)[] = [];
const startMain = (env: NodeJS.ProcessEnv) => startMainProcess(env, (fn) => cleanup.push(fn));
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** The fake model: key 1 ("appointments") is answered with a complete request_appointment call. */
function model(body: FakeChatBody): FakeChatReply {
  const last = [...body.messages].reverse().find((m) => m.role === 'user');
  if (typeof last?.content === 'string' && last.content.startsWith('caller pressed 1')) {
    return {
      toolCalls: [{
        name: 'request_appointment',
        arguments: {
          kind: 'appointment', pet_name: 'Rex', pet_species: 'dog', owner_name: 'Jane Smith', reason: 'vaccinations',
          preferred_time: 'tomorrow at 10 am', callback_number: '5550100200', urgency: 'routine',
        },
      }],
    };
  }
  return { text: 'Okay.' };
}

const until = async (ok: () => boolean, timeoutMs: number, what: string) => {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('kill -9 after a follow-up was committed', () => {
  it('a new engine on the same SQLite file delivers the held webhook exactly once, within 10 s of its start', async ({ annotate }) => {
    const dir = mkdtempSync(join(tmpdir(), 'vetline-kill9-fu-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const receiver: Receiver = await startReceiver(SECRET);
    cleanup.push(() => receiver.close());
    await receiver.down();
    const chat: FakeOpenAiChat = await startOpenAiChatServer({ apiKey: OPENAI_KEY, responder: model });
    cleanup.push(() => chat.close());

    const tenantsDir = join(dir, 'tenants');
    mkdirSync(tenantsDir);
    const quick = JSON.parse(readFileSync(join(FIXTURE_TENANTS_DIR, 'quick-vet.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(tenantsDir, 'quick-vet.json'), JSON.stringify({ ...quick, $schema: undefined, followUps: { webhook: { url: receiver.url, secretEnv: 'QUICK_WEBHOOK_SECRET' } } }));
    const dbPath = join(dir, 'vetline.db');
    const env: NodeJS.ProcessEnv = {
      NODE_ENV: 'test',
      HOST: '127.0.0.1',
      PUBLIC_BASE_URL: TEST_BASE_URL,
      TWILIO_AUTH_TOKEN: TEST_TOKEN,
      TENANTS_DIR: tenantsDir,
      DATABASE_URL: `sqlite:${dbPath}`,
      JOURNAL_DIR: join(dir, 'journals'),
      STT_PROVIDER: 'fake',
      TTS_PROVIDER: 'fake',
      VAD_PROVIDER: 'energy',
      AGENT_PROVIDER: 'openai',
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_BASE_URL: chat.url,
      QUICK_WEBHOOK_SECRET: SECRET,
      LOG_LEVEL: 'info',
    };

    // First process: the caller asks for an appointment; killed right after the commit.
    const first = await startMain(env);
    const call = await FakeTwilio.call({ serverUrl: first.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: nextCallerNumber() });
    cleanup.push(() => call.dispose());
    await call.untilQuiet(500, 10_000); // the greeting
    call.dtmf('1');
    const stored = await first.line((l) => l.msg === 'request stored', 10_000, "'request stored'");
    first.child.kill('SIGKILL');
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const id = String(stored.followUpId);
    expect(stored).toMatchObject({ callSid: call.callSid, kind: 'appointment' });
    expect(first.lines.some((l) => l.msg === 'delivery delivered' || l.msg === 'delivery attempt failed')).toBe(false); // held: never attempted

    // On disk after the kill: the follow-up and its webhook delivery, still held; the call has no summary.
    const afterKill = await openStore(`sqlite:${dbPath}`);
    try {
      expect(await afterKill.getFollowUp(id)).toMatchObject({ clinicId: 'quick-vet', callSid: call.callSid, type: 'appointment_request', petName: 'Rex', callerNumber: '5550100200' });
      expect(await afterKill.deliveriesFor(id)).toMatchObject([{ channel: 'webhook', status: 'held', attempts: 0 }]);
      expect(await afterKill.getCallSummary(call.callSid)).toBeNull();
    } finally {
      await afterKill.close();
    }
    expect(receiver.received).toEqual([]);

    // Second process on the same file, receiver back.
    await receiver.up();
    const second = await startMain(env);
    cleanup.push(async () => {
      if (second.child.exitCode === null && second.child.signalCode === null) second.child.kill('SIGKILL');
      await second.exited;
    });
    await until(() => receiver.received.some((r) => r.body.id === id), REDELIVERY_BOUND_MS - (performance.now() - second.spawnedAt), 'the held delivery');
    const arrivedAfterMs = performance.now() - second.spawnedAt;
    expect(arrivedAfterMs).toBeLessThan(REDELIVERY_BOUND_MS);
    expect(second.lines.find((l) => l.msg === 'follow-ups of calls cut short by the last shutdown are now due')).toMatchObject({ released: 1 });

    // Exactly once: nothing more through a whole outbox poll.
    await new Promise((r) => setTimeout(r, OUTBOX_POLL_MS + 1_000));
    const got = receiver.received.filter((r) => r.body.id === id);
    expect(got).toHaveLength(1);
    expect(receiver.received).toHaveLength(1);
    expect(got[0]!.verified).toBe(true);
    expect(got[0]!.idempotencyKey).toBe(id);
    expect(got[0]!.body).toMatchObject({
      type: 'appointment_request', clinicId: 'quick-vet', callSid: call.callSid, caller: { number: '5550100200', name: 'Jane Smith' },
      pet: { name: 'Rex', species: 'dog' }, reason: 'vaccinations', preferredTime: 'tomorrow at 10 am', summary: null,
    });

    // A clean stop, then the store: the follow-up is there and its delivery took one attempt.
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    const store = await openStore(`sqlite:${dbPath}`);
    try {
      expect(await store.getFollowUp(id)).toMatchObject({ id, status: 'new', type: 'appointment_request' });
      expect(await store.deliveriesFor(id)).toMatchObject([{ channel: 'webhook', status: 'delivered', attempts: 1, lastError: null }]);
    } finally {
      await store.close();
    }
    await annotate(`kill -9 after the commit: delivered ${Math.round(arrivedAfterMs)} ms after the new process was spawned (ready after ${Math.round(second.readyAfterMs)} ms)`);
  }, 60_000);
});
