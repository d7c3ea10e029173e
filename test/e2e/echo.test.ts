/**
 * End to end over a line that echoes (docs/design/conversation.md §2, echo guard): Twilio cancels no
 * echo, so the engine's own voice comes back in the caller's frames. Here at the loud end of the
 * issue's range (−20 dB after 120 ms), with late and bunched frames and late marks. Our voice
 * coming back must never count as the caller talking (no barge-in, no turn, nothing sent to the
 * recognizer as speech), and the caller talking over it must still be caught at once.
 */
import { beforeAll, describe, it } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import type { LineProfile } from '../support/fake-line.js';
import { QUICK_VET, lastGeneration, playedOf, replyMs, rigFor, tone, untilState, warmPrompts } from './conversation-kit.js';

const LONG =
  'We offer vaccinations, dental care and surgery for dogs and cats. Our team also does grooming on weekdays. ' +
  'We can board your pet while you travel. Ask me about any of these services.';
const LOUD_ECHO: LineProfile = {
  seed: 11,
  echo: { attenuationDb: -20, delayMs: 120 },
  jitter: { maxLateMs: 60, burstChance: 0.05 },
  lateMarksMs: [0, 60],
};

beforeAll(async () => {
  await warmPrompts();
});

describe.concurrent('a line that echoes the engine back', () => {
  it('the greeting and a whole reply coming back are not the caller; talking over the next reply still is', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: [LONG, LONG, 'Surgery starts at two hundred dollars.'] });
    const r = await rigFor(ctx, {
      agent,
      stt: ['tell me about your services', 'and grooming', { partials: ['how much does surgery'], final: 'how much does surgery cost' }],
      line: LOUD_ECHO,
    });
    const call = await r.dial(QUICK_VET);
    const sid = call.callSid;
    const speechStarts = () => r.stt.streams.reduce((n, s) => n + s.starts, 0);
    await untilState(r, call, 'listening.waiting', 5_000);
    await call.untilQuiet(400);
    expect(speechStarts()).toBe(0); // the greeting's echo opened no speech segment

    // The reply's generation is the first after the greeting's: a reply prepared during the
    // end-of-turn window has its audio sent the moment it reaches reply.speaking, one that was not
    // a moment later, so the playback generation is read from the marks rather than counted.
    const greeting = lastGeneration(call);
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    await call.waitFor((c) => lastGeneration(c) > greeting, 1_000, "the reply's first mark");
    const reply = lastGeneration(call);
    await call.waitFor((c) => playedOf(c, reply) === replyMs(LONG), 10_000, 'the whole reply');
    await untilState(r, call, 'listening.waiting', 2_000);
    await call.untilQuiet(500); // and the echo's tail
    expect(call.clears).toEqual([]);
    expect(r.engine.registry.session(sid)?.record.bargeIns).toEqual([]);
    expect(speechStarts()).toBe(1); // the question only
    expect(r.trace(sid).filter((s) => s === 'listening.hearing')).toHaveLength(1);
    expect(r.engine.registry.session(sid)?.history).toEqual([
      { role: 'caller', text: 'tell me about your services' },
      { role: 'agent', text: LONG },
    ]);

    // A real barge-in over the same echo: caught at the echo guard's 150 ms of speech.
    const first = lastGeneration(call);
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    await call.waitFor((c) => lastGeneration(c) > first, 1_000, "the second reply's first mark");
    const second = lastGeneration(call);
    await call.waitFor((c) => playedOf(c, second) >= 1_400, 6_000, '1.4 s of the second reply');
    const onsetMs = call.now();
    const spoken = call.say(tone(900));
    await call.waitFor((c) => c.clears.length > 0, 2_000, 'clear');
    // 150 ms of speech, plus up to 60 ms of line delay, plus the same slack as on a perfect line.
    expect(call.clears[0]! - onsetMs).toBeGreaterThanOrEqual(100);
    expect(call.clears[0]! - onsetMs).toBeLessThan(150 + 60 + 150);
    await spoken;
    await untilState(r, call, 'listening.waiting', 8_000);
    expect(call.clears).toHaveLength(1);
    expect(r.logs(sid, 'caller interrupted').map((l) => l.confirmed)).toEqual([true]);
    expect(r.engine.registry.session(sid)?.history.at(-1)).toEqual({ role: 'agent', text: 'Surgery starts at two hundred dollars.' });
    expect(call.protocolErrors).toEqual([]);
  }, 30_000);
});
