/**
 * Property test of the call actor under random interleavings of every event the edge and the
 * children can send (docs/design/reliability.md §4 recipe 2, docs/design/conversation.md §7 "Races and replay"), on XState's
 * SimulatedClock through the call harness (its fake synthesizer, agent script, REST fakes and
 * Twilio playback model, which echoes marks as audio plays).
 *
 * Invariants, checked after every event that changed the snapshot or emitted a command (nothing
 * they read can change otherwise):
 * - nothing throws and the actor never reaches status `error`;
 * - one live generation: every out.audio carries the newest generation; after an out.clear of that
 *   generation its audio is only accepted while the reply is paused in `reply.interrupted` (the
 *   player holds it for out.resume: "LLM and TTS are held, not cancelled"); out.resume only follows
 *   a clear of the same, newest generation;
 * - out.interrupted.heardMs ≤ audio sent for that generation and ≤ the highest mark echoed for it
 *   in its current epoch (marks of cleared epochs never count);
 * - stale events are dropped (docs/design/conversation.md §2): agent output of another reply, synthesizer output
 *   of another generation, marks of another generation or a cleared epoch change neither state nor
 *   context and emit nothing;
 * - emergency wins: once consent is settled and no emergency, transfer or hang-up is under way,
 *   the emergency key or a clear keyword (language.ts `classifyEmergency`) takes the actor to the
 *   script (`emergency.instructing`) in its next snapshot, also while the check is asked; an
 *   uncertain one to the check (`emergency.checking`) unless a check was already asked;
 * - nothing is emitted after out.ended, which is emitted once.
 * Then liveness: a caller hang-up (stop or socket close) ends the call at once; otherwise the call
 * is left alone for two simulated hours and must reach `ended`. "Alone" is the harshest fair
 * environment: no caller, no marks (a socket that stopped delivering them), no REST answers (no
 * microtask turn is given), only the children's own behaviour (the harness synthesizer speaks at
 * once, the scripted agent answers, on the clock when delayed). Every waiting state must then get
 * out through its own timer (docs/design/conversation.md §3 "Engine dead air").
 */
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import type { AnyStateNode } from 'xstate';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallCommand, CallEvent, CallTenant } from '../../machines/call/call.types.js';
import { classifyEmergency } from '../../machines/call/language.js';
import { toCallTenant } from '../../src/calls/call-input.js';
import { loadTenants } from '../../src/config/tenants.js';
import { createCallHarness, testTenant, type CallHarness } from '../support/call-harness.js';
import { sized } from '../support/long.js';
import { eventsOf, run as runArbitrary, type Run, type Wire } from './call-arbitraries.js';

/** The fixture clinics (support/engine.ts names them too, but importing it loads the whole server). */
const FIXTURE_TENANTS_DIR = fileURLToPath(new URL('../fixtures/tenants', import.meta.url));
/** Same convention as media-frames.test.ts: FUZZ_SEED overrides, the seed is printed. */
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_125);
/** Ten times as many under `npm run test:long`. */
const RUNS = sized(500, 5_000);
/** docs/reliability.md: over 7,000 events in 500 runs (14 a run on average; the same under `npm run test:long`). */
const MIN_EVENTS = 14 * RUNS;
const QUIET_MS = 2 * 60 * 60 * 1000;
/**
 * docs/reliability.md: a call left alone ends within fifteen simulated minutes. Every playing state
 * waits out its own timeout when no mark comes back; the longest chain with the default seed, 611 s,
 * is two consent questions, a failed transfer, a reply whose agent asked for another failed
 * transfer, two silence prompts and the goodbye.
 */
const MAX_QUIET_TO_END_MS = 15 * 60 * 1000;
/** Step of the quiet phase: coarse enough to be cheap, fine enough for every timer chain to fire. */
const QUIET_STEP_MS = 250;

type Snap = ReturnType<CallHarness['state']>;

const base = testTenant();
const clinics: Record<string, CallTenant> = {
  /** No consent, emergency line. */
  plain: base,
  consentTransferNoLine: testTenant({ consent: { required: true, onRefusal: 'transfer' }, emergency: { ...base.emergency, hasLine: false } }),
  consentContinue: testTenant({ consent: { required: true, onRefusal: 'continue' } }),
  /** A 20-second limit (limits.maxCallSeconds): the call wraps up mid-conversation. */
  timeLimited: testTenant({ limits: { maxCallMs: 20_000 } }),
  /** No consent, no emergency line, menu keys for emergency and hang-up. */
  menuNoLine: testTenant({
    emergency: { ...base.emergency, hasLine: false },
    menu: { ...base.menu, '3': { action: 'emergency', label: 'an emergency' }, '4': { action: 'hangup', label: 'to end the call' } },
  }),
};

const allStateNodes = (node: AnyStateNode): AnyStateNode[] => [node, ...Object.values(node.states).flatMap(allStateNodes)];

/** What the runs exercised; the test asserts the figures docs/reliability.md gives. */
const figures = { runs: 0, events: 0, resumes: 0, interrupted: 0, emergencyChecks: 0, staleEvents: 0, maxQuietToEndMs: 0 };
const statesReached = new Set<string>();

/** Where this event, in this snapshot, obliges the machine to go (see the header): the script, the check, or nowhere in particular. */
function mustEmergency(before: Snap, event: CallEvent): 'script' | 'check' | null {
  const c = before.context;
  const busy = ['transferring', 'hangingUp', 'ended'].some((s) => before.matches(s as 'ended')) || before.matches({ emergency: 'instructing' });
  if (before.status !== 'active' || busy || c.emergency !== null || c.consent === 'pending') return null;
  if (event.type === 'twilio.dtmf') return event.digit === c.tenant.emergency.digit ? 'script' : null;
  if (event.type !== 'stt.final' && event.type !== 'stt.partial') return null;
  // The language rule (keywords, negation, certainty) has its own tests; this checks that the actor obeys it everywhere.
  const heard = { final: event.type === 'stt.final', confidence: event.type === 'stt.final' ? (event.confidence ?? null) : null };
  const match = classifyEmergency(event.text, c.tenant.emergency.keywords, heard);
  if (match?.certainty === 'clear') return 'script';
  return match && c.emergencyCheck === null ? 'check' : null;
}

/**
 * An event of a generation that is not the live one: an old or unknown reply's agent output, a
 * synthesizer's output for another generation, a mark of another generation or a cleared epoch.
 * docs/design/conversation.md §2 "Generation IDs": stale ones are dropped.
 */
function isStale(before: Snap, event: CallEvent): boolean {
  const c = before.context;
  switch (event.type) {
    case 'agent.delta':
    case 'agent.expect':
    case 'agent.request':
    case 'agent.done':
    case 'agent.error':
      return event.generation !== c.reply?.generation;
    case 'tts.chunk':
    case 'tts.segment':
    case 'tts.done':
    case 'tts.error':
      return event.generation !== c.playback.generation;
    case 'twilio.mark':
      return event.generation !== c.playback.generation || event.epoch !== c.playback.epoch;
    default:
      return false;
  }
}

/** One call: the harness plus the observers that check the invariants as commands are emitted. */
function watchedCall(r: Run) {
  const tenant = clinics[r.clinic];
  if (!tenant) throw new Error(`unknown clinic ${r.clinic}`);
  const h = createCallHarness({ tenant, agent: r.agent, transferFails: r.transferFails });
  const wire: Wire = { sentMs: new Map(), epochs: new Map() };
  /** Highest mark echoed per generation in the epoch it was echoed in (what the caller heard). */
  const ackedMs = new Map<number, number>();
  /** Generations cleared and not resumed. */
  const paused = new Set<number>();
  const violations: string[] = [];
  const errors: unknown[] = [];
  let endedEmitted = 0;
  const snapshots: Snap[] = [];

  h.actor.on('*', (cmd: CallCommand) => {
    // Emitted commands are delivered after their macrostep, so this is the state that emitted them.
    const s = h.state();
    const where = JSON.stringify(s.value);
    if (endedEmitted > 0) violations.push(`${cmd.type} after out.ended (${where})`);
    switch (cmd.type) {
      case 'out.audio':
        if (cmd.generation !== s.context.generation) violations.push(`out.audio for generation ${cmd.generation}, newest is ${s.context.generation} (${where})`);
        if (paused.has(cmd.generation) && !s.matches({ reply: 'interrupted' })) violations.push(`out.audio for cleared generation ${cmd.generation} outside a paused reply (${where})`);
        wire.sentMs.set(cmd.generation, (wire.sentMs.get(cmd.generation) ?? 0) + cmd.audio.length / 8);
        return;
      case 'out.clear':
        wire.epochs.set(cmd.generation, (wire.epochs.get(cmd.generation) ?? 0) + 1);
        paused.add(cmd.generation);
        return;
      case 'out.resume':
        figures.resumes++;
        if (!paused.has(cmd.generation) || cmd.generation !== s.context.generation) violations.push(`out.resume of generation ${cmd.generation} that is not the newest, paused one (${where})`);
        paused.delete(cmd.generation);
        return;
      case 'out.interrupted': {
        figures.interrupted++;
        const sent = wire.sentMs.get(cmd.generation) ?? 0;
        const acked = ackedMs.get(cmd.generation) ?? 0;
        if (cmd.heardMs > sent || cmd.heardMs > acked) violations.push(`heardMs ${cmd.heardMs} > sent ${sent} / acked ${acked} (generation ${cmd.generation})`);
        return;
      }
      case 'out.ended':
        endedEmitted++;
        return;
      default:
        return;
    }
  });
  h.actor.subscribe({ next: (s) => snapshots.push(s), error: (err) => errors.push(err) });
  h.actor.system.inspect((e) => {
    if (e.actorRef !== h.actor) return;
    if (e.type === '@xstate.microstep') for (const node of (e.snapshot as Snap)._nodes) statesReached.add(node.id);
    // Every mark the actor receives, the harness's echoes included: a mark of the generation's
    // current epoch is audio the caller heard; echoes of cleared epochs are not.
    if (e.type === '@xstate.event' && e.event.type === 'twilio.mark') {
      const m = e.event as Extract<CallEvent, { type: 'twilio.mark' }>;
      if (m.epoch === (wire.epochs.get(m.generation) ?? 0)) ackedMs.set(m.generation, Math.max(ackedMs.get(m.generation) ?? 0, m.endMs));
    }
  });

  /** Send one event and check the invariants; the first snapshot after it decides "emergency wins". */
  const send = (event: CallEvent) => {
    const before = h.state();
    const emitted = h.commands.length;
    snapshots.length = 0;
    h.send(event);
    figures.events++;
    const next = snapshots[0] ?? h.state();
    if (before.status === 'active' && isStale(before, event)) {
      figures.staleEvents++;
      const what = `stale ${JSON.stringify(event, (k, v: unknown) => (k === 'audio' ? undefined : v))} in ${JSON.stringify(before.value)}`;
      expect(h.commands.length, `${what} emitted`).toBe(emitted);
      expect(h.state().context, `${what} changed the context`).toStrictEqual(before.context);
      expect(h.state().value, `${what} changed the state`).toStrictEqual(before.value);
    }
    const must = mustEmergency(before, event);
    if (must) {
      figures.emergencyChecks++;
      const where = must === 'script' ? 'instructing' : 'checking';
      if (!next.matches({ emergency: where })) violations.push(`${event.type} ${JSON.stringify(event)} in ${JSON.stringify(before.value)} led to ${JSON.stringify(next.value)}, not emergency.${where}`);
    }
    // Hang-up ends the call from every state, at once (no simulated time needed).
    const hungUp = event.type === 'twilio.stop' || event.type === 'twilio.closed' || event.type === 'call.status';
    if (hungUp && before.status === 'active') expect(h.state().status, `${event.type} in ${JSON.stringify(before.value)}`).toBe('done');
    checkIfChanged();
  };

  /** What the invariants read changes only with the snapshot, a command or an error. */
  let checked: { snapshot: Snap | null; commands: number; errors: number } = { snapshot: null, commands: -1, errors: -1 };
  const checkIfChanged = () => {
    if (h.state() === checked.snapshot && h.commands.length === checked.commands && errors.length === checked.errors) return;
    check();
  };

  const check = () => {
    checked = { snapshot: h.state(), commands: h.commands.length, errors: errors.length };
    expect(errors).toEqual([]);
    const s = h.state();
    expect(s.status).not.toBe('error');
    // The heard position, between events too: never past the audio sent; within a reply (where no
    // skipped prompt stands in for it) never past what marks of the current epoch acknowledged.
    const p = s.context.playback;
    expect(p.heardMs, 'heard past the audio sent').toBeLessThanOrEqual(wire.sentMs.get(p.generation) ?? 0);
    if (s.matches('reply')) expect(p.heardMs, 'heard past the marks echoed').toBeLessThanOrEqual(ackedMs.get(p.generation) ?? 0);
    expect(violations).toEqual([]);
    expect(endedEmitted).toBeLessThanOrEqual(1);
    if (s.status === 'done') expect(endedEmitted).toBe(1);
  };

  return { h, wire, send, check, checkIfChanged };
}

async function play(r: Run): Promise<void> {
  figures.runs++;
  const { h, wire, send, check, checkIfChanged } = watchedCall(r);
  h.start();
  check();
  if (r.startFirst) send({ type: 'twilio.start', streamSid: 'MZ00000000000000000000000000000001' });
  for (const s of r.steps) {
    if (s.t === 'advance') {
      h.advance(s.ms);
      checkIfChanged();
      continue;
    }
    if (s.t === 'settle') {
      await h.settle();
      checkIfChanged();
      continue;
    }
    // Once the call has ended the edge sends nothing more (the end of this run checks a late event).
    if (h.state().status !== 'active') continue;
    const c = h.state().context;
    const live = {
      playbackGeneration: c.playback.generation,
      generation: c.generation,
      synthDone: c.playback.synthDone,
      agentDone: c.reply?.agentDone ?? true,
      replyGeneration: c.reply?.generation ?? null,
    };
    for (const e of eventsOf(s, live, wire, h.clock.now())) send(e);
  }

  if (h.state().status === 'active' && r.finale !== 'quiet') {
    send({ type: r.finale === 'stop' ? 'twilio.stop' : 'twilio.closed' });
  }
  let waited = 0;
  while (h.state().status === 'active' && waited < QUIET_MS) {
    h.clock.increment(QUIET_STEP_MS);
    waited += QUIET_STEP_MS;
    checkIfChanged();
  }
  expect(h.state().status, `still ${JSON.stringify(h.state().value)} after ${QUIET_MS} ms alone`).toBe('done');
  figures.maxQuietToEndMs = Math.max(figures.maxQuietToEndMs, waited);
  // After the end: no timer left that emits, and a late event changes nothing (XState warns about it).
  const count = h.commands.length;
  h.clock.increment(QUIET_MS);
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
  h.send({ type: 'twilio.stop' });
  warn.mockRestore();
  expect(h.commands.length).toBe(count);
  h.actor.stop();
}

describe('call actor under random event interleavings', () => {
  beforeAll(async () => {
    // Two real clinic configurations as the engine loads them: with an emergency line and without consent, and the reverse.
    const dir = await loadTenants(FIXTURE_TENANTS_DIR);
    for (const id of ['quick-vet', 'consent-vet']) {
      const t = dir.byId(id);
      if (!t) throw new Error(`fixture clinic ${id} missing`);
      clinics[id] = toCallTenant(t);
    }
  });

  it('keeps every invariant over random runs, reaching every state of the machine', async () => {
    console.log(`call fuzz seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);
    await fc.assert(fc.asyncProperty(runArbitrary(Object.keys(clinics)), play), { seed: SEED, numRuns: RUNS });
    // The figures docs/reliability.md gives for this suite.
    expect(figures.runs).toBeGreaterThanOrEqual(RUNS);
    expect(figures.events).toBeGreaterThanOrEqual(MIN_EVENTS);
    // Every state the machine defines, read from its definition (so a new state must be reached too).
    const missing = allStateNodes(callMachine.root).map((n) => n.id).filter((id) => !statesReached.has(id));
    expect(missing, 'states no run reached').toEqual([]);
    expect(figures.maxQuietToEndMs, 'longest wait for a call left alone to end').toBeLessThanOrEqual(MAX_QUIET_TO_END_MS);
    // The runs really exercised each invariant (guards against arbitraries drifting into triviality).
    expect(figures.interrupted).toBeGreaterThan(0);
    expect(figures.resumes).toBeGreaterThan(0);
    expect(figures.emergencyChecks).toBeGreaterThan(0);
    expect(figures.staleEvents).toBeGreaterThan(0);
  }, sized(60_000, 900_000));
});
