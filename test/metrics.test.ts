/**
 * GET /metrics: a real engine (fake providers) finishes a call through the webhooks and the scrape
 * shows it, with the process metrics, per-engine registries and no phone number or CallSid in any
 * label; the record-to-metrics mapping is checked on its own with a hand-made CallRecord.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { initialContext } from '../machines/call/call.context.js';
import type { CallRecord } from '../src/calls/call-record.js';
import { createEngineMetrics, type MetricsSource } from '../src/metrics.js';
import { createFakeAgent } from '../src/providers/agent/fake.js';
import { createFakeStt } from '../src/providers/stt/fake.js';
import { createFakeTts } from '../src/providers/tts/fake.js';
import { createFakeVad } from '../src/providers/vad/fake.js';
import { createStreamCounters } from '../src/twilio/stream-socket.js';
import { testTenant } from './support/call-harness.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from './support/engine.js';
import { signedForm, type FormParams } from './support/twilio-sign.js';

const RIVERSIDE = '+15550100100'; // config/tenants/riverside-vet.json
const CALLER = '+15557654321';
const SID = `CA${'1'.repeat(32)}`;
const E164 = /\+\d{8,15}/;
const CALL_SID = /CA[0-9a-f]{32}/i;

const engines: TestEngine[] = [];
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
});

async function engine(env: Record<string, string> = {}) {
  const e = await startEngine({
    providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() },
    prompts: { get: () => new Uint8Array(1600) },
    env,
  });
  engines.push(e);
  return e;
}

const post = (e: TestEngine, path: string, params: FormParams) =>
  e.app.inject(signedForm({ baseUrl: TEST_BASE_URL, token: TEST_TOKEN, path, params: { AccountSid: TEST_ACCOUNT, ...params } }));

const scrape = async (e: TestEngine, headers: Record<string, string> = {}) => e.app.inject({ method: 'GET', url: '/metrics', headers });

describe('GET /metrics', () => {
  it('counts a finished call by clinic and outcome, with process metrics and no personal data', async () => {
    const e = await engine();
    const voice = await post(e, '/twilio/voice', { CallSid: SID, From: CALLER, To: RIVERSIDE, CallStatus: 'ringing', Direction: 'inbound' });
    expect(voice.statusCode).toBe(200);
    expect(e.registry.activeCount).toBe(1);
    expect((await scrape(e)).body).toMatch(/^vetline_calls_active 1$/m);

    await post(e, '/twilio/status', { CallSid: SID, CallStatus: 'no-answer', SequenceNumber: '0', From: CALLER, To: RIVERSIDE });
    expect(e.registry.activeCount).toBe(0);
    await post(e, '/twilio/dtmf', { CallSid: SID, From: CALLER, To: RIVERSIDE, Digits: '1' });

    const res = await scrape(e);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = res.body;
    expect(text).toContain('vetline_calls_total{clinic="riverside-vet",outcome="notConnected"} 1');
    expect(text).toMatch(/^vetline_calls_active 0$/m);
    expect(text).toMatch(/^vetline_dtmf_fallbacks_total 1$/m);
    expect(text).toContain('vetline_interruptions_total{kind="false"} 0');
    expect(text).toMatch(/^vetline_stream_frames_total \d+$/m);
    expect(text).toContain('vetline_stream_invalid_frames_total{reason=');
    expect(text).toContain('# TYPE vetline_turn_latency_seconds histogram');
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    expect(text).toContain('process_resident_memory_bytes');
    expect(text).not.toMatch(E164);
    expect(text).not.toMatch(CALL_SID);
    expect(text).not.toContain(CALLER);
  });

  it('keeps one registry per engine', async () => {
    const a = await engine();
    const b = await engine();
    await post(a, '/twilio/voice', { CallSid: SID, From: CALLER, To: RIVERSIDE, CallStatus: 'ringing' });
    await post(a, '/twilio/status', { CallSid: SID, CallStatus: 'busy', SequenceNumber: '0' });
    expect((await scrape(a)).body).toContain('vetline_calls_total{clinic="riverside-vet",outcome="notConnected"} 1');
    expect((await scrape(b)).body).not.toContain('vetline_calls_total{');
  });

  it('requires INSPECTOR_TOKEN as a bearer token when it is set', async () => {
    const e = await engine({ INSPECTOR_TOKEN: 'metrics-secret-0123456789abcdef0123456' });
    expect((await scrape(e)).statusCode).toBe(401);
    expect((await scrape(e, { authorization: 'Bearer wrong' })).statusCode).toBe(401);
    const ok = await scrape(e, { authorization: 'Bearer metrics-secret-0123456789abcdef0123456' });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('vetline_calls_active 0');
  });
});

describe('engine metrics from call records', () => {
  function source() {
    const ended = new Set<(r: CallRecord) => void>();
    const dialed = new Set<(r: CallRecord, s: string) => void>();
    const src: MetricsSource & { end(r: CallRecord): void; dial(r: CallRecord, s: string): void } = {
      activeCount: 2,
      onCallEnded: (l) => (ended.add(l), () => ended.delete(l)),
      onDialResult: (l) => (dialed.add(l), () => dialed.delete(l)),
      end: (r) => ended.forEach((l) => l(r)),
      dial: (r, s) => dialed.forEach((l) => l(r, s)),
    };
    return src;
  }

  const record = (over: Partial<CallRecord>): CallRecord => ({
    callSid: SID, tenantId: 'clinic-a', startedAt: '2025-01-01T00:00:00.000Z', endedAt: '2025-01-01T00:01:00.000Z',
    outcome: 'completed', final: null, recordings: [], recordingTranscripts: [], dialStatus: null,
    turns: [], bargeIns: [],
    usage: { agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 0, sttSpeechMs: 0, discarded: { replies: 0, agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 0 } }, fallbacks: [],
    providers: { vad: 'energy', stt: 'local', agent: 'local', tts: 'local' }, ...over,
  });

  it('maps turns, barge-ins, interruptions, emergencies, transfers, appointments and journal errors', async () => {
    const calls = source();
    const streams = createStreamCounters();
    streams.framesIn = 1234;
    streams.invalid.json = 3;
    const stats = { opened: 1, open: 0, linesWritten: 0, bytesWritten: 0, flushes: 0, writeErrors: 2, linesLost: 7, truncated: 0 };
    const m = createEngineMetrics({ calls, streams, journal: { stats }, defaultMetrics: false });

    calls.end(record({
      outcome: 'transferred',
      turns: [{ generation: 1, endOfSpeechToAudioMs: 650, sttMs: 120, endpointMs: 300, agentFirstTextMs: 90, ttsFirstAudioMs: 210, firstAudioMs: 240, prepared: true }],
      bargeIns: [{ clearLatencyMs: 140, onsetStreamMs: 5_000 }],
      usage: { agentInputTokens: 900, agentOutputTokens: 40, ttsCharacters: 120, sttSpeechMs: 2000, discarded: { replies: 2, agentInputTokens: 0, agentOutputTokens: 0, ttsCharacters: 31 } },
      final: {
        ...initialContext({ callSid: SID, tenant: testTenant() }),
        counts: { silencePrompts: 0, failedTurns: 0, consentAsks: 0, discardedReplies: 0, interruptions: 3, falseInterruptions: 1 },
        emergency: { via: 'speech', keyword: 'not breathing', certainty: 'clear', basis: 'phrase', transcript: 'final', confidence: 0.9 },
        requests: [{ id: 'fu-1', kind: 'appointment', petName: 'Rex', petSpecies: null, ownerName: 'Ann', reason: 'limping', preferredTime: 'Monday',
          message: null, recipient: null, callback: { kind: 'none' }, urgency: 'routine' }],
      },
    }));
    calls.dial(record({ outcome: 'transferred' }), 'busy');
    calls.dial(record({ outcome: 'transferred' }), 'something new');

    const text = await m.render();
    expect(text).toContain('vetline_calls_total{clinic="clinic-a",outcome="transferred"} 1');
    expect(text).toMatch(/^vetline_calls_active 2$/m);
    expect(text).toContain('vetline_turn_latency_seconds_bucket{le="0.6"} 0');
    expect(text).toContain('vetline_turn_latency_seconds_bucket{le="0.7"} 1');
    expect(text).toContain('vetline_turn_latency_seconds_sum 0.65');
    for (const stage of ['stt', 'endpoint', 'agent_first_text', 'tts_first_audio']) {
      expect(text).toContain(`vetline_turn_stage_seconds_count{stage="${stage}"} 1`);
    }
    expect(text).toContain('vetline_bargein_clear_seconds_count 1');
    expect(text).toContain('vetline_prepared_replies_total{result="used"} 1');
    expect(text).toContain('vetline_prepared_replies_total{result="discarded"} 2');
    expect(text).toMatch(/^vetline_discarded_reply_tts_characters_total 31$/m);
    expect(text).toContain('vetline_interruptions_total{kind="confirmed"} 2');
    expect(text).toContain('vetline_interruptions_total{kind="false"} 1');
    expect(text).toContain('vetline_emergencies_total{clinic="clinic-a",via="speech"} 1');
    expect(text).toContain('vetline_transfers_total{clinic="clinic-a",result="started"} 1');
    expect(text).toContain('vetline_transfers_total{clinic="clinic-a",result="busy"} 1');
    expect(text).toContain('vetline_transfers_total{clinic="clinic-a",result="other"} 1');
    expect(text).toContain('vetline_appointments_total{clinic="clinic-a"} 1');
    expect(text).toMatch(/^vetline_stream_frames_total 1234$/m);
    expect(text).toContain('vetline_stream_invalid_frames_total{reason="json"} 3');
    expect(text).toMatch(/^vetline_journal_write_errors_total 2$/m);
    expect(text).toMatch(/^vetline_journal_lines_lost_total 7$/m);
    // Free text on the record (emergency keyword, appointment fields) never becomes a label.
    for (const leak of ['not breathing', 'Rex', 'limping', SID]) expect(text).not.toContain(leak);

    // Scraped again: collected totals are not added twice.
    streams.framesIn = 1300;
    expect(await m.render()).toMatch(/^vetline_stream_frames_total 1300$/m);
    m.close();
    calls.end(record({}));
    expect(await m.render()).not.toContain('outcome="completed"');
  });
});
