/**
 * The per-clinic daily provider budget on its own (explicit clock, captured log): one warning at
 * 80 %, one at 100 %, then the clinic's calls get the embedded providers until midnight UTC; only
 * usage of cloud providers counts.
 */
import { describe, expect, it } from 'vitest';
import { ProviderBudget } from '../../src/calls/provider-budget.js';
import { TenantSchema, type Tenant } from '../../src/config/tenant.schema.js';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import type { Providers } from '../../src/providers/types.js';
import { captureLogger, clinicA } from '../http/edge-fixtures.js';

const small: Tenant = TenantSchema.parse({
  id: 'small-vet', name: 'Small Vet', phoneNumbers: ['+15550107200'], greeting: 'Hello.', transfer: { frontDesk: '+15550107201' },
  emergency: { script: 'Go to the emergency hospital now.' }, info: { hours: 'weekdays', address: '2 Budget Road' },
  limits: { dailyProviderBudget: { agentTokens: 1_000, ttsCharacters: 500, sttSeconds: 60 } },
});

const DAY = 24 * 60 * 60 * 1000;
const NOON = Date.UTC(2026, 10, 25, 12);

function budget(now = () => NOON) {
  const { logger, lines } = captureLogger();
  const b = new ProviderBudget({ tenants: [small, clinicA], logger, now });
  const warnings = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 40);
  return { b, warnings };
}

describe('daily provider budget', () => {
  it('warns once at 80 %, again once at 100 %, and only then sends new calls to the embedded providers', () => {
    const { b, warnings } = budget();
    b.add(small, 'agentTokens', 700);
    expect(warnings()).toEqual([]);
    b.add(small, 'agentTokens', 150);
    expect(warnings()).toMatchObject([{ msg: 'daily provider budget 80 % used', tenantId: 'small-vet', kind: 'agentTokens', used: 850, limit: 1_000, percent: 85 }]);
    b.add(small, 'ttsCharacters', 450); // another kind past 80 %: the clinic was warned already
    expect(warnings()).toHaveLength(1);
    expect(b.exhausted(small)).toBe(false);
    b.add(small, 'ttsCharacters', 50);
    expect(b.exhausted(small)).toBe(true);
    expect(warnings()[1]).toMatchObject({ tenantId: 'small-vet', kind: 'ttsCharacters', used: 500, limit: 500, percent: 100 });
    expect(warnings()[1]?.msg).toMatch(/used up: the clinic's new calls use the embedded providers until 00:00 UTC/);
    b.add(small, 'sttSeconds', 600);
    expect(warnings()).toHaveLength(2);
    expect(b.exhausted(clinicA)).toBe(false); // per clinic
  });

  it('starts again at midnight UTC', () => {
    let now = NOON;
    const { b, warnings } = budget(() => now);
    b.add(small, 'sttSeconds', 60);
    expect(b.exhausted(small)).toBe(true);
    now = Math.floor(NOON / DAY) * DAY + DAY - 1; // 23:59:59.999
    expect(b.exhausted(small)).toBe(true);
    now += 1;
    expect(b.exhausted(small)).toBe(false);
    expect(b.ratios().find((r) => r.clinic === 'small-vet' && r.kind === 'sttSeconds')?.ratio).toBe(0);
    b.add(small, 'sttSeconds', 50);
    expect(warnings().map((w) => w.msg)).toEqual([
      'daily provider budget 80 % used',
      "daily provider budget used up: the clinic's new calls use the embedded providers until 00:00 UTC",
      'daily provider budget 80 % used',
    ]);
  });

  it('reports a ratio per clinic and kind, zero for clinics without usage', () => {
    const { b } = budget();
    b.add(small, 'agentTokens', 250);
    expect(b.ratios()).toEqual([
      { clinic: 'small-vet', kind: 'agentTokens', ratio: 0.25 },
      { clinic: 'small-vet', kind: 'ttsCharacters', ratio: 0 },
      { clinic: 'small-vet', kind: 'sttSeconds', ratio: 0 },
      { clinic: 'clinic-a', kind: 'agentTokens', ratio: 0 },
      { clinic: 'clinic-a', kind: 'ttsCharacters', ratio: 0 },
      { clinic: 'clinic-a', kind: 'sttSeconds', ratio: 0 },
    ]);
  });

  it("a call bills only what its cloud providers used; once the budget is gone it gets the embedded ones", () => {
    const { b } = budget();
    const cloud = { stt: createFakeStt(), tts: createFakeTts(), agent: createFakeAgent() };
    const embedded = { stt: createFakeStt(), tts: cloud.tts, agent: createFakeAgent() }; // as if the cloud voice were the embedded one
    const providers: Providers = { vad: createFakeVad(), ...cloud, embedded };

    const first = b.forCall(small, providers);
    expect(first.overBudget).toBe(false);
    expect(first.set).toBe(providers);
    first.usage({ kind: 'agent', generation: 1, inputTokens: 300, outputTokens: 20 });
    first.usage({ kind: 'tts', generation: 1, characters: 400 }); // the embedded voice: free
    first.event({ type: 'vad.speechEnd', atMs: 0, speechMs: 3_500 });
    first.event({ type: 'vad.speechStart', atMs: 0 });
    expect(b.ratios().filter((r) => r.clinic === 'small-vet').map((r) => r.ratio)).toEqual([0.32, 0, 3.5 / 60]);

    first.usage({ kind: 'agent', generation: 1, inputTokens: 700, outputTokens: 0 });
    const second = b.forCall(small, providers);
    expect(second.overBudget).toBe(true);
    expect(second.set).toBe(embedded);
    second.usage({ kind: 'agent', generation: 1, inputTokens: 500, outputTokens: 0 });
    expect(b.ratios()[0]?.ratio).toBe(1.02);
    expect(b.embeddedCalls.get('small-vet')).toBe(1);

    // Without an embedded set (tests, tools) nothing switches and everything counts.
    const bare = b.forCall(small, { vad: createFakeVad(), ...cloud });
    expect(bare.overBudget).toBe(false);
    bare.usage({ kind: 'tts', generation: 1, characters: 100 });
    expect(b.ratios()[1]?.ratio).toBe(0.2);
  });
});
