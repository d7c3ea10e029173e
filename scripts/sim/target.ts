/** Where a simulated call goes: an engine in this process, or a running server. */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BargeInTiming, TurnTiming } from '../../src/journal/turn-timing.js';
import { loadTenants } from '../../src/config/tenants.js';
import { localAgent } from '../../src/providers/agent/local.js';
import { createLocalStt } from '../../src/providers/stt/local.js';
import { createLocalTts } from '../../src/providers/tts/local.js';
import { PromptCache } from '../../src/providers/tts/prompt-cache.js';
import { energyVad } from '../../src/providers/vad/energy.js';
import { startEngine, TEST_ACCOUNT, TEST_BASE_URL, TEST_TOKEN, type TestEngine } from '../../test/support/engine.js';
import { restRecorder } from '../../test/support/rest-recorder.js';

const FIXTURE_TENANTS = resolve(fileURLToPath(new URL('../..', import.meta.url)), 'test/fixtures/tenants');

export interface Target {
  url: string;
  baseUrl: string;
  token: string;
  accountSid: string;
  inProcess: boolean;
  /** Dotted state path, 'ended' once the call is gone; null if unknown. */
  state(callSid: string): Promise<string | null>;
  /** Agent lines committed so far (what the caller heard), in-process only. */
  agentLines?(callSid: string): string[];
  outcome?(callSid: string): string | null;
  engineTimings?(callSid: string): { turns: TurnTiming[]; bargeIns: BargeInTiming[] } | null;
  close(): Promise<void>;
}

/** An engine in this process on the embedded providers and the fixture clinics. */
export async function startLocalEngine(): Promise<Target> {
  const tts = createLocalTts();
  const prompts = new PromptCache(tts);
  await prompts.warm((await loadTenants(FIXTURE_TENANTS)).all());
  const stt = await createLocalStt({ onWarning: () => undefined });
  const engine = await startEngine({
    providers: { vad: energyVad, stt, tts, agent: localAgent },
    prompts,
    rest: restRecorder().rest,
    env: { TENANTS_DIR: FIXTURE_TENANTS, LOG_LEVEL: 'info' },
  });
  return engineTarget(engine);
}

/** A target for an engine started in this process (test/support/engine.ts); `close` closes it. */
export function engineTarget(engine: TestEngine): Target {
  const record = (sid: string) => engine.registry.session(sid)?.record ?? engine.registry.recentCalls().find((r) => r.callSid === sid) ?? null;
  return {
    url: engine.url,
    baseUrl: TEST_BASE_URL,
    token: TEST_TOKEN,
    accountSid: TEST_ACCOUNT,
    inProcess: true,
    state: (sid) => Promise.resolve(engine.registry.session(sid)?.statePath ?? 'ended'),
    agentLines: (sid) => (engine.registry.session(sid)?.history ?? []).filter((h) => h.role === 'agent').map((h) => h.text),
    outcome: (sid) => record(sid)?.outcome ?? null,
    engineTimings: (sid) => {
      const r = record(sid);
      return r ? { turns: r.turns.map((t) => ({ ...t })), bargeIns: [...r.bargeIns] } : null;
    },
    close: () => engine.close(),
  };
}

/** A running server: states from GET /twilio/sessions. */
export function remoteTarget(o: { url: string; baseUrl: string; token: string; accountSid: string }): Target {
  const url = o.url.replace(/\/$/, '');
  return {
    ...o,
    url,
    inProcess: false,
    state: async (sid) => {
      try {
        // A server with INSPECTOR_TOKEN lists calls only to its bearer (docs/operations.md).
        const inspector = process.env.INSPECTOR_TOKEN;
        const headers: Record<string, string> = inspector ? { authorization: `Bearer ${inspector}` } : {};
        const res = await fetch(`${url}/twilio/sessions`, { headers, signal: AbortSignal.timeout(1000) });
        if (!res.ok) return null;
        const body = (await res.json()) as { calls?: { callSid: string; state: string }[] };
        return body.calls?.find((c) => c.callSid === sid)?.state ?? 'ended';
      } catch {
        return null;
      }
    },
    close: () => Promise.resolve(),
  };
}
