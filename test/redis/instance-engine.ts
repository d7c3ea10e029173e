/**
 * Child process for test/redis/instances.test.ts: one engine instance (fake providers) sharing the
 * Redis in REDIS_URL with REDIS_HEARTBEAT_MS from the environment. Prints `{"url", "instance"}` once
 * listening, then runs until killed.
 */
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import { createFakeStt } from '../../src/providers/stt/fake.js';
import { createFakeTts } from '../../src/providers/tts/fake.js';
import { createFakeVad } from '../../src/providers/vad/fake.js';
import { CPS, TENANTS, warmPrompts } from '../e2e/conversation-kit.js';
import { startEngine, TEST_STREAM_TOKEN_SECRET } from '../support/engine.js';

const redisUrl = process.env.REDIS_URL;
if (!redisUrl) throw new Error('usage: REDIS_URL=… REDIS_HEARTBEAT_MS=… instance-engine.ts');
// No test context here: the process is killed, never closed.
const engine = await startEngine({
  providers: { vad: createFakeVad(), stt: createFakeStt(), tts: createFakeTts({ charsPerSecond: CPS }), agent: createFakeAgent() },
  prompts: await warmPrompts(),
  env: { TENANTS_DIR: TENANTS, REDIS_URL: redisUrl, REDIS_HEARTBEAT_MS: process.env.REDIS_HEARTBEAT_MS ?? '200', STREAM_TOKEN_SECRET: TEST_STREAM_TOKEN_SECRET },
});
process.stdout.write(`${JSON.stringify({ url: engine.url, instance: engine.shared?.instanceId })}\n`);
