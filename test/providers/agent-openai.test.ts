/**
 * The OpenAI receptionist through the real `openai` SDK, aimed by baseURL at the fake Chat
 * Completions server (real HTTP, real SSE): streaming, prompt and history, tools, usage, aborts,
 * every fault of the fault plan, and no key or transcript in errors or logs.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TenantSchema, type Tenant } from '../../src/config/tenant.schema.js';
import { loadTenants } from '../../src/config/tenants.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createOpenAiAgent, expectedAnswer } from '../../src/providers/agent/openai.js';
import type { AgentOutput, AgentProvider, ChatTurn } from '../../src/providers/agent/types.js';
import { startOpenAiChatServer, type FakeOpenAiChat } from '../fakes/openai-chat-server.js';

const FIXTURE_TENANTS_DIR = fileURLToPath(new URL('../fixtures/tenants', import.meta.url));
/** A canary: it must never surface in an error message or a log line. */
const API_KEY = 'sk-canary-7f3e9a1b2c4d5e6f708192a3b4c5d6e7';
const SECRET_WORDS = 'my-secret-transcript-words';

let fake: FakeOpenAiChat;
let agent: AgentProvider;
let tenant: Tenant;

beforeAll(async () => {
  tenant = (await loadTenants(FIXTURE_TENANTS_DIR)).byId('quick-vet')!;
  fake = await startOpenAiChatServer({ apiKey: API_KEY });
  agent = createOpenAiAgent({ apiKey: API_KEY, baseUrl: fake.url, timeoutMs: 5_000 });
});
afterEach(() => {
  fake.faults.clear();
  fake.respondWith(() => ({ text: 'Okay.' }));
});
afterAll(async () => {
  await fake.close();
});

interface Run {
  outputs: AgentOutput[];
  error: unknown;
  text: string;
}

/** One turn, collected. `onOutput` may abort the signal (it sees each output as it arrives). */
async function turn(opts: {
  transcript?: string;
  history?: ChatTurn[];
  signal?: AbortSignal;
  provider?: AgentProvider;
  onOutput?: (o: AgentOutput, index: number) => void;
} = {}): Promise<Run> {
  const session = (opts.provider ?? agent).startSession(tenant);
  const outputs: AgentOutput[] = [];
  let error: unknown = null;
  try {
    for await (const o of session.respond({ transcript: opts.transcript ?? 'hello', history: opts.history ?? [],
      signal: opts.signal ?? new AbortController().signal })) {
      outputs.push(o);
      opts.onOutput?.(o, outputs.length - 1);
    }
  } catch (err) {
    error = err;
  }
  return { outputs, error, text: outputs.map((o) => (o.type === 'delta' ? o.text : '')).join('') };
}

const ofType = <T extends AgentOutput['type']>(outputs: AgentOutput[], type: T) =>
  outputs.filter((o): o is Extract<AgentOutput, { type: T }> => o.type === type);

function expectFailure(run: Run, failure: ProviderError['failure']): ProviderError {
  expect(run.error).toBeInstanceOf(ProviderError);
  const err = run.error as ProviderError;
  expect(err.provider).toBe('openai');
  expect(err.failure).toBe(failure);
  return err;
}

describe('openai agent: replies', () => {
  it('keeps the vendor connection between turns a few seconds apart (Node\'s fetch would drop it after 4 s idle)', async () => {
    const before = fake.requests.length;
    await turn({ transcript: 'what are your hours' });
    // The caller listens to the reply, then speaks: longer than undici's default 4 s keep-alive (the
    // fake server sets no limit of its own).
    await new Promise((resolve) => setTimeout(resolve, 4_500));
    await turn({ transcript: 'and on saturdays' });
    const [first, second] = fake.requests.slice(before);
    expect(first?.clientPort).toBeDefined();
    expect(second?.clientPort).toBe(first?.clientPort);
  });

  it('streams the reply as deltas in order and reports usage', async () => {
    const reply = 'Our hours are Monday to Friday, 8 am to 6 pm. Anything else I can help with?';
    fake.respondWith(() => ({ text: reply }));
    const run = await turn({ transcript: 'when are you open' });
    expect(run.error).toBeNull();
    const deltas = ofType(run.outputs, 'delta');
    expect(deltas.map((d) => d.text)).toEqual(reply.split(/(?= )/));
    expect(run.text).toBe(reply);
    const rec = fake.requests.at(-1)!;
    expect(rec.completed).toBe(true);
    expect(ofType(run.outputs, 'usage')).toEqual([
      { type: 'usage', inputTokens: rec.usage!.prompt_tokens, outputTokens: rec.usage!.completion_tokens },
    ]);
    expect(ofType(run.outputs, 'action')).toEqual([]);
    expect(run.outputs.at(-1)).toEqual({ type: 'expect', answer: 'normal' });
  });

  it('sends the model, tools, streaming options, the key, the clinic facts and the history', async () => {
    const history: ChatTurn[] = [
      { role: 'caller', text: 'Hi, I need to book a visit.' },
      { role: 'agent', text: "Sure. What's your pet's name?" },
      { role: 'caller', text: '' },
    ];
    await turn({ transcript: 'Her name is Daisy.', history });
    const rec = fake.requests.at(-1)!;
    expect(rec.apiKey).toBe(API_KEY);
    const body = rec.body;
    expect(body).toMatchObject({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, parallel_tool_calls: false });
    expect(body.tools?.map((t) => (t.type === 'function' ? t.function.name : t.type)).sort())
      .toEqual(['end_call', 'report_emergency', 'request_appointment', 'take_message', 'transfer_to_staff']);
    const [system, ...rest] = body.messages;
    expect(system?.role).toBe('system');
    const prompt = system?.content;
    if (typeof prompt !== 'string') throw new Error('the system prompt is not a string');
    for (const fact of [tenant.name, tenant.info.hours, tenant.info.address, ...tenant.info.services, ...tenant.info.staff, tenant.greeting]) {
      expect(prompt).toContain(fact);
    }
    expect(prompt).toMatch(/never give a diagnosis/i);
    expect(prompt).toMatch(/report_emergency/);
    expect(prompt).toMatch(/no markdown/i);
    expect(prompt).toMatch(/one question at a time/i);
    expect(prompt).toContain('connects the caller to the emergency line');
    expect(rest).toEqual([
      { role: 'user', content: 'Hi, I need to book a visit.' },
      { role: 'assistant', content: "Sure. What's your pet's name?" },
      { role: 'user', content: 'Her name is Daisy.' },
    ]);
  });

  it("uses the clinic's model, and says so when the clinic has no emergency line", async () => {
    const noLine = TenantSchema.parse({
      id: 'no-line', name: 'No Line Vet', phoneNumbers: ['+15550109500'], greeting: 'No Line Vet, hello.',
      transfer: { frontDesk: '+15550109501' }, emergency: { script: 'Go to the nearest emergency hospital.' },
      info: { hours: 'weekdays', address: '2 Side Road' }, providers: { model: 'gpt-4.1-nano' },
    });
    const session = agent.startSession(noLine);
    for await (const _ of session.respond({ transcript: 'hi', history: [], signal: new AbortController().signal })) { /* drain */ }
    const body = fake.requests.at(-1)!.body;
    expect(body.model).toBe('gpt-4.1-nano');
    expect(body.messages[0]?.content).toContain('there is no emergency line');
  });

  it('turns transfer_to_staff into a front-desk transfer, last, after the spoken text', async () => {
    fake.respondWith(() => ({ text: 'Sure, one moment.', toolCalls: [{ name: 'transfer_to_staff', arguments: { reason: 'caller wants a person' } }] }));
    const run = await turn({ transcript: 'can I talk to someone' });
    expect(run.error).toBeNull();
    expect(run.text).toBe('Sure, one moment.'); // the model spoke: no fixed line added
    expect(run.outputs.at(-1)).toEqual({ type: 'action', action: { type: 'transfer', target: 'frontDesk', reason: 'caller wants a person' } });
    expect(ofType(run.outputs, 'action')).toHaveLength(1);
  });

  it('speaks a fixed line for a tool call without text: end_call and report_emergency', async () => {
    fake.respondWith(() => ({ toolCalls: [{ name: 'end_call', arguments: { reason: 'caller said bye' } }] }));
    const bye = await turn({ transcript: 'bye' });
    expect(bye.text).toBe(`Thanks for calling ${tenant.name}. Goodbye!`);
    expect(ofType(bye.outputs, 'delta').length).toBeGreaterThan(1);
    expect(bye.outputs.at(-1)).toEqual({ type: 'action', action: { type: 'end', reason: 'caller said bye' } });

    fake.respondWith(() => ({ toolCalls: [{ name: 'report_emergency', arguments: { reason: 'dog ate chocolate' } }] }));
    const emergency = await turn({ transcript: 'my dog ate a chocolate bar' });
    expect(emergency.text).toBe('This sounds like an emergency.');
    expect(emergency.outputs.at(-1)).toEqual({ type: 'action', action: { type: 'emergency', reason: 'dog ate chocolate' } });
  });

  it('after words of its own, the request confirmation starts a new sentence', async () => {
    fake.respondWith(() => ({ text: 'Perfect!', toolCalls: [{ name: 'request_appointment',
      arguments: { kind: 'refill', pet_name: 'Max', pet_species: null, owner_name: null, reason: null, preferred_time: null, callback_number: null, urgency: 'routine' } }] }));
    const run = await turn({ transcript: 'yes' });
    expect(run.text).toBe("Perfect! Great. I've sent your refill request to the team. They'll call you to confirm. Anything else I can help with?");
  });

  it('maps request_appointment to a request output (nulls kept), with no action', async () => {
    fake.respondWith(() => ({ toolCalls: [{ name: 'request_appointment',
      arguments: { kind: 'appointment', pet_name: 'Daisy', pet_species: 'dog', owner_name: 'Sam Green', reason: 'annual vaccinations', preferred_time: null,
        callback_number: '+1 (555) 010-0200', urgency: 'soon' } }] }));
    const run = await turn({ transcript: "yes that's right" });
    expect(run.error).toBeNull();
    expect(ofType(run.outputs, 'request')).toEqual([{ type: 'request',
      request: { kind: 'appointment', petName: 'Daisy', petSpecies: 'dog', ownerName: 'Sam Green', reason: 'annual vaccinations', preferredTime: null,
        message: null, recipient: null, callback: { kind: 'spoken', number: '15550100200' }, urgency: 'soon' } }]);
    expect(run.text).toMatch(/sent your request/);
    expect(ofType(run.outputs, 'action')).toEqual([]);
    expect(run.outputs.at(-1)).toEqual({ type: 'expect', answer: 'normal' }); // the line ends "Anything else I can help with?"
  });

  it('fails with protocol on tool arguments that are not JSON, or an unknown tool', async () => {
    fake.respondWith(() => ({ toolCalls: [{ name: 'transfer_to_staff', arguments: '{"reason": "cut off' }] }));
    const broken = await turn();
    expectFailure(broken, 'protocol');
    expect(ofType(broken.outputs, 'action')).toEqual([]);

    fake.respondWith(() => ({ toolCalls: [{ name: 'book_surgery', arguments: {} }] }));
    expectFailure(await turn(), 'protocol');
  });
});

describe('openai agent: the answer hint', () => {
  it('asks for a long window after a name or time question, short after yes/no, normal otherwise', async () => {
    expect(expectedAnswer("Sure. What's your pet's name?")).toBe('long');
    expect(expectedAnswer('When would you like to come in?')).toBe('long');
    expect(expectedAnswer('Daisy, Sam, vaccinations, Tuesday morning. Is that right?')).toBe('short');
    expect(expectedAnswer('Would you like an appointment or the front desk?')).toBe('normal');
    expect(expectedAnswer('Is there anything else I can help with?')).toBe('normal');
    expect(expectedAnswer('We open at 8 am.')).toBeNull();

    fake.respondWith(() => ({ text: 'Got it. And your name, please?' }));
    const run = await turn();
    expect(ofType(run.outputs, 'expect')).toEqual([{ type: 'expect', answer: 'long' }]);
  });
});

describe('openai agent: cancellation', () => {
  it('stops at once when the signal aborts mid-stream: nothing more, no error, the request is cancelled', async () => {
    fake.respondWith(() => ({ text: 'one two three four five six seven eight nine ten', toolCalls: [{ name: 'end_call', arguments: { reason: 'x' } }] }));
    fake.faults.push({ chunkDelayMs: 40 });
    const ac = new AbortController();
    const run = await turn({ signal: ac.signal, onOutput: (o, i) => { if (i === 2) ac.abort(); } });
    expect(run.error).toBeNull();
    expect(run.outputs).toHaveLength(3); // the generator ended right after the abort
    expect(run.outputs.every((o) => o.type === 'delta')).toBe(true);
    const rec = fake.requests.at(-1)!;
    await rec.ended;
    expect(rec.clientDisconnected).toBe(true);
    expect(rec.completed).toBe(false);
  });

  it('aborting before the first byte ends the turn with no output and cancels the request', async () => {
    fake.faults.push({ firstByteMs: 5_000 });
    const ac = new AbortController();
    const pending = turn({ signal: ac.signal });
    await fake.waitForRequests(fake.requests.length + 1);
    const rec = fake.requests.at(-1)!;
    ac.abort();
    const run = await pending;
    expect(run.outputs).toEqual([]);
    expect(run.error).toBeNull();
    await rec.ended;
    expect(rec.clientDisconnected).toBe(true);
  });

  it('a stalled stream delivers nothing more, and an abort ends it promptly', async () => {
    fake.respondWith(() => ({ text: 'Let me check that for you right now.' }));
    fake.faults.push({ stallAfterChunks: 3 }); // role chunk + two words
    const session = agent.startSession(tenant);
    const ac = new AbortController();
    const it = session.respond({ transcript: 'hi', history: [], signal: ac.signal })[Symbol.asyncIterator]();
    expect(await it.next()).toEqual({ done: false, value: { type: 'delta', text: 'Let' } });
    expect(await it.next()).toEqual({ done: false, value: { type: 'delta', text: ' me' } });
    const third = it.next();
    const settled = await Promise.race([third.then(() => 'settled'), new Promise((r) => setTimeout(() => r('pending'), 400))]);
    expect(settled).toBe('pending');
    const abortedAt = performance.now();
    ac.abort();
    expect(await third).toEqual({ done: true, value: undefined });
    expect(performance.now() - abortedAt).toBeLessThan(1_000);
    const rec = fake.requests.at(-1)!;
    await rec.ended;
    expect(rec.clientDisconnected).toBe(true);
  });

  it('the backstop fails a stall, or a silent server, with timeout when nobody aborts', async () => {
    const quick = createOpenAiAgent({ apiKey: API_KEY, baseUrl: fake.url, timeoutMs: 300 });
    fake.respondWith(() => ({ text: 'Let me check that for you.' }));
    fake.faults.push({ stallAfterChunks: 2 }, { firstByteMs: 3_000 });
    const stalled = await turn({ provider: quick });
    expect(expectFailure(stalled, 'timeout').transient).toBe(true);
    expect(stalled.text).toBe('Let');
    const silent = await turn({ provider: quick });
    expectFailure(silent, 'timeout');
    expect(silent.outputs).toEqual([]);
  });
});

describe('openai agent: failures', () => {
  it('maps HTTP statuses: 401/403 auth, 429 quota, 500/503 http', async () => {
    const cases = [[401, 'auth'], [403, 'auth'], [429, 'quota'], [500, 'http'], [503, 'http']] as const;
    for (const [status, failure] of cases) {
      fake.faults.push({ status, retryAfterS: 7 });
      const run = await turn();
      const err = expectFailure(run, failure);
      expect(err.status).toBe(status);
      expect(run.outputs).toEqual([]);
      if (status === 429) expect(err.message).toContain('retry after 7 s');
    }
  });

  it('a wrong key is auth, and the message quotes no part of the key', async () => {
    const wrongKey = 'sk-wrong-key-000000000000000000000000abcd';
    const run = await turn({ provider: createOpenAiAgent({ apiKey: wrongKey, baseUrl: fake.url }) });
    const err = expectFailure(run, 'auth');
    expect(err.message).not.toContain('abcd'); // OpenAI's own 401 text quotes the key's last four characters
    expect(err.message).not.toContain(wrongKey);
  });

  // A drop is `network`, not `protocol`: every byte that arrived was valid SSE; the transport
  // failed (undici's body reader throws "terminated" when the socket closes before the last
  // chunk). `protocol` is for a server that answers, but with something unreadable.
  it('a connection dropped mid-stream is network, after the deltas that did arrive', async () => {
    fake.respondWith(() => ({ text: 'We are open from eight to six.' }));
    fake.faults.push({ dropAfterChunks: 3 });
    const run = await turn();
    expectFailure(run, 'network');
    expect(run.text).toBe('We are');
    expect(fake.requests.at(-1)!.dropped).toBe(true);
  });

  it('a refused connection is network', async () => {
    const closed = await startOpenAiChatServer();
    await closed.close();
    const run = await turn({ provider: createOpenAiAgent({ apiKey: API_KEY, baseUrl: closed.url }) });
    expect(expectFailure(run, 'network').message).toContain('ECONNREFUSED');
  });

  it('a malformed SSE chunk is protocol', async () => {
    fake.respondWith(() => ({ text: 'We are open from eight to six.' }));
    fake.faults.push({ malformedAfterChunks: 2 });
    const run = await turn();
    expectFailure(run, 'protocol');
    expect(run.text).toBe('We');
  });

  it('puts neither the key nor the transcript into errors or logs, even with OPENAI_LOG=debug', async () => {
    vi.stubEnv('OPENAI_LOG', 'debug');
    const logged: string[] = [];
    const capture = (...args: unknown[]) => void logged.push(args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' '));
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((level) => vi.spyOn(console, level).mockImplementation(capture));
    try {
      const logging = createOpenAiAgent({ apiKey: API_KEY, baseUrl: fake.url, timeoutMs: 300 });
      fake.respondWith(() => ({ text: 'Sorry about that.' }));
      fake.faults.push({ status: 401 }, { status: 429 }, { status: 500 }, { dropAfterChunks: 2 }, { malformedAfterChunks: 1 },
        { stallAfterChunks: 1 }, {});
      const errors: unknown[] = [];
      for (let i = 0; i < 7; i++) {
        const run = await turn({ provider: logging, transcript: `${SECRET_WORDS} ${i}` });
        if (run.error) errors.push(run.error);
      }
      expect(errors).toHaveLength(6);
      for (const err of errors) {
        expect((err as Error).cause).toBeUndefined(); // SDK errors (with server text) are not attached
        const seen = [String(err), (err as Error).stack ?? '', JSON.stringify(err)].join('\n');
        expect(seen).not.toContain(API_KEY);
        expect(seen).not.toContain(API_KEY.slice(-4));
        expect(seen).not.toContain(SECRET_WORDS);
      }
      expect(logged).toEqual([]); // the SDK's own logging stays off (it would print raw SSE data on a parse error)
    } finally {
      for (const spy of spies) spy.mockRestore();
      vi.unstubAllEnvs();
    }
  });
});
