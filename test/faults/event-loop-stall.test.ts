/**
 * Fault 4 (docs/design/reliability.md F12): the event loop blocked for 200 ms mid-call, once while the caller
 * talks and once while our reply plays. Engine, fake Twilio and test share this process, so both
 * calls stall together, as every call on a real instance would. The calls must recover: no crash,
 * exactly one turn per question, every outbound frame sent once (none lost, none repeated), the
 * whole reply heard, and the stall costing at most its own length in audio.
 */
import { performance } from 'node:perf_hooks';
import { describe, it } from 'vitest';
import { Player } from '../../src/twilio/player.js';
import { replyMs, sleep, tone } from '../e2e/conversation-kit.js';
import type { FakeTwilio } from '../support/fake-twilio.js';
import { HOURS, converse, faultRig, later, untilState } from './fault-kit.js';

const STALL_MS = 200;

/** Blocks the event loop: no timer, socket or promise runs meanwhile. Returns how long it held. */
function stall(ms: number): number {
  const start = performance.now();
  while (performance.now() - start < ms) {
    // spin: hold the loop
  }
  return performance.now() - start;
}

/** Outbound media bytes and mark end-times per playback generation, in arrival order (a mark follows its media). */
function framesByGeneration(call: FakeTwilio): Map<number, { bytes: number; marks: number[]; mediaAt: number[] }> {
  const out = new Map<number, { bytes: number; marks: number[]; mediaAt: number[] }>();
  let pending: { bytes: number; atMs: number }[] = [];
  for (const rec of call.outbound) {
    const m = rec.message;
    if (m?.event === 'media') pending.push({ bytes: Buffer.from(m.media.payload, 'base64').length, atMs: rec.atMs });
    if (m?.event !== 'mark') continue;
    const info = Player.parseMark(m.mark.name);
    if (!info) continue;
    const g = out.get(info.generation) ?? { bytes: 0, marks: [], mediaAt: [] };
    for (const p of pending) {
      g.bytes += p.bytes;
      g.mediaAt.push(p.atMs);
    }
    g.marks.push(info.endMs);
    out.set(info.generation, g);
    pending = [];
  }
  return out;
}

describe('the event loop stalls mid-call', () => {
  it(`${STALL_MS} ms while the caller talks and ${STALL_MS} ms mid-reply: the turn completes, no frame lost or repeated, the neighbour too`, async (ctx) => {
    const { expect } = ctx;
    const r = await faultRig(ctx);
    const call = await r.dial();
    const neighbour = await r.dial();
    await untilState(r, call, 'listening.waiting', 10_000);
    const neighbourDone = later(converse(r, neighbour));

    // Stall 1: mid-utterance, inbound frames pile up in the socket and arrive in a burst.
    const spoken = call.say(tone(1_000));
    await untilState(r, call, 'listening.hearing', 3_000);
    await sleep(300);
    const stall1 = stall(STALL_MS);
    expect(await spoken).toBe(true);

    // Stall 2: mid-reply, the pacer misses its ticks with audio queued.
    await untilState(r, call, 'reply.speaking', 6_000);
    await sleep(400);
    const stall2At = call.now();
    const stall2 = stall(STALL_MS);
    await untilState(r, call, 'listening.waiting', 10_000);

    const history = r.engine.registry.session(call.callSid)?.history ?? [];
    expect(history.map((h) => h.role)).toEqual(['caller', 'agent']); // one turn, not split in two by the burst
    expect(history[0]?.text).toBe(HOURS);
    const answer = history[1]?.text ?? '';
    expect(answer).toContain('Monday to Friday');

    // Every generation: media bytes = audio length its marks claim, marks strictly increasing.
    const gens = framesByGeneration(call);
    for (const [, g] of gens) {
      expect(g.marks).toEqual([...g.marks].sort((a, b) => a - b));
      expect(new Set(g.marks).size).toBe(g.marks.length);
      expect(g.bytes).toBe((g.marks.at(-1) ?? 0) * 8);
    }
    const replyGen = Math.max(...gens.keys());
    const reply = gens.get(replyGen);
    expect(reply?.bytes).toBe(replyMs(answer) * 8);
    expect(call.protocolErrors).toEqual([]);
    await call.waitFor((c) => c.heardMs() >= [...gens.values()].reduce((ms, g) => ms + (g.marks.at(-1) ?? 0), 0), 3_000, 'all audio heard');

    // The stall shows in the send times, and the caller lost at most the stall's length of audio.
    const sendGaps = (reply?.mediaAt ?? []).slice(1).map((t, i) => t - (reply?.mediaAt[i] ?? t));
    const maxSendGap = Math.max(0, ...sendGaps);
    expect(maxSendGap).toBeGreaterThanOrEqual(STALL_MS - 20);
    const heardGaps = call.silenceGaps(20, { fromMs: stall2At - 100, toMs: stall2At + 600 });
    const maxHeardGap = Math.max(0, ...heardGaps.map((g) => g.ms));
    expect(maxHeardGap).toBeLessThanOrEqual(STALL_MS + 50);

    expect(await neighbourDone).toContain('Monday to Friday');
    expect(r.engine.registry.session(neighbour.callSid)).toBeUndefined();
    expect((await fetch(`${r.engine.url}/twilio/health`)).status).toBe(200);
    expect(r.logs().filter((l) => (l.level as number) >= 50)).toEqual([]);
    await call.hangUp();
    await untilState(r, call, 'ended', 3_000);
    expect(r.outcomeOf(call.callSid)).toBe('callerHungUp');
    await ctx.annotate(
      `stalls ${Math.round(stall1)} + ${Math.round(stall2)} ms: longest gap between reply frames sent ${Math.round(maxSendGap)} ms, ` +
        `longest silence heard around the stall ${Math.round(maxHeardGap)} ms, turn latency ${JSON.stringify(r.engine.registry.recentCalls().find((c) => c.callSid === call.callSid)?.turns.map((t) => t))}`,
    );
  }, 40_000);
});
