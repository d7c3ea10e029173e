/**
 * The inspector's live feed against a real engine (real HTTP/WebSocket stack, energy VAD, scripted
 * recognizer and agent, fake synthesizer) and a caller speaking the Twilio protocol: a question, a
 * long answer, a barge-in with real words, a second answer, a hang-up. Read through the sockets a
 * page and a Stately-style inspector use: /inspector/ws and /inspector/xstate.
 */
import { WebSocket } from 'ws';
import { describe, it } from 'vitest';
import { createFakeAgent } from '../../src/providers/agent/fake.js';
import type { CallDetail, ServerMessage } from '../../src/inspector/feed.js';
import type { StatelyInspectionEvent } from '../../src/inspector/stately.js';
import { answeredInOrder, lastGeneration, playedOf, rigFor, tone, untilState } from '../e2e/conversation-kit.js';
import { testNumbersIn } from '../support/fake-twilio.js';

const LONG =
  'We offer vaccinations, dental care and surgery for dogs and cats. Our team also does grooming on weekdays. ' +
  'We can board your pet while you travel. Ask me about any of these services.';
const SHORT_ANSWER = 'Surgery starts at two hundred dollars.';
const ASK = 'tell me about your services';

type Received = { message: ServerMessage; at: number };

function listen(url: string) {
  const received: Received[] = [];
  const ws = new WebSocket(url);
  ws.on('message', (d: Buffer) => received.push({ message: JSON.parse(d.toString('utf8')) as ServerMessage, at: Date.now() }));
  const open = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, received, open };
}

describe('inspector feed over a real call', () => {
  it('streams states at once, the timeline, the cut reply, turn latency, and a time-travel record', async (ctx) => {
    const { expect } = ctx;
    const agent = createFakeAgent({ script: [LONG, SHORT_ANSWER] });
    const r = await rigFor(ctx, { agent, stt: [ASK, { partials: ['how much does surgery'], final: 'how much does surgery cost for a cat' }] });
    const base = r.engine.url.replace(/^http/, 'ws');
    const page = listen(`${base}/inspector/ws`);
    const stately = listen(`${base}/inspector/xstate`);
    ctx.onTestFinished(() => {
      page.ws.terminate();
      stately.ws.terminate();
    });
    await Promise.all([page.open, stately.open]);
    // Like the page with "follow new calls": watch the first live call that shows up.
    page.ws.on('message', (d: Buffer) => {
      const m = JSON.parse(d.toString('utf8')) as ServerMessage;
      if (m.type === 'summary' && m.call.live && !watching) {
        watching = m.call.callSid;
        page.ws.send(JSON.stringify({ type: 'watch', callSid: watching }));
      }
    });
    let watching: string | null = null;

    const call = await r.dial();
    const sid = call.callSid;
    await untilState(r, call, 'listening.waiting', 5_000);
    const greeting = lastGeneration(call);
    await call.say(tone(400));
    await untilState(r, call, 'reply.speaking', 4_000);
    await call.waitFor((c) => lastGeneration(c) > greeting, 1_000, "the reply's first mark");
    const reply = lastGeneration(call);
    await call.waitFor((c) => playedOf(c, reply) >= 1_400, 6_000, 'part of the reply heard');
    await call.say(tone(2_000)); // real words over the answer: long enough for the recognizer to hear four of them
    await untilState(r, call, 'reply.speaking', 5_000);
    await untilState(r, call, 'listening.waiting', 6_000);
    await call.hangUp();
    await call.waitFor(() => page.received.some(({ message: m }) => m.type === 'summary' && m.call.callSid === sid && !m.call.live), 3_000, 'the ended summary');

    // States: pushed in the order the call went, each within 100 ms of the snapshot.
    const states = page.received.filter((x): x is Received & { message: Extract<ServerMessage, { type: 'state' }> } => x.message.type === 'state');
    expect(states.every((s) => s.message.callSid === sid)).toBe(true);
    const leaves = states.map((s) => s.message.snapshot.active.at(-1)?.replace(/^call\./, '') ?? '');
    expect(answeredInOrder(
      leaves,
      ['greeting', 'listening.waiting', 'reply.speaking', 'reply.interrupted.callerTalking', 'listening.hearing'],
      ['reply.speaking', 'listening.waiting', 'ended'],
    ), leaves.join(' → ')).toBe(true);
    // Pushed as they happen: most within a few ms; the engine and this client share the test
    // process, so a busy host (other suites beside it) can hold one back for a loop stall, not a state.
    const latencies = states.map((s) => s.at - s.message.at);
    const sorted = [...latencies].sort((a, b) => a - b);
    expect(sorted[Math.floor(sorted.length / 2)], `state message latencies ${latencies.join(', ')} ms`).toBeLessThan(100);
    expect(Math.max(...latencies), `state message latencies ${latencies.join(', ')} ms`).toBeLessThan(1_000);

    // Levels were sampled while the call was live and watched.
    expect(page.received.some(({ message: m }) => m.type === 'level' && m.callSid === sid && m.agent > -60)).toBe(true);

    // The finished call's full record, as the page asks for it when the call ends.
    page.ws.send(JSON.stringify({ type: 'watch', callSid: sid }));
    await call.waitFor(() => page.received.filter(({ message: m }) => m.type === 'detail').length >= 2, 2_000, 'the detail');
    const detail = page.received.filter(({ message: m }) => m.type === 'detail').at(-1)!.message as { detail: CallDetail };
    const d = detail.detail;
    expect(d.summary).toMatchObject({ callSid: sid, live: false, outcome: 'callerHungUp', state: 'ended', turns: 2 });

    // The reply the caller cut: what was heard beside what was generated.
    const cut = d.replies.find((x) => x.full === LONG);
    expect(cut?.heard.endsWith('…')).toBe(true);
    expect(LONG.startsWith(cut!.heard.slice(0, -1))).toBe(true);
    expect(d.replies.find((x) => x.full === SHORT_ANSWER)?.heard).toBe(SHORT_ANSWER);

    // Timeline: Twilio messages summarized, transcripts, barge-in, turns, transitions with causes.
    const labels = d.timeline.map((i) => `${i.kind}:${i.label}`);
    for (const l of ['twilio:stream started', 'transcript:transcript', 'bargein:clear sent', 'bargein:barge-in: reply cut', 'turn:caller turn 2', 'twilio:stream stopped', 'end:call ended']) {
      expect(labels, l).toContain(l);
    }
    expect(d.timeline.find((i) => i.label === 'connecting → greeting')?.detail).toBe('on twilio.start');
    expect(d.timeline.find((i) => i.kind === 'transcript' && i.label === 'transcript')?.detail).toBe(ASK);
    expect(d.timeline.find((i) => i.label === 'mark played')?.count).toBeGreaterThan(1);

    // Latency per turn and the barge-in's clear latency, from the session's record.
    expect(d.turns).toHaveLength(2);
    expect(d.turns[0]?.endOfSpeechToAudioMs).toBeGreaterThan(0);
    expect(d.bargeIns).toHaveLength(1);

    // Time travel: snapshots from the start to the end, with the context of each moment.
    const first = d.snapshots[0]!;
    const last = d.snapshots.at(-1)!;
    expect(first.active).toEqual(['call', 'call.connecting']);
    expect(last.active).toEqual(['call', 'call.ended']);
    const interrupted = d.snapshots.find((s) => s.active.includes('call.reply.interrupted'));
    expect(interrupted).toBeDefined();
    expect((interrupted!.context as { history: unknown[] }).history).toEqual([{ role: 'caller', text: ASK }]);
    expect(d.snapshots.every((s, i) => i === 0 || s.t >= d.snapshots[i - 1]!.t)).toBe(true);

    // Standard inspection events (@statelyai/inspect shape).
    const events = stately.received.map((x) => x.message as unknown as StatelyInspectionEvent).filter((e) => e.sessionId === sid);
    const actor = events[0];
    expect(actor?.type).toBe('@xstate.actor');
    expect(actor).toMatchObject({ name: 'call', rootId: sid }); // parentId: undefined (a root), dropped by JSON
    expect(JSON.parse((actor as { definition: string }).definition)).toMatchObject({ id: 'call', initial: 'connecting' });
    const snapshots = events.filter((e) => e.type === '@xstate.snapshot');
    expect(snapshots.some((e) => e.type === '@xstate.snapshot' && e.event.type === 'twilio.start' && e.snapshot.value === 'greeting')).toBe(true);
    expect(events.some((e) => e.type === '@xstate.event' && e.event.type === 'vad.speechStart' && e.sourceId === `${sid}/vad`)).toBe(true);
    for (const e of events) {
      expect(typeof e.createdAt).toBe('string');
      expect(typeof e.id).toBe('string');
      expect(typeof e._version).toBe('string');
    }
    expect(events.at(-1)).toMatchObject({ type: '@xstate.actor', snapshot: { status: 'done' } });

    // Nothing a page receives carries a phone number (the caller's or the clinic's).
    const everything = JSON.stringify(page.received.map((x) => x.message)) + JSON.stringify(stately.received.map((x) => x.message));
    expect(testNumbersIn(everything)).toEqual([]);
  }, 40_000);
});
