/**
 * Follow-through on the cloud receptionist (docs/follow-ups.md): the same acceptance as the first
 * test of follow-through.test.ts, but the receptionist is the OpenAI adapter talking to the fake
 * chat server (test/fakes/openai-chat-server.ts) through the engine's OPENAI_BASE_URL, with the
 * recognizer `auto` picks (Scribe Realtime) and ElevenLabs synthesis on their fakes too (startCloudEngine).
 *
 * The fake model asks its questions, reads the details back, and on the confirming turn answers
 * with a `request_appointment` (or `take_message`) tool call. Then:
 *   - the follow-up is in the store with the fields the model passed (kind, pet, species, owner,
 *     reason, time, call-back number, urgency; for a message the recipient), committed before the
 *     caller heard anything of the confirmation;
 *   - the model's own words in that reply ("All booked!") are never spoken: the adapter suppresses
 *     text after a request tool call and the fixed "I've sent your request" line is spoken instead;
 *   - at hang-up the engine asks the same chat endpoint for the staff summary; the signed webhook
 *     (verified by the receiver's own recipe) carries that summary and the store says `llm`; when
 *     that request fails (HTTP 500) the template summary is used instead.
 *
 * The fake streams a reply's text before its tool calls. A model may write them the other way
 * round (tool call, then "All booked!"), which is the case the adapter suppresses: a small front
 * in this file moves a reply's text after its tool-call fragments before the engine sees it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, it, type TestContext } from 'vitest';
import { clinicDeliveries } from '../../src/delivery/clinics.js';
import { createOutbox, type Outbox } from '../../src/delivery/outbox.js';
import { createLogger } from '../../src/observability/logger.js';
import { openStore } from '../../src/store/index.js';
import type { FollowUpStore } from '../../src/store/types.js';
import { startReceiver, type Received, type Receiver } from '../delivery/kit.js';
import type { FakeChatBody, FakeChatReply } from '../fakes/openai-chat-server.js';
import { startCloudEngine, type CloudRig } from '../support/cloud-engine.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { restRecorder } from '../support/rest-recorder.js';
import { QUICK_VET, tone } from './conversation-kit.js';

const SECRET = 'whsec_e2e-cloud-follow-through-0123456789';
const tenantEnv = { QUICK_WEBHOOK_SECRET: SECRET };
/** The store holds each commit this long, so "nothing was heard before it was durable" is measurable. */
const COMMIT_DELAY_MS = 400;

// Short lines: the engine sends reply audio in real time (the ElevenLabs fake: 60 ms per character).
const BOOKING = ['i want to book an appointment for my dog rex, i am jane smith', 'his vaccinations, tomorrow at 10 am, call me on 555 010 0200', 'yes'];
const MESSAGE = ['a message for doctor lee from jane smith: call me about the test results for rex, on 555 010 0200', 'yes'];
const APPOINTMENT_ARGS = {
  kind: 'appointment', pet_name: 'Rex', pet_species: 'dog', owner_name: 'Jane Smith', reason: 'vaccinations',
  preferred_time: 'tomorrow at 10 am', callback_number: '555 010 0200', urgency: 'soon',
};
const MESSAGE_ARGS = {
  recipient: 'Dr. Lee', caller_name: 'Jane Smith', message: 'Please call about the test results for Rex.', callback_number: '5550100200', urgency: 'routine',
};
/** What the model says in the same reply as a request tool call: must never reach the caller. */
const MODEL_AFTER_TOOL = 'All booked, see you tomorrow!';
const FIXED_LINE = "Great. I've sent your request to the team.";
const MESSAGE_LINE = "Great. I've sent your message to the team.";
const LLM_SUMMARY = 'Jane Smith called to book vaccinations for her dog Rex, tomorrow at 10 am if possible. Call her back on 555 010 0200 to confirm.';
const LLM_MESSAGE_SUMMARY = 'Jane Smith left a message for Dr. Lee about the test results for Rex. Please call her back on 555 010 0200.';

const isSummaryRequest = (body: FakeChatBody) => {
  const system = body.messages[0];
  return system?.role === 'system' && typeof system.content === 'string' && system.content.startsWith('You write call notes');
};
const lastUserText = (body: FakeChatBody) => {
  const last = [...body.messages].reverse().find((m) => m.role === 'user');
  return typeof last?.content === 'string' ? last.content : '';
};
const offered = (body: FakeChatBody) => (body.tools ?? []).map((t) => (t.type === 'function' ? t.function.name : ''));

/** The fake model: a receptionist taking an appointment or a message, and the staff summary writer. */
function model(body: FakeChatBody): FakeChatReply {
  if (isSummaryRequest(body)) {
    const conversation = body.messages.map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
    return { text: conversation.includes('Dr. Lee') ? LLM_MESSAGE_SUMMARY : LLM_SUMMARY };
  }
  const said = lastUserText(body);
  const history = body.messages.map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
  if (said.startsWith('yes')) {
    // The confirming turn: the tool call, plus words of the model's own that the adapter must not speak.
    return history.includes('doctor lee')
      ? { text: MODEL_AFTER_TOOL, toolCalls: [{ name: 'take_message', arguments: MESSAGE_ARGS }] }
      : { text: MODEL_AFTER_TOOL, toolCalls: [{ name: 'request_appointment', arguments: APPOINTMENT_ARGS }] };
  }
  if (said.includes('doctor lee')) return { text: 'For Dr. Lee: test results for Rex, 5 5 5 0 1 0 0 2 0 0. Right?' };
  if (said.includes('book')) return { text: 'Sure. For what, when, and your number?' };
  if (said.includes('vaccinations')) return { text: 'Rex, a dog, vaccinations, tomorrow at 10 am, 5 5 5 0 1 0 0 2 0 0. Right?' };
  return { text: 'Sorry, could you say that again?' };
}

/**
 * A front for the fake OpenAI origin that streams each chat reply's text after its tool calls (the
 * order a model may use); everything else (the Realtime WebSocket) passes through untouched.
 */
async function textAfterToolCalls(upstreamUrl: string): Promise<{ url: string; close(): Promise<void> }> {
  const upstream = new URL(upstreamUrl);
  const port = Number(upstream.port);
  type Chunk = { choices?: { delta?: { content?: string | null; tool_calls?: unknown[] } }[] };
  const parse = (event: string): Chunk | null => {
    const data = event.startsWith('data: ') ? event.slice(6) : '';
    if (data === '' || data === '[DONE]') return null;
    return JSON.parse(data) as Chunk;
  };
  const isTool = (e: string) => (parse(e)?.choices?.[0]?.delta?.tool_calls?.length ?? 0) > 0;
  const isText = (e: string) => !isTool(e) && typeof parse(e)?.choices?.[0]?.delta?.content === 'string' && parse(e)?.choices?.[0]?.delta?.content !== '';
  const reorder = (sse: string): string => {
    const events = sse.split('\n\n').filter((e) => e !== '');
    const lastTool = events.findLastIndex(isTool);
    const texts = events.filter(isText);
    if (lastTool < 0 || texts.length === 0) return sse;
    return `${events.flatMap((e, i) => (isText(e) ? [] : i === lastTool ? [e, ...texts] : [e])).join('\n\n')}\n\n`;
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const forward = request({ host: '127.0.0.1', port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (c: Buffer) => body.push(c));
        answer.on('end', () => {
          const text = Buffer.concat(body).toString('utf8');
          const sse = String(answer.headers['content-type'] ?? '').startsWith('text/event-stream');
          const headers = { ...answer.headers };
          delete headers['content-length'];
          delete headers['transfer-encoding'];
          res.writeHead(answer.statusCode ?? 502, headers).end(sse ? reorder(text) : text);
        });
        answer.on('error', () => res.destroy());
      });
      forward.on('error', () => res.destroy());
      forward.end(Buffer.concat(chunks));
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pipe = connect(port, '127.0.0.1', () => {
      const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : (v ?? '')}`);
      pipe.write(`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      pipe.write(head);
      socket.pipe(pipe).pipe(socket);
    });
    pipe.on('error', () => socket.destroy());
    socket.on('error', () => pipe.destroy());
    socket.on('close', () => pipe.destroy());
    pipe.on('close', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}${upstream.pathname}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let dir: string;
let tenantsDir: string;
let receiver: Receiver;

/** quick-vet with a webhook to the test's receiver (the fixture clinic's receptionist is `auto`: OpenAI here). */
function writeTenants(webhookUrl: string): string {
  const out = join(dir, 'tenants');
  const quick = JSON.parse(readFileSync(join(FIXTURE_TENANTS_DIR, 'quick-vet.json'), 'utf8')) as Record<string, unknown>;
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'quick-vet.json'), JSON.stringify({ ...quick, $schema: undefined, followUps: { webhook: { url: webhookUrl, secretEnv: 'QUICK_WEBHOOK_SECRET' } } }));
  return out;
}

interface Commit {
  calledAt: number;
  doneAt: number;
  /** ElevenLabs synthesis requests made before the commit began and before it was durable. */
  ttsAtCall: number;
  ttsAtDone: number;
}

interface Clinic {
  rig: CloudRig;
  store: FollowUpStore;
  commits: Commit[];
  /** The calls dialled to it, hung up when the test finishes. */
  calls: FakeTwilio[];
}

/**
 * A cloud engine with follow-through on its own SQLite file: slowed commits, the real outbox, the
 * providers' summarizer. Each test has its own (the tests run concurrently; the receiver is shared,
 * and each test reads only its own call's deliveries), closed when the test finishes.
 */
async function startClinic(ctx: Pick<TestContext, 'onTestFinished'>, name: string, transcripts: readonly string[]): Promise<Clinic> {
  const real = await openStore(`sqlite:${join(dir, `${name}.db`)}`);
  const commits: Commit[] = [];
  let rig: CloudRig | null = null;
  const synthesized = () => rig?.elevenlabs.requests.length ?? 0;
  const store = new Proxy(real, {
    get(target, prop) {
      if (prop !== 'recordFollowUp') {
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      const record: FollowUpStore['recordFollowUp'] = async (followUp, deliveries) => {
        const calledAt = performance.now();
        const ttsAtCall = synthesized();
        await new Promise((r) => setTimeout(r, COMMIT_DELAY_MS));
        await target.recordFollowUp(followUp, deliveries);
        commits.push({ calledAt, doneAt: performance.now(), ttsAtCall, ttsAtDone: synthesized() });
      };
      return record;
    },
  });
  let outbox: Outbox | null = null;
  let front: { url: string; close(): Promise<void> } | null = null;
  rig = await startCloudEngine({
    responder: model,
    transcripts: [...transcripts],
    rest: restRecorder().rest,
    tenantsDir,
    tenantEnv,
    openaiFront: async (url) => (front = await textAfterToolCalls(url)).url,
    followUps: (tenants, { summarizer }) => {
      const clinic = clinicDeliveries(tenants, { smtp: false, sms: false });
      outbox = createOutbox({ store, clinic, logger: createLogger({ level: 'silent' }), version: 'test', senders: { email: null, sms: null } });
      return { store, outbox, clinicDelivery: clinic, summarizer };
    },
  });
  if (!outbox) throw new Error('follow-ups were not built');
  const built: Outbox = outbox;
  built.start();
  const started = rig;
  const frontDoor = front as { close(): Promise<void> } | null;
  const calls: FakeTwilio[] = [];
  ctx.onTestFinished(async () => {
    await Promise.all(calls.map((c) => c.dispose()));
    await started.close();
    await built.stop();
    await frontDoor?.close();
    await store.close();
  });
  return { rig: started, store, commits, calls };
}

const stateOf = (rig: CloudRig, sid: string) => rig.engine.registry.list().find((c) => c.callSid === sid)?.state ?? 'ended';

/** Dials quick-vet, says each line (the transcription fake decides the words) and waits for each reply; returns with the call still up. */
async function converse({ rig, calls }: Clinic, lines: number): Promise<{ call: FakeTwilio; sid: string; mediaAt: () => number[] }> {
  const call = await FakeTwilio.call({
    serverUrl: rig.engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: '+15557654321', playbackSpeed: 4,
  });
  calls.push(call);
  const sid = call.callSid;
  await call.untilQuiet();
  for (let turn = 0; turn < lines; turn++) {
    await call.waitFor(() => stateOf(rig, sid) === 'listening.waiting', 10_000, `listening before turn ${turn + 1} (now ${stateOf(rig, sid)})`);
    const before = rig.engine.registry.session(sid)?.history.length ?? 0;
    await call.say(tone(500));
    await call.waitFor(() => (rig.engine.registry.session(sid)?.history.length ?? 0) >= before + 2, 10_000, `reply ${turn + 1}`);
  }
  await call.waitFor(() => stateOf(rig, sid) === 'listening.waiting', 10_000, `listening after the last reply (now ${stateOf(rig, sid)})`);
  // Arrival times of the engine's audio at the caller, on the performance clock.
  const mediaAt = () => {
    const epoch = performance.now() - call.now();
    return call.outbound.filter((r) => r.message?.event === 'media').map((r) => epoch + r.atMs);
  };
  return { call, sid, mediaAt };
}

async function hangUp(rig: CloudRig, call: FakeTwilio): Promise<void> {
  await call.hangUp();
  await call.waitFor(() => stateOf(rig, call.callSid) === 'ended', 5_000, 'the end of the call');
}

const until = async (ok: () => boolean | Promise<boolean>, timeoutMs: number, what: string) => {
  const end = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

/** The follow-up's webhook and the call summary's, once both arrived. */
async function deliveriesOf(sid: string, followUpId: string): Promise<{ followUp: Received; summary: Received }> {
  await until(() => receiver.received.filter((r) => r.body.callSid === sid).length >= 2, 10_000, 'two deliveries');
  const got = receiver.received.filter((r) => r.body.callSid === sid);
  return { followUp: got.find((r) => r.body.id === followUpId)!, summary: got.find((r) => r.body.type === 'call_summary')! };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vetline-cloud-follow-'));
  receiver = await startReceiver(SECRET);
  tenantsDir = writeTenants(receiver.url);
});

afterAll(async () => {
  await receiver.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.concurrent('follow-through on the cloud receptionist (fake OpenAI chat)', () => {
  it('stores the model\'s request_appointment before confirming it, never speaks the model\'s own words, and delivers the model\'s summary in a signed webhook', async (ctx) => {
    const { expect } = ctx;
    const clinic = await startClinic(ctx, 'booking', BOOKING);
    const { rig, store, commits } = clinic;
    const { call, sid, mediaAt } = await converse(clinic, BOOKING.length);

    // The confirming turn went to the model with the request tools on offer, and it called one.
    const confirming = rig.openai.chat.requests.find((r) => lastUserText(r.body).startsWith('yes'))!;
    expect(offered(confirming.body)).toEqual(expect.arrayContaining(['request_appointment', 'take_message']));
    expect(confirming.completed).toBe(true);

    // The machine's request and the store's row: the fields the model passed, as the local receptionist's would be.
    const request = rig.engine.registry.session(sid)!.context.requests[0]!;
    expect(request).toMatchObject({ kind: 'appointment', petName: 'Rex', petSpecies: 'dog', ownerName: 'Jane Smith', callback: { kind: 'spoken' } });
    const stored = await store.getFollowUp(request.id);
    expect(stored).toMatchObject({
      clinicId: 'quick-vet', callSid: sid, type: 'appointment_request', status: 'new', petName: 'Rex', petSpecies: 'dog', callerName: 'Jane Smith',
      reason: 'vaccinations', preferredTime: 'tomorrow at 10 am', callerNumber: '5550100200', urgency: 'soon', message: null, recipient: null,
    });

    // Committed before the confirmation: while the (slowed) commit ran nothing was synthesized or heard,
    // and the fixed line was spoken only after it; the model's own words never were.
    expect(commits).toHaveLength(1);
    const commit = commits[0]!;
    expect(mediaAt().filter((t) => t > commit.calledAt && t < commit.doneAt)).toEqual([]);
    expect(mediaAt().some((t) => t > commit.doneAt)).toBe(true);
    expect(commit.ttsAtDone).toBe(commit.ttsAtCall);
    const spoken = rig.elevenlabs.requests.map((r) => r.text);
    expect(spoken.slice(commit.ttsAtDone).join(' ')).toContain(FIXED_LINE);
    expect(spoken.join(' ')).not.toContain('All booked');
    const history = rig.engine.registry.session(sid)!.history;
    expect(history.at(-1)).toMatchObject({ role: 'agent', text: expect.stringContaining(FIXED_LINE) as string });
    expect(history.map((h) => h.text).join(' ')).not.toContain('All booked');

    await hangUp(rig, call);

    // The staff summary was asked of the same model, with the recorded facts and the conversation.
    await until(() => rig.openai.chat.requests.some((r) => isSummaryRequest(r.body)), 10_000, 'the summary request');
    const summaryRequest = rig.openai.chat.requests.find((r) => isSummaryRequest(r.body))!;
    expect(JSON.stringify(summaryRequest.body.messages)).toContain('Appointment request for Rex (dog), owner Jane Smith');
    expect(JSON.stringify(summaryRequest.body.messages)).toContain('Caller: his vaccinations, tomorrow at 10 am');

    // The signed webhook: the follow-up with the model's summary, and the call summary.
    const { followUp, summary } = await deliveriesOf(sid, request.id);
    expect(followUp.verified).toBe(true);
    expect(followUp.idempotencyKey).toBe(request.id);
    expect(followUp.body).toMatchObject({
      type: 'appointment_request', clinicId: 'quick-vet', callSid: sid, caller: { number: '5550100200', name: 'Jane Smith' },
      pet: { name: 'Rex', species: 'dog' }, reason: 'vaccinations', preferredTime: 'tomorrow at 10 am', urgency: 'soon', summary: LLM_SUMMARY, recipient: null,
    });
    expect(summary.verified).toBe(true);
    expect(summary.body).toMatchObject({ id: sid, summary: LLM_SUMMARY, outcome: 'callerHungUp' });
    expect(await store.getCallSummary(sid)).toMatchObject({ summary: LLM_SUMMARY, summarySource: 'llm' });
  }, 60_000);

  it('uses the template summary when the summary request fails (HTTP 500)', async (ctx) => {
    const { expect } = ctx;
    const clinic = await startClinic(ctx, 'template', BOOKING);
    const { rig, store } = clinic;
    const { call, sid } = await converse(clinic, BOOKING.length);
    const id = rig.engine.registry.session(sid)!.context.requests[0]!.id;
    const before = rig.openai.chat.requests.length;
    rig.openai.chat.faults.push({ status: 500 }); // the next chat request is the summary's
    await hangUp(rig, call);

    await until(async () => (await store.getCallSummary(sid)) !== null, 10_000, 'the call summary');
    expect(rig.openai.chat.requests.slice(before).map((r) => ({ summary: isSummaryRequest(r.body), status: r.plan.status }))).toEqual([{ summary: true, status: 500 }]);
    const stored = await store.getCallSummary(sid);
    expect(stored).toMatchObject({ summarySource: 'template' });
    expect(stored!.summary).toMatch(/^Appointment request for Rex \(dog\), owner Jane Smith; reason: vaccinations; preferred time: tomorrow at 10 am \(soon\)\. The caller hung up\./);
    expect(stored!.summary).not.toBe(LLM_SUMMARY);

    const { followUp } = await deliveriesOf(sid, id);
    expect(followUp.verified).toBe(true);
    expect(followUp.body.summary).toBe(stored!.summary);
    const warned = rig.engine.logs.join('').split('\n').filter((l) => l.includes('summary by the model failed'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).not.toContain('Jane Smith');
  }, 60_000);

  it('turns the model\'s take_message into a message follow-up for the named recipient', async (ctx) => {
    const { expect } = ctx;
    const clinic = await startClinic(ctx, 'message', MESSAGE);
    const { rig, store, commits } = clinic;
    const { call, sid, mediaAt } = await converse(clinic, MESSAGE.length);
    const request = rig.engine.registry.session(sid)!.context.requests[0]!;
    expect(request).toMatchObject({ kind: 'message', recipient: 'Dr. Lee', ownerName: 'Jane Smith' });
    expect(await store.getFollowUp(request.id)).toMatchObject({
      type: 'message', recipient: 'Dr. Lee', callerName: 'Jane Smith', message: 'Please call about the test results for Rex.', callerNumber: '5550100200',
      urgency: 'routine', petName: null, reason: null, preferredTime: null,
    });
    const commit = commits[0]!;
    expect(mediaAt().filter((t) => t > commit.calledAt && t < commit.doneAt)).toEqual([]);
    expect(rig.elevenlabs.requests.slice(commit.ttsAtDone).map((r) => r.text).join(' ')).toContain(MESSAGE_LINE);
    expect(rig.elevenlabs.requests.map((r) => r.text).join(' ')).not.toContain('All booked');
    await hangUp(rig, call);

    const { followUp } = await deliveriesOf(sid, request.id);
    expect(followUp.verified).toBe(true);
    expect(followUp.body).toMatchObject({
      type: 'message', recipient: 'Dr. Lee', message: 'Please call about the test results for Rex.', caller: { number: '5550100200', name: 'Jane Smith' },
      summary: LLM_MESSAGE_SUMMARY,
    });
    expect(await store.getCallSummary(sid)).toMatchObject({ summarySource: 'llm', summary: LLM_MESSAGE_SUMMARY });
  }, 60_000);
});
