/**
 * Every graph check of one clinic shape, returned as data: background.ts walks the shapes in child
 * processes (walk.cli.ts) while the rest of the suite runs, and test/machines/call.graph.test.ts
 * asserts on what comes back.
 *
 * - The walk: breadth first over the abstraction (model.ts), recording every transition it takes.
 * - The replay: the walk's edges on a live actor (simulated clock, inert children), inspection
 *   recording the transitions and states it goes through. Each edge must land where the walk said
 *   (same state value, same abstract state) without an actor error. It stops once it has seen every
 *   transition and state the walk took (the remaining edges can only repeat them); under
 *   VETLINE_LONG=1 it replays one edge per (state, event, next abstract state).
 * - Liveness, the emergency script and consent, over every state the walk found.
 */
import { createActor, SimulatedClock } from 'xstate';
import type { CallEvent, CallTenant } from '../../../machines/call/call.types.js';
import { abstractState, eventKey, explore, inert, tenants, transitionKey, type Edge, type Snap } from './model.js';

export interface WalkResult {
  name: string;
  /** Walked at `npm run test:long`'s size (VETLINE_LONG=1). */
  long: boolean;
  vertices: number;
  edges: number;
  /** Edges replayed on a live actor. */
  replayed: number;
  /** State ids and transition keys the live replay went through. */
  statesSeen: string[];
  transitionsSeen: string[];
  /** Transitions and states the walk took that the live replay never did (must be none). */
  unreplayed: string[];
  /** Replayed edges that errored or did not land where the walk said (the first 20). */
  mismatches: string[];
  /** States that never end without a hang-up (liveness). */
  stuck: string[];
  /** Live states before any emergency from which no single event starts the emergency script. */
  noScript: string[];
  /** States found while "Is your pet in danger?" is being asked. */
  checking: number;
  /** With consent required: a reply before the answer, or recording without a yes. */
  consent: string[];
  walkMs: number;
  replayMs: number;
}

const MAX_MISMATCHES = 20;

export function walk(name: string, long: boolean): WalkResult {
  const tenant = (tenants as Record<string, CallTenant | undefined>)[name];
  if (!tenant) throw new Error(`no clinic shape ${name}`);
  const t0 = performance.now();
  const { adjacency, transitions: walked } = explore(tenant);
  const walkMs = performance.now() - t0;
  const vertices = Object.entries(adjacency);
  const walkedStates = new Set(vertices.flatMap(([, v]) => v.state._nodes.map((n) => n.id)));

  // The replay.
  const t1 = performance.now();
  const statesSeen = new Set<string>();
  const transitionsSeen = new Set<string>();
  const mismatches: string[] = [];
  let replayed = 0;
  const covered = () => [...walked].every((t) => transitionsSeen.has(t)) && [...walkedStates].every((s) => statesSeen.has(s));
  /** Restores the vertex in a live actor and sends the edge's event; inspection reports every transition taken, eventless ones included. */
  const replay = (from: string, state: Snap, edge: Edge) => {
    const errors: unknown[] = [];
    const actor = createActor(inert, {
      input: { callSid: 'CA1', tenant: state.context.tenant },
      snapshot: inert.getPersistedSnapshot(state),
      clock: new SimulatedClock(),
      inspect: (e) => {
        if (e.type !== '@xstate.microstep' || e.actorRef !== actor) return;
        for (const t of e._transitions) transitionsSeen.add(transitionKey(t));
        for (const node of (e.snapshot as typeof state)._nodes) statesSeen.add(node.id);
      },
    });
    actor.subscribe({ error: (err) => errors.push(err) });
    actor.start();
    actor.send(edge.event);
    const after = actor.getSnapshot();
    actor.stop();
    replayed++;
    if (mismatches.length >= MAX_MISMATCHES) return;
    const what = `${from} --${eventKey(edge.event)}-->`;
    if (errors.length > 0) mismatches.push(`${what} errored: ${String(errors[0])}`);
    else if (JSON.stringify(after.value) !== edge.value) mismatches.push(`${what} landed in ${JSON.stringify(after.value)}, not ${edge.value}`);
    else if (abstractState(after) !== edge.key) mismatches.push(`${what} landed in ${abstractState(after)}, not ${edge.key}`);
  };
  // Two passes: first one edge per (state, event, next state), which covers most transitions
  // quickly; then one per (state, event, next abstract state): edges that differ only in context
  // the event does not read take the same transitions.
  const eventSignature = (event: CallEvent) =>
    JSON.stringify(event, (k, v: unknown) => (k === 'generation' || k === 'epoch' || k === 'endMs' || v instanceof Uint8Array ? undefined : v));
  const passes = [
    (from: string, edge: Edge) => `${from} ${eventSignature(edge.event)} ${edge.value}`,
    (from: string, edge: Edge) => `${from} ${eventSignature(edge.event)} ${edge.key}`,
  ];
  const done = new Set<string>();
  let complete = false;
  for (const [pass, signatureOf] of passes.entries()) {
    for (const [vertex, { state, transitions: out }] of vertices) {
      if (complete) break;
      // Restored live by the replay (a final vertex, which has nothing to send, counts as found).
      for (const node of state._nodes) statesSeen.add(node.id);
      if (state.status !== 'active') continue;
      const from = JSON.stringify(state.value);
      for (const edge of Object.values(out)) {
        const signature = `${pass} ${signatureOf(from, edge)}`;
        if (done.has(signature)) continue;
        done.add(signature);
        replay(vertex, state, edge);
        if (!long && replayed % 32 === 0 && covered()) complete = true;
        if (complete) break;
      }
    }
  }
  const unreplayed = [...[...walked].filter((t) => !transitionsSeen.has(t)), ...[...walkedStates].filter((s) => !statesSeen.has(s))];
  const replayMs = performance.now() - t1;

  // Liveness: backwards from the final states over reversed timer edges; what that reaches can end by its own timers.
  const timer = (e: CallEvent) => e.type.startsWith('xstate.after.');
  const into = new Map<string, string[]>();
  let edges = 0;
  for (const [from, { transitions }] of vertices) {
    for (const { event, key: to } of Object.values(transitions)) {
      edges++;
      if (!timer(event) || to === from) continue;
      const list = into.get(to);
      if (list) list.push(from);
      else into.set(to, [from]);
    }
  }
  const reaches = new Set(vertices.filter(([, v]) => v.state.status === 'done').map(([k]) => k));
  const queue = [...reaches];
  while (queue.length > 0) {
    for (const from of into.get(queue.pop()!) ?? []) {
      if (!reaches.has(from)) {
        reaches.add(from);
        queue.push(from);
      }
    }
  }
  const stuck = reaches.size === 0 ? ['no final state found'] : vertices.map(([k]) => k).filter((k) => !reaches.has(k));

  // The emergency script, one event away until an emergency has been handled; consent.
  const noScript: string[] = [];
  const consent: string[] = [];
  let checking = 0;
  for (const [from, { state, transitions }] of vertices) {
    if (name.startsWith('consent')) {
      if (state.context.consent === 'pending' && state.matches('reply')) consent.push(`reply before the answer: ${from}`);
      if (state.context.consent !== 'given' && state.context.recording.requested) consent.push(`recording without a yes: ${from}`);
    }
    if (state.status !== 'active' || state.context.emergency !== null) continue;
    if (state.matches({ emergency: 'checking' })) checking++;
    if (!Object.values(transitions).some((t) => t.script)) noScript.push(from);
  }

  return {
    name, long, vertices: vertices.length, edges, replayed,
    statesSeen: [...statesSeen], transitionsSeen: [...transitionsSeen], unreplayed, mismatches,
    stuck, noScript, checking, consent, walkMs, replayMs,
  };
}
