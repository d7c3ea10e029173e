/**
 * fast-check arbitraries for the call-event fuzz: a run is a clinic, an agent script, and up to 50
 * steps of symbolic events. Steps name generations relatively ("the current one", "a stale one")
 * and are resolved against the live actor only when sent, so a shrunk counterexample still means
 * the same thing when replayed.
 */
import fc from 'fast-check';
import type { AgentAction, CallEvent } from '../../machines/call/call.types.js';
import type { AgentScript } from '../support/call-harness.js';

/** Which generation an agent or synthesizer event carries, relative to the actor's state when sent. */
export type GenRef = 'current' | 'stale' | 'future';

export type AgentStep =
  | { kind: 'delta'; text: string }
  | { kind: 'expect'; answer: 'short' | 'normal' | 'long' }
  | { kind: 'appointment' }
  | { kind: 'done'; action: AgentAction | null }
  | { kind: 'error' };

export type TtsStep = { kind: 'chunk'; bytes: number } | { kind: 'segment'; text: string } | { kind: 'done' } | { kind: 'error' };

export type Step =
  | { t: 'advance'; ms: number }
  /** Let pending promise actors (Twilio REST fakes) settle. */
  | { t: 'settle' }
  | { t: 'start' }
  | { t: 'stop' }
  | { t: 'closed' }
  | { t: 'status'; status: 'completed' | 'busy' | 'failed' | 'no-answer' | 'canceled' }
  | { t: 'hangup' }
  | { t: 'handoff' }
  | { t: 'recording' }
  | { t: 'dtmf'; digit: string }
  /** A mark echo: of audio the caller heard, of a cleared epoch, or of the previous generation. */
  | { t: 'mark'; kind: 'heard' | 'staleEpoch' | 'staleGen'; fraction: number }
  | { t: 'speechStart' }
  | { t: 'speechEnd'; speechMs: number }
  /** A short pause inside the segment, and speech again before it closes. */
  | { t: 'pause' }
  | { t: 'resume' }
  /** Interim words, sent now (after any pause began) or before the caller fell silent. */
  | { t: 'partial'; text: string; late?: boolean }
  | { t: 'final'; text: string }
  /** A whole caller turn: speech start, speech end, final transcript. */
  | { t: 'turn'; text: string; speechMs: number }
  | { t: 'sttError' }
  | { t: 'agent'; gen: GenRef; step: AgentStep }
  | { t: 'tts'; gen: GenRef; step: TtsStep }
  | { t: 'fallback'; kind: 'stt' | 'agent' | 'tts' }
  | { t: 'dtmfTimeout' };

/** What a caller says: questions, consent answers, backchannels, interruptions. */
export const CALLER_TEXTS = [
  'what are your hours',
  'I need an appointment for Rex next monday',
  'yes',
  'yes that is fine',
  'no',
  'no thanks',
  'mm-hmm',
  'okay',
  'wait stop',
  'help',
  '',
] as const;

/** Emergencies, plain and negated or asked about; rarer, since a handled emergency ends the call. */
export const EMERGENCY_TEXTS = [
  'my dog is bleeding',
  'he ate rat poison',
  "my cat can't breathe",
  'she had a seizure',
  "it's not an emergency",
  'he is not bleeding',
  'is chocolate poison for dogs?',
] as const;

const text = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...CALLER_TEXTS) }, { weight: 1, arbitrary: fc.constantFrom(...EMERGENCY_TEXTS) });
const genRef = fc.constantFrom<GenRef>('current', 'current', 'current', 'stale', 'future');

const action: fc.Arbitrary<AgentAction | null> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constant<AgentAction>({ type: 'transfer', target: 'frontDesk', reason: 'asked' }) },
  { weight: 1, arbitrary: fc.constant<AgentAction>({ type: 'end', reason: 'bye' }) },
  { weight: 1, arbitrary: fc.constant<AgentAction>({ type: 'emergency', reason: 'bleeding' }) },
);

const agentStep: fc.Arbitrary<AgentStep> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('delta' as const), text: fc.constantFrom('Sure. ', 'We open at nine', ' and close at five. ', 'Hmm') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expect' as const), answer: fc.constantFrom('short' as const, 'normal' as const, 'long' as const) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'appointment' as const }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('done' as const), action }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'error' as const }) },
);

const ttsStep: fc.Arbitrary<TtsStep> = fc.oneof(
  // 20 ms to 2 s of μ-law, in whole frames as the synthesizer's output is re-chunked.
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('chunk' as const), bytes: fc.integer({ min: 1, max: 100 }).map((n) => n * 160) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('segment' as const), text: fc.constantFrom('', 'Sure thing.', 'We open at nine.') }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'done' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'error' as const }) },
);

/** Mostly short advances (turn-taking windows), sometimes past prompt, silence and REST timeouts. */
export const advanceMs = fc.oneof(
  { weight: 16, arbitrary: fc.integer({ min: 0, max: 1_000 }) },
  { weight: 6, arbitrary: fc.integer({ min: 1_000, max: 5_000 }) },
  { weight: 3, arbitrary: fc.integer({ min: 5_000, max: 20_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 20_000, max: 70_000 }) },
);

export const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: advanceMs }) },
  { weight: 2, arbitrary: fc.constant({ t: 'settle' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'start' as const }) },
  // The caller hanging up ends the run early, so it is rare here; every run's finale tests it too.
  { weight: 1, arbitrary: fc.constantFrom({ t: 'stop' as const }, { t: 'closed' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('status' as const), status: fc.constantFrom('completed' as const, 'busy' as const, 'no-answer' as const) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'hangup' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'handoff' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'recording' as const }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('dtmf' as const), digit: fc.constantFrom('0', '1', '1', '2', '2', '3', '4', '7', '9', '*', '#', '#') }) },
  {
    weight: 6,
    arbitrary: fc.record({ t: fc.constant('mark' as const), kind: fc.constantFrom('heard' as const, 'heard' as const, 'staleEpoch' as const, 'staleGen' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
  },
  { weight: 6, arbitrary: fc.constant({ t: 'speechStart' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('speechEnd' as const), speechMs: fc.integer({ min: 50, max: 4_000 }) }) },
  { weight: 2, arbitrary: fc.constant({ t: 'pause' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'resume' as const }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('partial' as const), text, late: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('final' as const), text }) },
  { weight: 8, arbitrary: fc.record({ t: fc.constant('turn' as const), text, speechMs: fc.integer({ min: 100, max: 3_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'sttError' as const }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('agent' as const), gen: genRef, step: agentStep }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('tts' as const), gen: genRef, step: ttsStep }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('fallback' as const), kind: fc.constantFrom('stt' as const, 'agent' as const, 'tts' as const) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'dtmfTimeout' as const }) },
);

/** What the harness's fake agent does on each reply it is asked for. */
export const agentScript: fc.Arbitrary<AgentScript> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      text: fc.constantFrom('Okay.', 'We are open nine to five. Anything else?', '', 'Our clinic offers vaccinations, dental care, surgery and boarding. Which one do you need?'),
      action,
    }),
  },
  { weight: 2, arbitrary: fc.record({ text: fc.constantFrom('Let me check that for you.', 'Sure.'), action, delayMs: fc.integer({ min: 0, max: 12_000 }) }) },
  { weight: 1, arbitrary: fc.record({ error: fc.constant('model down') }) },
);

/** How the run ends: left alone for two hours, or the caller hangs up. */
export type Finale = 'quiet' | 'stop' | 'closed';

export interface Run {
  clinic: string;
  agent: AgentScript[];
  transferFails: boolean;
  /** Most calls get their stream; some never do, or get it late among the other events. */
  startFirst: boolean;
  steps: Step[];
  finale: Finale;
}

/**
 * A common opening, so that many runs reach a reply (and barge-ins into it): past the greeting
 * and the consent notice, a "yes", then a question and its end-of-turn window.
 */
export const WARM_UP: readonly Step[] = [
  { t: 'advance', ms: 5_500 },
  { t: 'turn', text: 'yes', speechMs: 400 },
  { t: 'advance', ms: 1_000 },
  { t: 'turn', text: 'what are your hours', speechMs: 800 },
  { t: 'advance', ms: 700 },
];

const MAX_STEPS = 50;

export const run = (clinics: readonly string[]): fc.Arbitrary<Run> =>
  fc.record({
    clinic: fc.constantFrom(...clinics),
    agent: fc.array(agentScript, { maxLength: 8 }),
    transferFails: fc.boolean(),
    startFirst: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    // size 'max': lengths spread over 0–50 instead of fast-check's small default.
    steps: fc
      .tuple(fc.boolean(), fc.array(step, { maxLength: MAX_STEPS, size: 'max' }))
      .map(([warm, steps]) => (warm ? [...WARM_UP, ...steps] : steps).slice(0, MAX_STEPS)),
    finale: fc.constantFrom<Finale>('quiet', 'quiet', 'stop', 'closed'),
  });

/** What Twilio has been sent per generation, as the edge sees it from the machine's commands. */
export interface Wire {
  /** Milliseconds of audio handed out per generation (sum of out.audio bytes / 8). */
  sentMs: Map<number, number>;
  /** Clears per generation: the epoch Twilio's marks carry. */
  epochs: Map<number, number>;
}

interface Live {
  /** The actor's current playback generation and newest generation handed out. */
  playbackGeneration: number;
  generation: number;
  synthDone: boolean;
  agentDone: boolean;
  replyGeneration: number | null;
}

const resolveGen = (ref: GenRef, current: number, live: Live) =>
  ref === 'current' ? current : ref === 'stale' ? Math.max(0, current - 1) : live.generation + 1;

/**
 * A mark Twilio could really echo: only for audio that was sent (Twilio echoes the names we sent),
 * so `endMs` is a fraction of what went out. Null when there is no such mark.
 */
function markEvent(s: Extract<Step, { t: 'mark' }>, live: Live, wire: Wire): CallEvent | null {
  const generation = s.kind === 'staleGen' ? live.playbackGeneration - 1 : live.playbackGeneration;
  const sent = wire.sentMs.get(generation) ?? 0;
  const epochNow = wire.epochs.get(generation) ?? 0;
  const epoch = s.kind === 'staleEpoch' ? epochNow - 1 : epochNow;
  if (generation < 1 || epoch < 0 || sent === 0) return null;
  return { type: 'twilio.mark', generation, epoch, endMs: Math.max(1, Math.floor(sent * s.fraction)) };
}

function agentEvent(s: Extract<Step, { t: 'agent' }>, live: Live): CallEvent | null {
  // The agent contract: nothing after agent.done for its generation, so no "current" events then.
  if (s.gen === 'current' && (live.replyGeneration === null || live.agentDone)) return null;
  const generation = resolveGen(s.gen, live.replyGeneration ?? live.playbackGeneration, live);
  const a = s.step;
  switch (a.kind) {
    case 'delta':
      return { type: 'agent.delta', generation, text: a.text };
    case 'expect':
      return { type: 'agent.expect', generation, answer: a.answer };
    case 'appointment':
      return { type: 'agent.request', generation, request: { id: 'fu-1', kind: 'appointment', petName: 'Rex', petSpecies: 'dog', ownerName: null, reason: 'checkup', preferredTime: 'monday', message: null, recipient: null, callback: { kind: 'none' }, urgency: 'routine' } };
    case 'done':
      return { type: 'agent.done', generation, action: a.action };
    case 'error':
      return { type: 'agent.error', generation, message: 'fuzz' };
  }
}

function ttsEvent(s: Extract<Step, { t: 'tts' }>, live: Live): CallEvent | null {
  // The synthesizer contract: no chunk after tts.done for its generation.
  if (s.gen === 'current' && s.step.kind === 'chunk' && live.synthDone) return null;
  const generation = resolveGen(s.gen, live.playbackGeneration, live);
  const t = s.step;
  switch (t.kind) {
    case 'chunk':
      return { type: 'tts.chunk', generation, audio: new Uint8Array(t.bytes).fill(0x7f) };
    case 'segment':
      return { type: 'tts.segment', generation, text: t.text, ms: 100 };
    case 'done':
      return { type: 'tts.done', generation };
    case 'error':
      return { type: 'tts.error', generation, message: 'fuzz' };
  }
}

/**
 * The events one step sends, given the actor's state now and what went over the wire. Steps the
 * environment could not produce at this point (a mark for audio never sent, a chunk after its
 * generation's tts.done) send nothing. `atMs` is the stream clock.
 */
export function eventsOf(s: Step, live: Live, wire: Wire, atMs: number): CallEvent[] {
  const one = (e: CallEvent | null) => (e ? [e] : []);
  switch (s.t) {
    case 'advance':
    case 'settle':
      return [];
    case 'start':
      return [{ type: 'twilio.start', streamSid: 'MZ00000000000000000000000000000001' }];
    case 'stop':
      return [{ type: 'twilio.stop' }];
    case 'closed':
      return [{ type: 'twilio.closed' }];
    case 'status':
      return [{ type: 'call.status', status: s.status }];
    case 'hangup':
      return [{ type: 'call.hangup', reason: 'drain' }];
    case 'handoff':
      return [{ type: 'call.handoff', reason: 'shutdown' }];
    case 'recording':
      return [{ type: 'call.recording', recordingSid: 'RE00000000000000000000000000000001', status: 'in-progress' }];
    case 'dtmf':
      return [{ type: 'twilio.dtmf', digit: s.digit }];
    case 'mark':
      return one(markEvent(s, live, wire));
    case 'speechStart':
      return [{ type: 'vad.speechStart', atMs }];
    case 'speechEnd':
      return [{ type: 'vad.speechEnd', atMs, speechMs: s.speechMs }];
    case 'pause':
      return [{ type: 'vad.pause', atMs }];
    case 'resume':
      return [{ type: 'vad.resume', atMs }];
    case 'partial':
      return [s.late ? { type: 'stt.partial', text: s.text, atMs } : { type: 'stt.partial', text: s.text }];
    case 'final':
      return [{ type: 'stt.final', text: s.text, atMs }];
    case 'turn':
      return [
        { type: 'vad.speechStart', atMs },
        { type: 'vad.speechEnd', atMs: atMs + s.speechMs, speechMs: s.speechMs },
        { type: 'stt.final', text: s.text, atMs: atMs + s.speechMs },
      ];
    case 'sttError':
      return [{ type: 'stt.error', message: 'fuzz' }];
    case 'agent':
      return one(agentEvent(s, live));
    case 'tts':
      return one(ttsEvent(s, live));
    case 'fallback':
      return [{ type: 'provider.fallback', kind: s.kind, from: 'cloud', to: 'local', reason: 'fuzz' }];
    case 'dtmfTimeout':
      return [{ type: 'dtmf.timeout' }];
  }
}
