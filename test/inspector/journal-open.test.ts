/**
 * POST /inspector/api/journal: a call journal opened from disk is replayed and comes back in the
 * shape the page shows for a finished call (snapshots for time travel, timeline, transcript); a bad
 * file is refused naming its line; the access rules are the inspector's.
 */
import { readFileSync } from 'node:fs';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineMode } from '../../src/config/mode.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import { InspectorFeed } from '../../src/inspector/feed.js';
import type { JournalDetail } from '../../src/inspector/journal.js';
import { JOURNAL_BODY_LIMIT, registerInspector } from '../../src/inspector/plugin.js';

const TOKEN = 'inspector-token-0123456789abcdef';
const BARGE_IN = readFileSync(new URL('../fixtures/journals/barge-in.jsonl', import.meta.url), 'utf8');
const DTMF = readFileSync(new URL('../fixtures/journals/dtmf-transfer.jsonl', import.meta.url), 'utf8');
const tenants = { all: () => [{ id: 'quick-vet', name: 'Quick Vet', phoneNumbers: ['+15550100300'] } as unknown as Tenant] };

let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

async function start(mode: EngineMode, token: string | null) {
  app = Fastify();
  await app.register(formbody);
  const nodeEnv = mode === 'production' ? 'production' : 'development';
  const config = { nodeEnv, mode, publicBaseUrl: 'https://vetline.example', inspector: { token }, webhookValidation: 'on', twilio: { accountSid: null, authToken: null } } as const;
  await registerInspector(app, { feed: new InspectorFeed(), tenants, config });
  await app.ready();
  return app;
}

const post = (app: FastifyInstance, body: string, headers: Record<string, string> = {}, name = 'barge-in.jsonl') =>
  app.inject({ method: 'POST', url: `/inspector/api/journal?name=${encodeURIComponent(name)}`, payload: body, headers: { 'content-type': 'application/x-ndjson', ...headers } });

/** Leaf of a snapshot's active ids, without the root: `listening.waiting`. */
const leaf = (active: string[]) => (active.at(-1) ?? '').replace(/^call\./, '');

describe('opening a journal in the inspector', () => {
  it('replays the barge-in fixture into a finished call with its states, timeline and transcript', async () => {
    const app = await start('development', null);
    const res = await post(app, BARGE_IN);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    const detail = res.json<JournalDetail>();
    expect(detail.summary).toMatchObject({ callSid: 'CA9c175bfa1fcbc257bdd13ed086030046', clinic: 'Quick Vet', live: false, outcome: 'callerHungUp' });
    expect(detail.journal).toMatchObject({ source: 'barge-in.jsonl', outcome: 'callerHungUp', recordedOutcome: 'callerHungUp', divergences: [] });

    // The states over time, in the order the fixture's call went through them (docs/journal.md).
    const leaves = detail.snapshots.map((s) => leaf(s.active)).filter((l, i, all) => l !== all[i - 1]);
    expect(leaves).toEqual([
      'connecting', 'greeting', 'listening.waiting', 'listening.hearing', 'listening.transcribing', 'listening.pausing',
      'reply.thinking', 'reply.speaking', 'reply.interrupted.callerTalking',
      'listening.hearing', 'listening.transcribing', 'listening.pausing', 'reply.thinking', 'reply.speaking', 'listening.waiting', 'ended',
    ]);
    expect(detail.snapshots.at(-1)?.t).toBeCloseTo(12141.4, 1);
    expect(detail.current?.active).toContain('call.ended');
    // Time travel has more than the transitions: history changes and sampled contexts too.
    expect(detail.snapshots.length).toBeGreaterThan(leaves.length);

    // The timeline says why each transition happened; transcripts and agent text are there.
    const labels = detail.timeline.map((i) => `${i.label} ${i.detail}`);
    expect(labels).toContain('transcript what are your hours');
    expect(labels).toContain('transcript i need an appointment');
    expect(detail.timeline.find((i) => i.kind === 'state' && i.label.endsWith('→ reply.interrupted.callerTalking'))?.detail).toMatch(/^on vad\.speechStart/);
    expect(detail.timeline.some((i) => i.kind === 'agent')).toBe(true);

    // The transcript (the machine's history) at the end, with the cut reply known.
    const history = (detail.current?.context as { history: { role: string; text: string }[] }).history;
    expect(history.filter((h) => h.role === 'caller').map((h) => h.text)).toEqual(['what are your hours', 'i need an appointment']);
    expect(detail.replies.some((r) => r.full !== r.heard)).toBe(true);
    // Turn latency from the outcome line.
    expect(detail.turns.length).toBeGreaterThan(0);
  });

  it('accepts text/plain too, and a DTMF transfer ends transferred', async () => {
    const app = await start('local', null);
    const res = await post(app, DTMF, { 'content-type': 'text/plain; charset=utf-8' }, 'dtmf transfer?.jsonl');
    expect(res.statusCode).toBe(200);
    const detail = res.json<JournalDetail>();
    expect(detail.summary).toMatchObject({ outcome: 'transferred', transferred: true, live: false });
    expect(detail.journal.source).toBe('dtmf_transfer_.jsonl');
    expect(detail.snapshots.map((s) => leaf(s.active))).toEqual(expect.arrayContaining(['transferring.announcing', 'transferring.handedOff', 'ended']));
  });

  it('refuses a malformed journal with 400, naming the line', async () => {
    const app = await start('development', null);
    const lines = BARGE_IN.split('\n');
    lines[2] = '{"t":12.8,"type":"tts.chunk","generation":1,"bytes":"lots"}';
    const wrongField = await post(app, lines.join('\n'));
    expect(wrongField.statusCode).toBe(400);
    const refused = wrongField.json<{ code: string; message: string }>();
    expect(refused.code).toBe('VET_E_BAD_REQUEST');
    expect(refused.message).toMatch(/^barge-in\.jsonl:3: tts\.chunk: bytes/);

    lines[2] = 'not json at all';
    const notJson = (await post(app, lines.join('\n'))).json<{ code: string; message: string }>();
    expect(notJson.message).toMatch(/^barge-in\.jsonl:3: not JSON/);

    const noHeader = await post(app, BARGE_IN.split('\n').slice(1).join('\n'));
    expect(noHeader.statusCode).toBe(400);
    expect(noHeader.json<{ message: string }>().message).toMatch(/^barge-in\.jsonl:1: header/);

    // Above Fastify's default body limit (1 MiB) is fine; above a journal's bound (5 MB) is not.
    const big = `${BARGE_IN.split('\n')[0]}\n${'{"t":1,"type":"twilio.mark","generation":1,"epoch":0,"endMs":100}\n'.repeat(20_000)}`;
    expect(big.length).toBeGreaterThan(1 << 20);
    expect((await post(app, big)).statusCode).not.toBe(413);
    expect((await post(app, 'x'.repeat(JOURNAL_BODY_LIMIT + 1))).statusCode).toBe(413);

    const empty = await post(app, '');
    expect(empty.statusCode).toBe(400);
    expect(empty.json()).toMatchObject({ code: 'VET_E_BAD_REQUEST' });
  });

  it('follows the inspector access rules: disabled in production without a token, the token required with one', async () => {
    const disabled = await start('production', null);
    expect((await post(disabled, BARGE_IN)).statusCode).toBe(404);
    await disabled.close();

    const guarded = await start('production', TOKEN);
    const denied = await post(guarded, BARGE_IN);
    expect(denied.statusCode).toBe(401);
    expect(denied.body).toBe('');
    expect((await post(guarded, BARGE_IN, { authorization: 'Bearer wrong-token-0123456789' })).statusCode).toBe(401);
    expect((await post(guarded, BARGE_IN, { authorization: `Bearer ${TOKEN}` })).statusCode).toBe(200);
  });
});
