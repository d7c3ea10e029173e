/**
 * The daily provider budget over whole calls on the cloud providers (fake vendor servers, real
 * adapters, the real Media Streams protocol): a clinic whose budget the first call uses up is
 * warned about in the log and on /metrics, and its next call runs on the embedded providers,
 * sending nothing more to the vendors.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startCloudEngine, type CloudRig } from '../support/cloud-engine.js';
import { FIXTURE_TENANTS_DIR, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN } from '../support/engine.js';
import { FakeTwilio } from '../support/fake-twilio.js';
import { QUICK_VET, tone } from './conversation-kit.js';

const rigs: CloudRig[] = [];
const calls: FakeTwilio[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(calls.splice(0).map((c) => c.dispose()));
  await Promise.all(rigs.splice(0).map((r) => r.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Quick Vet (test/fixtures/tenants) with a chat budget the first answer uses up. */
function tenantsWithBudget(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vetline-budget-'));
  dirs.push(dir);
  const quick = JSON.parse(readFileSync(join(FIXTURE_TENANTS_DIR, 'quick-vet.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'quick-vet.json'), JSON.stringify({ ...quick, limits: { dailyProviderBudget: { agentTokens: 200 } } }));
  return dir;
}

async function dial(rig: CloudRig) {
  const call = await FakeTwilio.call({
    serverUrl: rig.engine.url, publicBaseUrl: TEST_BASE_URL, authToken: TEST_TOKEN, accountSid: TEST_ACCOUNT, to: QUICK_VET, from: '+15557654321', playbackSpeed: 4,
  });
  calls.push(call);
  await call.untilQuiet();
  return call;
}

const recordOf = (rig: CloudRig, callSid: string) => rig.engine.registry.session(callSid)?.record ?? rig.engine.registry.recentCalls().find((r) => r.callSid === callSid);
const logLines = (rig: CloudRig) => rig.engine.logs.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('daily provider budget over real calls', () => {
  it('the call that uses it up is warned about; the next call runs on the embedded providers', async () => {
    const rig = await startCloudEngine({ tenantsDir: tenantsWithBudget(), transcripts: ['what are your hours'], responder: () => ({ text: 'We are open eight to six.' }) });
    rigs.push(rig);
    const first = await dial(rig);
    expect(recordOf(rig, first.callSid)?.providers).toEqual({ vad: 'energy', stt: 'elevenlabs', agent: 'openai', tts: 'elevenlabs' });
    await first.say(tone(700));
    await first.waitFor(() => (recordOf(rig, first.callSid)?.usage.agentInputTokens ?? 0) > 0, 10_000, 'the answer');
    await first.untilQuiet();
    expect(logLines(rig).filter((l) => l.level === 40 && String(l.msg).startsWith('daily provider budget')).map((l) => [l.msg, l.tenantId, l.kind])).toEqual([
      ['daily provider budget 80 % used', 'quick-vet', 'agentTokens'],
      ["daily provider budget used up: the clinic's new calls use the embedded providers until 00:00 UTC", 'quick-vet', 'agentTokens'],
    ]);
    const metrics = (await rig.engine.app.inject({ method: 'GET', url: '/metrics' })).body;
    const ratio = Number(/^vetline_provider_budget_used_ratio\{clinic="quick-vet",kind="agentTokens"\} (\S+)$/m.exec(metrics)?.[1]);
    expect(ratio).toBeGreaterThanOrEqual(1);
    await first.hangUp();

    const chatRequests = rig.openai.chat.requests.length;
    const sttSessions = rig.openai.transcription.sessions.length;
    const second = await dial(rig);
    expect(recordOf(rig, second.callSid)?.providers).toEqual({ vad: 'energy', stt: 'local', agent: 'local', tts: 'local' });
    await second.say(tone(700));
    await second.untilQuiet();
    expect(rig.openai.chat.requests).toHaveLength(chatRequests);
    expect(rig.openai.transcription.sessions).toHaveLength(sttSessions);
    expect((await rig.engine.app.inject({ method: 'GET', url: '/metrics' })).body)
      .toContain('vetline_provider_budget_embedded_calls_total{clinic="quick-vet"} 1');
    expect(logLines(rig).some((l) => l.msg === "the clinic's daily provider budget is used up: this call runs on the embedded providers")).toBe(true);
  }, 60_000);
});
