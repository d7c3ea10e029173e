/**
 * Model-based tests: a breadth-first walk (as @xstate/graph's) explores the call machine over an
 * abstraction of its context, then the edges of that graph are replayed on a live actor (simulated
 * clock, inert children) while inspection records which transitions fired, until every state and
 * transition the machine defines has been seen (VETLINE_LONG=1 replays them all). Each replayed
 * edge must land where the walk predicted (same state value, same abstract state) without an
 * actor error. Asserts 100 % state and transition coverage, that every state ends the call by its
 * own timers alone, and the call's safety invariants over every generated state.
 */
import {
  __unsafe_getAllOwnEventDescriptors,
  createActor,
  createEmptyActor,
  fromCallback,
  fromPromise,
  SimulatedClock,
  type AnyStateNode,
  type AnyTransitionDefinition,
  type SnapshotFrom,
} from 'xstate';
import { beforeAll, describe, expect, it } from 'vitest';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallActors } from '../../machines/call/call.actors.js';
import type { CallEvent, CallTenant } from '../../machines/call/call.types.js';
import { testTenant } from '../support/call-harness.js';
import { LONG } from '../support/long.js';

type Snap = SnapshotFrom<typeof callMachine>;

/**
 * Only what changes behaviour, and only where it does (the reply matters in `reply`, the playback
 * in states that play, …); counters are capped so the graph stays finite.
 */
function abstractState(s: Snap): string {
  const c = s.context;
  const p = c.playback;
  const live = s.status === 'active';
  const inReply = s.matches('reply');
  const inListening = s.matches('listening');
  const preparing = s.matches({ reply: 'preparing' });
  const keepsWords = inListening || preparing || s.matches({ reply: 'interrupted' }) || s.matches('greeting') || s.matches('consent');
  // Where the end-of-turn guards read the turn: interim words, replies thrown away, the window left.
  const ending = preparing || s.matches({ listening: 'hearing' }) || s.matches({ listening: 'transcribing' }) || s.matches({ listening: 'pausing' });
  // With preparing off (timing.preemptLeadMs 0) interim words and the lead only change the length of a timer.
  const prep = c.tenant.timing.preemptLeadMs > 0;
  return JSON.stringify({
    v: s.value,
    st: s.status,
    consent: c.consent,
    rec: c.recording,
    em: c.emergency !== null,
    // Whether "Is your pet in danger?" was asked (after that, uncertain keywords no longer ask), not how it was answered.
    asked: c.emergencyCheck !== null,
    consentState: s.matches('consent') ? [c.consentAnswer, c.consentAsks] : null,
    tr: s.matches('transferring') ? c.transfer?.target : null,
    pb: live && playsAudio(s) ? (preparing ? [p.synthDone, p.queuedMs > 0] : [p.synthDone, p.heardMs >= p.queuedMs, p.cleared, p.queuedMs > 0]) : null,
    // A prepared reply's action and text only matter once it is committed (reply.done).
    reply: inReply && c.reply ? (preparing ? [c.reply.agentDone, c.reply.failed] : [c.reply.agentDone, c.reply.action?.type ?? null, c.reply.text.length > 0]) : null,
    turn: keepsWords && c.turnText.length > 0,
    eot: ending
      ? [
          prep && !preparing && c.partialText !== '',
          s.matches({ reply: { preparing: 'transcribing' } }) && c.awaitingFinal,
          prep && c.preempts >= c.tenant.timing.maxPreemptsPerTurn,
          (s.matches({ reply: { preparing: 'pausing' } }) || s.matches({ listening: 'pausing' })) && c.turnEnd.remainingMs === 0,
          prep && s.matches({ listening: 'pausing' }) && c.turnEnd.remainingMs <= c.tenant.timing.preemptLeadMs,
        ]
      : null,
    silence: inListening ? c.silencePrompts : null,
    failed: inListening || inReply ? Math.min(c.failedTurns, 3) : null,
    digits: inListening && c.digits.length > 0,
    expect: inListening ? c.expect : null,
    timeUp: c.timeLimitReached,
  });
}

/** States that play audio (where marks and synthesizer events matter). */
const PLAYING = new Set([
  'call.greeting', 'call.emergency.checking.asking', 'call.emergency.instructing', 'call.emergency.dismissed', 'call.reply', 'call.consent.asking', 'call.listening.nudging', 'call.listening.reprompting',
  'call.listening.apologizing', 'call.listening.menu', 'call.transferring.announcing', 'call.transferring.failed', 'call.hangingUp.farewell',
  'call.wrappingUp',
]);
const playsAudio = (s: Snap) => s._nodes.some((n) => PLAYING.has(n.id));

/** Events worth trying in a snapshot: everything the edge can send, narrowed to where it matters. */
function eventsFor(s: Snap): CallEvent[] {
  const c = s.context;
  const g = c.playback.generation;
  const rg = c.reply?.generation ?? g;
  const inReply = s.matches('reply');
  const inConsent = s.matches('consent');
  const inListening = s.matches('listening');
  const events: CallEvent[] = [
    { type: 'twilio.start', streamSid: 'MZ1' },
    { type: 'twilio.stop' },
    { type: 'call.hangup', reason: 'drain' },
    { type: 'call.handoff', reason: 'shutdown' },
    { type: 'twilio.dtmf', digit: '9' },
    { type: 'twilio.dtmf', digit: '0' },
    { type: 'twilio.dtmf', digit: '1' },
    { type: 'vad.speechStart', atMs: 0 },
    { type: 'vad.speechEnd', atMs: 0, speechMs: 500 },
    { type: 'stt.partial', text: 'my dog is bleeding' },
    { type: 'stt.final', text: 'what are your hours', atMs: 0 },
    { type: 'stt.final', text: '', atMs: 0 },
    // Uncertain (a lone keyword) and clear (a phrase) emergencies in a final.
    { type: 'stt.final', text: 'my cat ate poison', atMs: 0, confidence: 0.9 },
    { type: 'stt.final', text: "my cat can't breathe", atMs: 0, confidence: 0.9 },
  ];
  // Events whose root transition does the same from every state are tried where a state handles
  // them itself, and once where the root does: the other ways a caller hangs up do what twilio.stop
  // (tried everywhere) does; a recording's status and a recognizer failure change nothing the
  // abstraction keeps (no guard reads them).
  const ownHandler = (type: string) => s._nodes.some((n) => n.parent !== undefined && n.transitions.has(type));
  const rootOnce = s.matches('greeting') || s.matches({ listening: 'waiting' });
  const sameEverywhere: CallEvent[] = [
    { type: 'twilio.closed' },
    { type: 'call.status', status: 'completed' },
    { type: 'call.recording', recordingSid: 'RE1', status: 'completed' },
    { type: 'stt.error', message: 'down' },
  ];
  events.push(...sameEverywhere.filter((e) => rootOnce || ownHandler(e.type)));
  if (playsAudio(s)) {
    events.push(
      { type: 'twilio.mark', generation: g, epoch: c.playback.epoch, endMs: c.playback.queuedMs },
      { type: 'tts.chunk', generation: g, audio: new Uint8Array(800) },
      { type: 'tts.segment', generation: g, text: inReply ? 'Sure thing.' : '', ms: 100 },
      { type: 'tts.done', generation: g },
      { type: 'tts.error', generation: g, message: 'boom' },
    );
  }
  if (s.matches({ emergency: 'checking' })) {
    events.push({ type: 'twilio.dtmf', digit: '2' }, { type: 'stt.final', text: 'yes', atMs: 0 }, { type: 'stt.final', text: 'no', atMs: 0 });
  }
  if (inConsent) events.push({ type: 'twilio.dtmf', digit: '2' }, { type: 'stt.final', text: 'yes', atMs: 0 }, { type: 'stt.final', text: 'no', atMs: 0 });
  if (inListening) {
    for (const digit of ['*', '3', '4', '7', '#']) events.push({ type: 'twilio.dtmf', digit });
    events.push({ type: 'dtmf.timeout' });
  }
  if (inListening || s.matches({ reply: 'preparing' })) {
    // Interim words that read as finished, a final with trailing words (the long window), one the VAD closed 200 ms late.
    events.push(
      { type: 'stt.partial', text: 'what are your hours' },
      { type: 'stt.final', text: 'and um', atMs: 0 },
      { type: 'vad.speechEnd', atMs: 0, speechMs: 500, closedAtMs: 200 },
    );
  }
  if (inReply) {
    events.push(
      { type: 'stt.partial', text: 'wait stop' },
      { type: 'stt.final', text: 'mm-hmm', atMs: 0 },
      { type: 'agent.delta', generation: rg, text: 'Sure thing. ' },
      { type: 'agent.expect', generation: rg, answer: 'long' },
      { type: 'agent.request', generation: rg, request: { id: 'fu-1', kind: 'appointment', petName: 'Rex', petSpecies: 'dog', ownerName: 'Sam', reason: 'checkup', preferredTime: 'monday', message: null, recipient: null, callback: { kind: 'none' }, urgency: 'routine' } },
      { type: 'agent.done', generation: rg, action: null },
      { type: 'agent.done', generation: rg, action: { type: 'transfer', target: 'frontDesk', reason: 'asked' } },
      { type: 'agent.done', generation: rg, action: { type: 'end', reason: 'bye' } },
      { type: 'agent.done', generation: rg, action: { type: 'emergency', reason: 'bleeding' } },
      { type: 'agent.error', generation: rg, message: 'boom' },
    );
  }
  // Timers and child completions: the delayed and done/error events the snapshot listens for.
  for (const type of __unsafe_getAllOwnEventDescriptors(s) as string[]) {
    if (type.startsWith('xstate.')) events.push({ type } as unknown as CallEvent);
  }
  return events;
}

const inert = callMachine.provide({
  actors: {
    vad: fromCallback(() => undefined),
    stt: fromCallback(() => undefined),
    agent: fromCallback(() => undefined),
    tts: fromCallback(() => undefined),
    transfer: fromPromise(() => new Promise<void>(() => undefined)),
    hangup: fromPromise(() => new Promise<void>(() => undefined)),
    handoff: fromPromise(() => new Promise<void>(() => undefined)),
  } satisfies CallActors,
});

const base = testTenant();
/**
 * Replies prepared during the end-of-turn window (reply.preparing) are explored on the clinic with
 * every menu action. The other shapes differ from it before and around the conversation (consent,
 * the closed greeting, no emergency line), not in how a turn ends, so they run with preparing off
 * (`timing.preemptLeadMs` 0, a setting clinics have): that configuration is walked too, and the
 * graph stays the size it was before preparing (each shape with it on added ~35 % to the walk).
 */
const preparingOff = { timing: { ...base.timing, preemptLeadMs: 0 } };
const tenants: Record<string, CallTenant> = {
  consentTransferNoLine: testTenant({
    ...preparingOff,
    consent: { required: true, onRefusal: 'transfer' },
    emergency: { ...base.emergency, hasLine: false },
  }),
  consentContinue: testTenant({ ...preparingOff, consent: { required: true, onRefusal: 'continue' } }),
  noConsentWithLine: testTenant({
    menu: {
      ...base.menu,
      '3': { action: 'emergency', label: 'an emergency' },
      '4': { action: 'hangup', label: 'to end the call' },
    },
  }),
  // After hours: the closed greeting, the front-desk key handed to the receptionist, emergencies straight to the line.
  closedWithLine: testTenant({ ...preparingOff, openNow: false }),
};

/**
 * An edge keeps what the tests read of the snapshot it leads to (`key`: its abstract state,
 * `value`: its state value as JSON), not the snapshot: ~300,000 retained snapshots made the walk
 * mostly garbage collection.
 */
type Edge = { event: CallEvent; key: string; value: string; script: boolean };
type Vertex = { state: Snap; transitions: Record<string, Edge> };

/** Events as @xstate/graph keys them, with audio as its length (JSON of 800 bytes costs more than the step). */
const eventKey = (e: CallEvent) => JSON.stringify(e, (_k, v: unknown) => (v instanceof Uint8Array ? `${v.length} bytes` : v));

/**
 * Breadth first from the initial snapshot, as @xstate/graph's getAdjacencyMap walks it (same
 * vertices, same edges, same snapshot kept per vertex), but queueing each new abstract state once:
 * getAdjacencyMap queues every edge and dequeues with Array#shift, quadratic at ~100,000 edges.
 */
function explore(tenant: CallTenant) {
  const input = { callSid: 'CA1', tenant };
  const empty = createEmptyActor();
  const scope = {
    self: empty, logger: () => undefined, id: '', sessionId: 'graph', defer: () => undefined, system: empty.system,
    stopChild: () => undefined, emit: () => undefined, actionExecutor: () => undefined,
  } as unknown as Parameters<typeof inert.transition>[2];
  const first = inert.getInitialSnapshot(scope, input);
  const adjacency: Record<string, Vertex> = { [abstractState(first)]: { state: first, transitions: {} } };
  const queue: [string, Snap][] = [[abstractState(first), first]];
  for (let i = 0; i < queue.length; i++) {
    const [from, state] = queue[i]!;
    const vertex = adjacency[from]!;
    // An event no active state node has a transition for leaves the snapshot as it is (an edge to
    // itself, which neither covers a transition nor changes a verdict below): not tried.
    const handled = new Set(__unsafe_getAllOwnEventDescriptors(state) as string[]);
    for (const event of eventsFor(state)) {
      if (!handled.has(event.type)) continue;
      const next = inert.transition(state, event, scope);
      // An event the snapshot ignores returns the same snapshot: the same abstract state.
      const key = next === state ? from : abstractState(next);
      vertex.transitions[eventKey(event)] = { event, key, value: JSON.stringify(next.value), script: next.matches({ emergency: 'instructing' }) };
      if (!adjacency[key]) {
        adjacency[key] = { state: next, transitions: {} };
        queue.push([key, next]);
      }
      if (queue.length > 100_000) throw new Error('the abstraction lets the graph grow without bound');
    }
  }
  return { input, adjacency };
}

const allStateNodes = (node: AnyStateNode): AnyStateNode[] => [node, ...Object.values(node.states).flatMap(allStateNodes)];
const allTransitions = (node: AnyStateNode): AnyTransitionDefinition[] => [
  ...[...node.transitions.values()].flat(),
  ...(node.always ?? []),
];
const key = (t: AnyTransitionDefinition) => {
  const type = String(t.eventType);
  const list: readonly AnyTransitionDefinition[] = type ? (t.source.transitions.get(type) ?? []) : (t.source.always ?? []);
  return `${String(t.source.id)} ${type || 'always'}#${list.indexOf(t)}`;
};

describe('call machine graph', () => {
  // In a hook, not the describe body: vitest then counts the walk in the file's duration, which
  // orders its files (longest first) and is what its reporters show.
  let explored: ({ name: string } & ReturnType<typeof explore>)[] = [];
  beforeAll(() => {
    explored = Object.entries(tenants).map(([name, tenant]) => ({ name, ...explore(tenant) }));
  }, 600_000); // ~30 s alone on 2 cores; far more when the machine is shared

  it('replaying the graph edges covers every state and every transition', () => {
    // What the machine defines, from its definition (it changes as the machine does).
    const nodes = allStateNodes(callMachine.root);
    const transitions = nodes.flatMap(allTransitions).map(key);
    const statesSeen = new Set<string>();
    const transitionsSeen = new Set<string>();
    const covered = () => nodes.every((n) => statesSeen.has(n.id)) && transitions.every((t) => transitionsSeen.has(t));
    let edges = 0;
    let done = false;
    /**
     * Restores the vertex in a live actor and sends the edge's event; inspection reports every
     * transition taken, eventless ones included. The actor must end where the walk's pure
     * transition said it would, and without an error (an action that throws in the live actor).
     */
    const replay = (from: string, state: Snap, edge: Edge) => {
      const errors: unknown[] = [];
      const actor = createActor(inert, {
        input: { callSid: 'CA1', tenant: state.context.tenant },
        snapshot: inert.getPersistedSnapshot(state),
        clock: new SimulatedClock(),
        inspect: (e) => {
          if (e.type !== '@xstate.microstep' || e.actorRef !== actor) return;
          for (const t of e._transitions) transitionsSeen.add(key(t));
          for (const node of (e.snapshot as typeof state)._nodes) statesSeen.add(node.id);
        },
      });
      actor.subscribe({ error: (err) => errors.push(err) });
      actor.start();
      actor.send(edge.event);
      const after = actor.getSnapshot();
      actor.stop();
      edges++;
      const what = `${from} --${eventKey(edge.event)}-->`;
      expect(errors, what).toEqual([]);
      expect(JSON.stringify(after.value), what).toBe(edge.value);
      expect(abstractState(after), what).toBe(edge.key);
    };
    const replayed = new Set<string>();
    // Two passes: first one edge per (state, event, next state), which covers most
    // transitions quickly; then one per (state, event, next abstract state): edges that differ only
    // in context the event does not read take the same transitions. Both stop once every state and
    // transition has been seen (the remaining edges can only repeat them), unless VETLINE_LONG=1.
    const eventSignature = (event: CallEvent) =>
      JSON.stringify(event, (k, v: unknown) => (k === 'generation' || k === 'epoch' || k === 'endMs' || v instanceof Uint8Array ? undefined : v));
    const passes = [
      (from: string, edge: Edge) => `${from} ${eventSignature(edge.event)} ${edge.value}`,
      (from: string, edge: Edge) => `${from} ${eventSignature(edge.event)} ${edge.key}`,
    ];
    for (const [pass, signatureOf] of passes.entries()) {
      for (const { adjacency } of explored) {
        for (const [vertex, { state, transitions: out }] of Object.entries(adjacency)) {
          if (done) break;
          for (const node of state._nodes) statesSeen.add(node.id);
          if (state.status !== 'active') continue;
          const from = JSON.stringify(state.value);
          for (const edge of Object.values(out)) {
            const signature = `${pass} ${signatureOf(from, edge)}`;
            if (replayed.has(signature)) continue;
            replayed.add(signature);
            replay(vertex, state, edge);
            if (!LONG && edges % 32 === 0 && covered()) done = true;
            if (done) break;
          }
        }
      }
    }
    const missingStates = nodes.map((n) => n.id).filter((id) => !statesSeen.has(id));
    const missingTransitions = transitions.filter((t) => !transitionsSeen.has(t));
    expect(missingStates).toEqual([]);
    expect(missingTransitions).toEqual([]);
  }, 120_000);

  /**
   * Liveness over the whole graph: a call nobody talks to (no caller, no hang-up, no engine
   * command, no REST answer, no synthesizer) still ends, by its own timers. Hang-up events reach
   * `ended` from every state in one step, so they would make this hold for any machine.
   */
  it('ended is reachable from every state by timers alone', () => {
    const timer = (e: CallEvent) => e.type.startsWith('xstate.after.');
    for (const { name, adjacency } of explored) {
      // Backwards from the final states over reversed timer edges: what it reaches can reach `ended`.
      const into = new Map<string, string[]>();
      for (const [from, { transitions }] of Object.entries(adjacency)) {
        for (const { event, key: to } of Object.values(transitions)) {
          if (!timer(event) || to === from) continue;
          const list = into.get(to);
          if (list) list.push(from);
          else into.set(to, [from]);
        }
      }
      const reaches = new Set(Object.keys(adjacency).filter((k) => adjacency[k]!.state.status === 'done'));
      expect(reaches.size, name).toBeGreaterThan(0);
      const queue = [...reaches];
      while (queue.length > 0) {
        for (const from of into.get(queue.pop()!) ?? []) {
          if (!reaches.has(from)) {
            reaches.add(from);
            queue.push(from);
          }
        }
      }
      const stuck = Object.keys(adjacency).filter((k) => !reaches.has(k));
      expect(stuck, `${name}: states that never end without a hang-up`).toEqual([]);
    }
  });

  // The emergency script itself, not merely the emergency state: while "Is your pet in danger?" is
  // being asked (and after a no) the emergency key still starts the script in one event.
  it('the emergency script is one event away from every live state until an emergency has been handled', () => {
    let checking = 0;
    for (const { adjacency } of explored) {
      for (const [from, { state, transitions }] of Object.entries(adjacency)) {
        if (state.status !== 'active' || state.context.emergency !== null) continue;
        if (state.matches({ emergency: 'checking' })) checking++;
        const reaches = Object.values(transitions).some((t) => t.script);
        expect(reaches, from).toBe(true);
      }
    }
    expect(checking).toBeGreaterThan(0);
  });

  it('with consent required, no reply before the answer and no recording without a yes', () => {
    for (const [from, { state }] of explored.filter((e) => e.name.startsWith('consent')).flatMap((e) => Object.entries(e.adjacency))) {
      if (state.context.consent === 'pending') expect(state.matches('reply'), from).toBe(false);
      if (state.context.consent !== 'given') expect(state.context.recording, from).toBe('off');
    }
  });

  it('every waiting state has a timeout or leaves at once', () => {
    const atomic = allStateNodes(callMachine.root).filter((n) => n.type === 'atomic');
    for (const node of atomic) {
      const transient = (node.always ?? []).some((t) => !t.guard);
      let timed = false;
      for (let n: AnyStateNode | undefined = node; n && !timed; n = n.parent) {
        timed = n.after.some((t) => t.target !== undefined && !t.guard) || (n !== node && n.after.some((t) => t.target !== undefined));
      }
      expect(transient || timed, node.id).toBe(true);
    }
  });
});
