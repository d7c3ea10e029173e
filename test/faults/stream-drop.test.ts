/**
 * Fault 1 (docs/design/reliability.md §2 rung 6): the Media Stream dies while the caller is talking, without
 * Twilio's `stop`. The call must end with a recorded outcome, release everything it held, keep its
 * journal intact up to the drop, and leave a neighbouring call alone. Variants: the fake Twilio's
 * socket destroyed, the engine's TCP connection closed (FIN) or reset (RST) by a proxy, and a
 * blackholed connection (open, silent) that only the engine's idle timeout can notice.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'vitest';
import { sleep, tone } from '../e2e/conversation-kit.js';
import { converse, faultRig, furthestMark, journaledMarks, later, journalOf, resources, streamProxy, untilState, type CutMode } from './fault-kit.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const IDLE_MS = 1_500;

type Variant = { mode: CutMode | 'terminate'; what: string; endWithinMs: number };
const variants: Variant[] = [
  { mode: 'terminate', what: "Twilio's socket is destroyed (no stop, no close frame)", endWithinMs: 1_000 },
  { mode: 'fin', what: "the engine's TCP connection is closed under it (FIN)", endWithinMs: 1_000 },
  { mode: 'rst', what: "the engine's TCP connection is reset (RST)", endWithinMs: 1_000 },
  { mode: 'blackhole', what: 'the connection goes silent (blackhole): the idle timeout ends it', endWithinMs: IDLE_MS + 1_000 },
];

describe('the Media Stream drops mid-utterance', () => {
  for (const v of variants) {
    it(`${v.what}: outcome recorded, resources released, journal whole, the other call unharmed`, async (ctx) => {
      const { expect } = ctx;
      const dir = await mkdtemp(join(tmpdir(), 'vetline-drop-'));
      dirs.push(dir);
      const r = await faultRig(ctx, { journalDir: dir, streamOptions: { idleTimeoutMs: IDLE_MS } });
      const proxy = await streamProxy(r.engine.url);
      ctx.onTestFinished(() => proxy.close());
      await sleep(100);
      const baseline = resources();

      const call = await r.dial({ serverUrl: proxy.url });
      const neighbour = await r.dial();
      const neighbourDone = later(converse(r, neighbour));
      await untilState(r, call, 'listening.waiting', 10_000);
      void call.say(tone(3_000)); // the caller is mid-sentence when the stream dies
      await untilState(r, call, 'listening.hearing', 3_000);
      await sleep(200);

      const cutAt = call.now();
      if (v.mode === 'terminate') call.dropConnection();
      else expect(proxy.cut(v.mode)).toBe(1);
      await untilState(r, call, 'ended', v.endWithinMs + 2_000);
      const endedAfterMs = call.now() - cutAt;
      expect(endedAfterMs).toBeLessThan(v.endWithinMs);
      if (v.mode === 'blackhole') expect(endedAfterMs).toBeGreaterThanOrEqual(IDLE_MS - 250); // only the idle timer can see it
      expect(r.outcomeOf(call.callSid)).toBe('callerHungUp');

      // The neighbour never noticed.
      expect(await neighbourDone).toContain('Monday to Friday');
      expect(r.outcomeOf(neighbour.callSid)).toBe('callerHungUp');
      expect(r.engine.registry.list()).toEqual([]);
      expect(r.engine.registry.activeCount).toBe(0);
      expect(r.stt.streams.length).toBeGreaterThanOrEqual(2);
      expect(r.stt.streams.every((s) => s.closed)).toBe(true);
      expect(r.logs().filter((l) => (l.level as number) >= 50)).toEqual([]);

      // The journal holds everything up to the drop, then the close and the outcome.
      await r.engine.journal?.flushAll();
      const journal = await journalOf(dir, call.callSid);
      const types = journal.events.map((e) => e.event.type);
      expect(journal.tornTail).toBe(false);
      expect(journal.outcome?.outcome).toBe('callerHungUp');
      expect(types).toContain('vad.speechStart');
      expect(types.at(-1)).toBe('twilio.closed');
      // The furthest position the engine had heard before the drop is in the journal (a held echo
      // goes in before twilio.closed), and every journaled mark is one Twilio echoed.
      const marks = journaledMarks(journal.events);
      const marksJournaled = marks.length;
      const echoedBeforeCut = call.marksEchoed.filter((m) => m.atMs < cutAt - 100).map((m) => m.name);
      expect(echoedBeforeCut.length).toBeGreaterThan(0); // the greeting's marks at least
      expect(furthestMark(marks)).toBeGreaterThanOrEqual(furthestMark(echoedBeforeCut));
      expect(marks.every((name) => call.marksEchoed.some((m) => m.name === name))).toBe(true);

      // Nothing of the dead call keeps running: no pacer, no stream timer, no machine timer.
      await call.waitForClose(3_000);
      const dropped = r.logs(call.callSid).filter((l) => l.msg === 'outbound frame dropped').length;
      await sleep(300);
      expect(r.logs(call.callSid).filter((l) => l.msg === 'outbound frame dropped')).toHaveLength(dropped);
      expect(resources().Timeout ?? 0).toBeLessThanOrEqual(baseline.Timeout ?? 0);
      await ctx.annotate(`${v.mode}: call ended ${Math.round(endedAfterMs)} ms after the fault; ${marksJournaled} marks journaled`);
    }, 30_000);
  }
});
