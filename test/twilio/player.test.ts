import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LEAD_MS, Player } from '../../src/twilio/player.js';
import type { PlayerOptions, Scheduler } from '../../src/twilio/player.js';

const SID = 'MZ00000000000000000000000000000000';
type Sent = { t: number; json: string; msg: { event: string; streamSid: string; media?: { payload: string }; mark?: { name: string } } };

/** Audio whose every 20 ms frame carries its own frame index, so tests can tell where bytes came from. */
const tone = (ms: number, firstFrame = 0): Uint8Array =>
  Uint8Array.from({ length: ms * 8 }, (_, i) => (firstFrame + Math.floor(i / 160)) % 250);

let t0 = 0;
const elapsed = () => Date.now() - t0;

function setup(opts: Partial<PlayerOptions> = {}) {
  const sent: Sent[] = [];
  const player = new Player({
    streamSid: SID,
    now: () => Date.now(),
    send: (json) => sent.push({ t: elapsed(), json, msg: JSON.parse(json) as Sent['msg'] }),
    ...opts,
  });
  const media = () => sent.filter((s) => s.msg.event === 'media').map((s) => Buffer.from(s.msg.media!.payload, 'base64'));
  const marks = () => sent.filter((s) => s.msg.event === 'mark').map((s) => s.msg.mark!.name);
  const sentMs = () => media().reduce((a, b) => a + b.length / 8, 0);
  return { player, sent, media, marks, sentMs };
}

beforeEach(() => {
  vi.useFakeTimers();
  t0 = Date.now();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('Player pacing', () => {
  it('stays at most LEAD_MS ahead, never underruns, sends 160-byte multiples ≤ 800 with a mark after each', () => {
    const { player, sent, media, marks, sentMs } = setup();
    player.enqueue(1, tone(3000));
    expect(sentMs()).toBe(LEAD_MS); // two 100 ms messages at once
    for (let t = 10; t <= 3500; t += 10) {
      vi.advanceTimersByTime(10);
      const s = sentMs();
      expect(s).toBeLessThanOrEqual(elapsed() + LEAD_MS);
      if (s < 3000) expect(s).toBeGreaterThan(elapsed() + 50); // Twilio always holds ≥ 50 ms
    }
    expect(sentMs()).toBe(3000);
    for (const m of media()) {
      expect(m.length % 160).toBe(0);
      expect(m.length).toBeLessThanOrEqual(800);
    }
    // Strict alternation media, mark; mark names generation:epoch:cumulative ms.
    sent.forEach((s, i) => expect(s.msg.event).toBe(i % 2 ? 'mark' : 'media'));
    let cum = 0;
    expect(marks()).toEqual(media().map((m) => `1:0:${(cum += m.length / 8)}`));
    expect(Buffer.concat(media())).toEqual(Buffer.from(tone(3000)));
    expect(player.stats).toMatchObject({ bytesSent: 24000, mediaMessages: 30, marksSent: 30 });
  });

  it('sends each burst (a message and its mark; the first lead of a reply) inside one batch, nothing outside', () => {
    const bursts: number[][] = [];
    let open: number[] | null = null;
    const { player, sent } = setup({
      batch: (sends) => {
        open = [];
        sends();
        bursts.push(open);
        open = null;
      },
      send: (json) => {
        if (!open) throw new Error('a frame sent outside a batch');
        open.push(sent.length);
        sent.push({ t: elapsed(), json, msg: JSON.parse(json) as Sent['msg'] });
      },
    });
    player.enqueue(1, tone(1000));
    expect(bursts.map((b) => b.length)).toEqual([4]); // the first 200 ms: two messages, two marks
    vi.advanceTimersByTime(1500);
    expect(bursts.slice(1).every((b) => b.length === 2)).toBe(true);
    expect(bursts.flat()).toEqual(sent.map((_, i) => i));
    expect(player.stats.mediaMessages).toBe(10);
  });

  it('sends exactly the documented fields', () => {
    const { player, sent } = setup();
    player.enqueue(3, tone(40));
    player.clear();
    const payload = Buffer.from(tone(40)).toString('base64');
    expect(sent.map((s) => s.json)).toEqual([
      `{"event":"media","streamSid":"${SID}","media":{"payload":"${payload}"}}`,
      `{"event":"mark","streamSid":"${SID}","mark":{"name":"3:0:40"}}`,
      `{"event":"clear","streamSid":"${SID}"}`,
    ]);
  });

  it('waits for whole frames, and pads the last partial one with 0xFF only on finish()', () => {
    const { player, media, marks } = setup();
    player.enqueue(1, tone(125)); // 1000 bytes
    vi.advanceTimersByTime(1000);
    expect(media().map((m) => m.length)).toEqual([800, 160]);
    player.finish(1);
    const last = media()[2]!;
    expect(last.length).toBe(160);
    expect(Array.from(last.subarray(0, 40))).toEqual(Array.from(tone(125).subarray(960)));
    expect(last.subarray(40).every((b) => b === 0xff)).toBe(true);
    expect(marks()).toEqual(['1:0:100', '1:0:120', '1:0:125']);
    player.enqueue(1, tone(20)); // after finish: stale
    expect(player.stats.staleBytes).toBe(160);
  });

  it('re-anchors after an underrun instead of bursting to catch up', () => {
    const { player, sentMs } = setup();
    player.enqueue(1, tone(100));
    vi.advanceTimersByTime(1000); // Twilio ran dry 900 ms ago
    player.enqueue(1, tone(2000));
    expect(sentMs()).toBe(100 + LEAD_MS);
    vi.advanceTimersByTime(500);
    expect(sentMs()).toBeLessThanOrEqual(100 + 500 + LEAD_MS);
    expect(player.stats.reanchors).toBe(2);
  });

  it('runs one interval only while something is sendable, and stop() frees it', () => {
    let active = 0;
    let created = 0;
    const scheduler: Scheduler = {
      setInterval: (fn, ms) => { active++; created++; return setInterval(fn, ms); },
      clearInterval: (h) => { active--; clearInterval(h as ReturnType<typeof setInterval>); },
    };
    const { player } = setup({ scheduler });
    expect(active).toBe(0);
    player.enqueue(1, tone(1000));
    expect(active).toBe(1);
    player.enqueue(1, tone(1000));
    expect(created).toBe(1);
    vi.advanceTimersByTime(3000);
    expect(active).toBe(0);
    player.enqueue(1, tone(1000));
    expect(active).toBe(1);
    player.stop();
    expect(active).toBe(0);
    player.enqueue(1, tone(100));
    expect(active).toBe(0);
  });

  it('reports timer lateness and survives a throwing sink', () => {
    const errors: unknown[] = [];
    let fail = true;
    const p = new Player({
      streamSid: SID, now: () => Date.now(), onError: (e) => errors.push(e),
      send: () => { if (fail) throw new Error('socket gone'); },
    });
    expect(() => p.enqueue(1, tone(500))).not.toThrow();
    expect(p.stats.errors).toBe(4);
    fail = false;
    vi.advanceTimersByTime(1000);
    expect(errors).toHaveLength(4);
    expect(p.stats.maxLatenessMs).toBeGreaterThanOrEqual(0);
    p.stop();
  });
});

describe('Player barge-in', () => {
  it('clear() sends clear at once, drops the queue, bumps the epoch and pauses', () => {
    const { player, sent, media } = setup();
    player.enqueue(1, tone(3000));
    vi.advanceTimersByTime(500);
    const before = media().length;
    expect(player.clear()).toEqual({ epoch: 1 });
    expect(sent.at(-1)!.json).toBe(`{"event":"clear","streamSid":"${SID}"}`);
    expect(player.paused).toBe(true);
    expect(player.queuedMs).toBe(0);
    vi.advanceTimersByTime(3000);
    expect(media().length).toBe(before);
    expect(player.timelineMs).toBe(3000); // retained for resume
  });

  it('resume() replays from the heard ms (aligned to 20 ms) under the new epoch', () => {
    const { player, media, marks } = setup();
    player.enqueue(1, tone(3000));
    vi.advanceTimersByTime(500);
    player.clear();
    const n = media().length;
    expect(player.resume(1, 437)).toBe(true);
    vi.advanceTimersByTime(5000);
    const replay = Buffer.concat(media().slice(n));
    expect(replay).toEqual(Buffer.from(tone(3000).subarray(420 * 8)));
    expect(marks().slice(n)[0]).toBe('1:1:520');
    expect(marks().at(-1)).toBe('1:1:3000');
  });

  it('plays audio enqueued while paused on resume, and refuses a stale generation', () => {
    const { player, media } = setup();
    player.enqueue(1, tone(200));
    player.clear();
    player.enqueue(1, tone(200, 10));
    vi.advanceTimersByTime(1000);
    const n = media().length;
    expect(player.resume(0, 0)).toBe(false);
    expect(player.resume(1, 200)).toBe(true);
    expect(player.resume(1, 200)).toBe(false); // not paused any more
    vi.advanceTimersByTime(1000);
    expect(Buffer.concat(media().slice(n))).toEqual(Buffer.from(tone(200, 10)));
  });

  it('a new generation discards the old one and un-pauses; old audio is stale', () => {
    const { player, media, marks } = setup();
    player.enqueue(1, tone(3000));
    vi.advanceTimersByTime(300);
    player.clear();
    const n = media().length;
    player.enqueue(2, tone(300, 100));
    expect(player.paused).toBe(false);
    player.enqueue(1, tone(100));
    expect(player.stats.staleBytes).toBe(800);
    vi.advanceTimersByTime(2000);
    expect(Buffer.concat(media().slice(n))).toEqual(Buffer.from(tone(300, 100)));
    expect(marks().slice(n)).toEqual(['2:0:100', '2:0:200', '2:0:300']);
    expect(player.resume(1, 0)).toBe(false);
  });

  it('caps retained audio: old audio still plays but resume starts at the oldest kept frame', () => {
    const { player, media } = setup({ retainMs: 1000 });
    for (let i = 0; i < 30; i++) {
      player.enqueue(1, tone(100, i * 5));
      vi.advanceTimersByTime(100);
    }
    vi.advanceTimersByTime(1000);
    expect(Buffer.concat(media()).length).toBe(3000 * 8); // everything played
    player.clear();
    const n = media().length;
    expect(player.resume(1, 0)).toBe(true);
    vi.advanceTimersByTime(2000);
    const replayMs = Buffer.concat(media().slice(n)).length / 8;
    expect(replayMs).toBeGreaterThanOrEqual(1000);
    expect(replayMs).toBeLessThan(3000);
  });

  it('bounds unplayed audio with maxQueuedMs', () => {
    const { player } = setup({ maxQueuedMs: 1000 });
    player.enqueue(1, tone(1500));
    expect(player.stats.droppedBytes).toBe((1500 - 1000) * 8);
  });
});

describe('Player echo reference', () => {
  it('tells the echo guard what plays when, and where a clear cut it', () => {
    const played: { atMs: number; bytes: number }[] = [];
    const cuts: number[] = [];
    const { player, media } = setup({ echo: { played: (atMs, audio) => played.push({ atMs: atMs - t0, bytes: audio.length }), cut: (atMs) => cuts.push(atMs - t0) } });
    player.enqueue(1, tone(600));
    vi.advanceTimersByTime(250);
    // Back to back from the first byte's playback at t=0, each message where the last one ends.
    let at = 0;
    expect(played).toEqual(media().map((m) => ({ atMs: (at += m.length / 8) - m.length / 8, bytes: m.length })));
    player.clear();
    expect(cuts).toEqual([250]);
    const before = played.length;
    player.resume(1, 250);
    expect(played[before]?.atMs).toBe(250); // Twilio dropped its buffer: the resumed audio plays now
  });
});

describe('Player.parseMark', () => {
  it('inverts the mark names and rejects anything else', () => {
    expect(Player.parseMark('7:2:1840')).toEqual({ generation: 7, epoch: 2, endMs: 1840 });
    for (const bad of ['', 'r7:1840:42', '1:2', '1:2:3:4', '1:-2:3', '1:2:3 ', '1:2:1e3', '9'.repeat(16) + ':0:0']) {
      expect(Player.parseMark(bad)).toBeNull();
    }
  });
});
