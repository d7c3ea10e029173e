/**
 * The call machine's model for the graph tests (test/machines/call.graph.test.ts): an abstraction
 * of the context, the events worth trying in a snapshot, the machine with inert children, the clinic
 * shapes walked, and the breadth-first walk itself. Pure: no vitest, so a child process can load it
 * (test/machines/graph/walk.cli.ts).
 */
import {
  __unsafe_getAllOwnEventDescriptors,
  createEmptyActor,
  fromCallback,
  fromPromise,
  type AnyStateNode,
  type AnyTransitionDefinition,
  type SnapshotFrom,
} from 'xstate';
import { callMachine } from '../../../machines/call/call.machine.js';
import type { CallActors } from '../../../machines/call/call.actors.js';
import type { CallEvent, CallTenant } from '../../../machines/call/call.types.js';
import { testTenant } from '../../support/call-harness.js';
import type { Shape } from './shapes.js';

export type Snap = SnapshotFrom<typeof callMachine>;

/**
 * Only what changes behaviour, and only where it does (the reply matters in `reply`, the playback
 * in states that play, …); counters are capped so the graph stays finite.
 */
export function abstractState(s: Snap): string {
  const c = s.context;
  const p = c.playback;
  const live = s.status === 'active';
  const inReply = s.matches('reply');
  const inListening = s.matches('listening');
  const preparing = s.matches({ reply: 'preparing' });
  const keepsWords = inListening || preparing || s.matches({ reply: 'interrupted' }) || s.matches('greeting') || s.matches('consent');
  // Where the end-of-turn guards read the turn: interim words, replies thrown away, the window left.
  const ending = preparing || s.matches({ listening: 'hearing' }) || s.matches({ listening: 'paused' }) || s.matches({ listening: 'transcribing' }) || s.matches({ listening: 'pausing' });
  // With preparing off (timing.preemptLeadMs 0) interim words and the lead only change the length of a timer.
  const prep = c.tenant.timing.preemptLeadMs > 0;
  return JSON.stringify({
    v: s.value,
    st: s.status,
    consent: c.consent,
    rec: c.recording.requested,
    em: c.emergency !== null,
    // Whether "Is your pet in danger?" was asked (after that, uncertain keywords no longer ask), not how it was answered.
    asked: c.emergencyCheck !== null,
    consentState: s.matches('consent') ? [c.turn.consentAnswer, c.counts.consentAsks] : null,
    tr: s.matches('transferring') ? c.transfer?.target : null,
    pb: live && playsAudio(s) ? (preparing ? [p.synthDone, p.queuedMs > 0] : [p.synthDone, p.heardMs >= p.queuedMs, p.cleared, p.queuedMs > 0]) : null,
    // A prepared reply's action and text only matter once it is committed (reply.done).
    reply: inReply && c.reply ? (preparing ? [c.reply.agentDone, c.reply.failed] : [c.reply.agentDone, c.reply.action?.type ?? null, c.reply.text.length > 0]) : null,
    turn: keepsWords && c.turn.text.length > 0,
    eot: ending
      ? [
          prep && !preparing && c.turn.partial !== '',
          s.matches({ reply: { preparing: 'transcribing' } }) && c.turn.awaitingFinal,
          prep && c.turn.preempts >= c.tenant.timing.maxPreemptsPerTurn,
          (s.matches({ reply: { preparing: 'pausing' } }) || s.matches({ listening: 'pausing' })) && c.turn.end.remainingMs === 0,
          prep && s.matches({ listening: 'pausing' }) && c.turn.end.remainingMs <= c.tenant.timing.preemptLeadMs,
        ]
      : null,
    silence: inListening ? c.counts.silencePrompts : null,
    failed: inListening || inReply ? Math.min(c.counts.failedTurns, 3) : null,
    digits: inListening && c.turn.digits.length > 0,
    expect: inListening ? c.turn.expect : null,
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
    // Interim words that read as finished, a final with trailing words (the long window), one the VAD closed 200 ms late;
    // a short pause inside the segment and the caller going on.
    events.push(
      { type: 'stt.partial', text: 'what are your hours' },
      { type: 'stt.final', text: 'and um', atMs: 0 },
      { type: 'vad.speechEnd', atMs: 0, speechMs: 500, closedAtMs: 200 },
      { type: 'vad.pause', atMs: 0 },
      { type: 'vad.resume', atMs: 0 },
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

export const inert = callMachine.provide({
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
export const tenants: Record<Shape, CallTenant> = {
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
export type Edge = { event: CallEvent; key: string; value: string; script: boolean };
export type Vertex = { state: Snap; transitions: Record<string, Edge> };

/** Events as @xstate/graph keys them, with audio as its length (JSON of 800 bytes costs more than the step). */
export const eventKey = (e: CallEvent) => JSON.stringify(e, (_k, v: unknown) => (v instanceof Uint8Array ? `${v.length} bytes` : v));

/**
 * Breadth first from the initial snapshot, as @xstate/graph's getAdjacencyMap walks it (same
 * vertices, same edges, same snapshot kept per vertex), but queueing each new abstract state once:
 * getAdjacencyMap queues every edge and dequeues with Array#shift, quadratic at ~100,000 edges.
 */
export function explore(tenant: CallTenant) {
  const input = { callSid: 'CA1', tenant };
  const empty = createEmptyActor();
  // The pure walk reports its microsteps through the system's inspection hook, as a live actor
  // does: every transition the graph takes, which the replay must then see taken live.
  const taken = new Set<AnyTransitionDefinition>();
  const system = Object.assign(Object.create(empty.system) as object, {
    _sendInspectionEvent: (e: { type: string; _transitions?: AnyTransitionDefinition[] }) => {
      if (e.type === '@xstate.microstep') for (const t of e._transitions ?? []) taken.add(t);
    },
  });
  const scope = {
    self: empty, logger: () => undefined, id: '', sessionId: 'graph', defer: () => undefined, system,
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
  return { input, adjacency, transitions: new Set([...taken].map(transitionKey)) };
}

export const allStateNodes = (node: AnyStateNode): AnyStateNode[] => [node, ...Object.values(node.states).flatMap(allStateNodes)];
export const allTransitions = (node: AnyStateNode): AnyTransitionDefinition[] => [
  ...[...node.transitions.values()].flat(),
  ...(node.always ?? []),
];
/** A transition's name: its source state, its event (or `always`) and its index among that event's transitions. */
export const transitionKey = (t: AnyTransitionDefinition) => {
  const type = String(t.eventType);
  const list: readonly AnyTransitionDefinition[] = type ? (t.source.transitions.get(type) ?? []) : (t.source.always ?? []);
  return `${String(t.source.id)} ${type || 'always'}#${list.indexOf(t)}`;
};

