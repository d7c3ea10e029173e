/**
 * The OpenAI receptionist's cost bounds (tenant `limits`), through the real `openai` SDK against
 * the fake Chat Completions server: `max_completion_tokens` on every request and a reply cut at it,
 * and the history window (the latest `historyTurns` lines, with a note on what was dropped and what
 * was already sent to the team).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TenantSchema, type Tenant, type TenantFile } from '../../src/config/tenant.schema.js';
import { ProviderError } from '../../src/providers/errors.js';
import { createOpenAiAgent } from '../../src/providers/agent/openai.js';
import type { AgentOutput, AgentProvider, AgentSession, ChatTurn } from '../../src/providers/agent/types.js';
import { startOpenAiChatServer, type FakeOpenAiChat } from '../fakes/openai-chat-server.js';

const API_KEY = 'sk-test-limits-0123456789abcdef';

let fake: FakeOpenAiChat;
let agent: AgentProvider;

const clinic = (limits: TenantFile['limits'] = {}): Tenant => TenantSchema.parse({
  id: 'limits-vet', name: 'Limits Vet', phoneNumbers: ['+15550109700'], greeting: 'Limits Vet, hello.',
  transfer: { frontDesk: '+15550109701' }, emergency: { script: 'Go to the emergency hospital now.' },
  info: { hours: 'weekdays', address: '3 Bound Street' }, limits,
});

beforeAll(async () => {
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

async function turn(session: AgentSession, transcript: string, history: ChatTurn[] = []) {
  const outputs: AgentOutput[] = [];
  let error: unknown = null;
  try {
    for await (const o of session.respond({ transcript, history, signal: new AbortController().signal })) outputs.push(o);
  } catch (err) {
    error = err;
  }
  return { outputs, error, text: outputs.map((o) => (o.type === 'delta' ? o.text : '')).join('') };
}

/** `n` lines of alternating caller and assistant talk, numbered. */
const talk = (n: number): ChatTurn[] =>
  Array.from({ length: n }, (_, i): ChatTurn => ({ role: i % 2 === 0 ? 'caller' : 'agent', text: `line ${i + 1}` }));

describe('openai agent: max_completion_tokens', () => {
  it("sends the clinic's limit (default 300) on every request", async () => {
    await turn(agent.startSession(clinic()), 'hello');
    expect(fake.requests.at(-1)!.body.max_completion_tokens).toBe(300);
    await turn(agent.startSession(clinic({ maxCompletionTokens: 80 })), 'hello');
    expect(fake.requests.at(-1)!.body.max_completion_tokens).toBe(80);
  });

  it('a reply cut at the limit is spoken as far as it got, and its cut-off tool call is dropped', async () => {
    const words = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');
    fake.respondWith(() => ({ text: words, toolCalls: [{ name: 'transfer_to_staff', arguments: { reason: 'asked' } }] }));
    const run = await turn(agent.startSession(clinic({ maxCompletionTokens: 50 })), 'tell me everything');
    expect(run.error).toBeNull();
    expect(run.text).toBe(words.split(' ').slice(0, 50).join(' '));
    expect(run.outputs.filter((o) => o.type === 'action')).toEqual([]);
    expect(fake.requests.at(-1)!.usage?.completion_tokens).toBe(50);
  });

  it('a reply cut before any words (a tool call too long) fails the turn with protocol', async () => {
    fake.respondWith(() => ({ toolCalls: [{ name: 'take_message', arguments: { recipient: null, caller_name: 'Sam', message: 'x'.repeat(500), callback_number: null, urgency: 'routine' } }] }));
    const run = await turn(agent.startSession(clinic({ maxCompletionTokens: 50 })), 'please take a message');
    expect(run.error).toBeInstanceOf(ProviderError);
    expect((run.error as ProviderError).failure).toBe('protocol');
    expect(run.outputs.filter((o) => o.type === 'request')).toEqual([]);
  });
});

describe('openai agent: history window', () => {
  it('sends at most historyTurns lines, the latest, after a note saying how many were dropped', async () => {
    await turn(agent.startSession(clinic({ historyTurns: 4 })), 'and one more thing', talk(10));
    const [system, note, ...rest] = fake.requests.at(-1)!.body.messages;
    expect(system?.role).toBe('system');
    expect(note).toEqual({ role: 'system', content: expect.stringContaining('first 6 lines are not shown') as unknown });
    expect(note?.content).toContain('Nothing has been sent to the team yet');
    expect(rest).toEqual([
      { role: 'user', content: 'line 7' },
      { role: 'assistant', content: 'line 8' },
      { role: 'user', content: 'line 9' },
      { role: 'assistant', content: 'line 10' },
      { role: 'user', content: 'and one more thing' },
    ]);
  });

  it('the default window (20 lines) leaves a short call whole, with no note', async () => {
    await turn(agent.startSession(clinic()), 'thanks', talk(20));
    const messages = fake.requests.at(-1)!.body.messages;
    expect(messages.filter((m) => m.role === 'system')).toHaveLength(1);
    expect(messages).toHaveLength(22);
    await turn(agent.startSession(clinic()), 'thanks', talk(21));
    expect(fake.requests.at(-1)!.body.messages.filter((m) => m.role === 'system')).toHaveLength(2);
  });

  it('the note lists the requests this call already sent, so the model does not send them again', async () => {
    const session = agent.startSession(clinic({ historyTurns: 2 }));
    fake.respondWith(() => ({ toolCalls: [{ name: 'request_appointment', arguments: {
      kind: 'appointment', pet_name: 'Daisy', pet_species: 'dog', owner_name: 'Sam', reason: 'limping', preferred_time: 'Monday',
      callback_number: '5550100123', urgency: 'routine' } }] }));
    const first = await turn(session, 'yes that is right', talk(2));
    expect(first.outputs.filter((o) => o.type === 'request')).toHaveLength(1);
    fake.respondWith(() => ({ toolCalls: [{ name: 'take_message', arguments: {
      recipient: 'Dr. Lee', caller_name: 'Sam', message: 'call me', callback_number: '5550100123', urgency: 'routine' } }] }));
    await turn(session, 'yes send it', talk(6));
    await turn(session, 'anything else', talk(8));
    const note = fake.requests.at(-1)!.body.messages[1];
    expect(note?.content).toBe(
      'The call has gone on for a while: its first 6 lines are not shown. ' +
        'Already sent to the team this call: an appointment request for Daisy; a message for Dr. Lee. Do not send these again.',
    );
  });
});
