/**
 * Drives the call machine on XState's simulated clock with scriptable fake children, and plays the
 * part of Twilio's playback: audio "plays" at 8 bytes per ms of simulated time, marks are echoed
 * when reached, and a clear drops the queue (its pending marks come back as cleared).
 */
import { createActor, fromCallback, fromPromise, SimulatedClock, type Actor } from 'xstate';
import type { AgentCommand, AgentInput, TtsCommand, TtsInput } from '../../machines/call/call.actors.js';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallActors } from '../../machines/call/call.actors.js';
import type { AgentAction, CallCommand, CallEvent, CallTenant, ClipId, Speech } from '../../machines/call/call.types.js';

export const testTenant = (overrides: Partial<CallTenant> = {}): CallTenant => ({
  id: 'test-clinic',
  openNow: true,
  consent: { required: false, onRefusal: 'continue' },
  recordingEnabled: true,
  emergency: { keywords: ['emergency', 'bleeding', 'poison', "can't breathe", 'seizure'], digit: '9', hasLine: true },
  menu: {
    '0': { action: 'transfer', target: 'frontDesk', label: 'the front desk' },
    '1': { action: 'agent', intent: 'appointment', label: 'appointments' },
    '*': { action: 'repeat', label: 'to hear these options again' },
  },
  backchannels: ['mm-hmm', 'uh-huh', 'yeah', 'okay', 'right'],
  timing: {
    silencePromptMs: 15_000,
    silencePromptsBeforeGoodbye: 2,
    endOfTurnMs: 600,
    endOfTurnShortMs: 400,
    endOfTurnLongMs: 1800,
    endOfTurnCompleteMs: 250,
    preemptLeadMs: 700,
    maxPreemptsPerTurn: 2,
    fillerAfterMs: 1500,
    bargeInMinSpeechMs: 150,
    interDigitMs: 2500,
  },
  limits: { maxCallMs: 900_000 },
  ...overrides,
});

/** A scripted agent turn: text deltas, then an optional action. */
export type AgentScript = { text: string; action?: AgentAction | null; delayMs?: number } | { error: string };

/** Bytes of fake speech per character of text (≈ 60 ms per character, a brisk phone voice). */
const BYTES_PER_CHAR = 480;
const CLIP_BYTES: Partial<Record<ClipId, number>> = { greeting: 16_000, consent: 24_000, emergency: 32_000 };

export interface HarnessOptions {
  tenant?: CallTenant;
  agent?: AgentScript[];
  transferFails?: boolean;
  /** Marks never come back (a socket that stopped delivering). */
  noMarks?: boolean;
}

export function createCallHarness(options: HarnessOptions = {}) {
  const clock = new SimulatedClock();
  const commands: CallCommand[] = [];
  const agentScript = [...(options.agent ?? [])];
  const agentInputs: AgentInput[] = [];
  const restCalls: string[] = [];
  const vadModes: string[] = [];
  /** Every pre-rendered clip the machine asked to play, in order. */
  const clips: ClipId[] = [];
  // Twilio playback model: queue of [generation, epoch, endMs] marks and the ms they play out at.
  let playing: { generation: number; epoch: number; endMs: number; atMs: number }[] = [];
  let playheadMs = 0;
  const epochs = new Map<number, number>();
  const sentMs = new Map<number, number>();

  const tts = fromCallback<TtsCommand, TtsInput>(({ input, receive, sendBack }) => {
    const speak = (s: Speech) => {
      if (s.kind === 'clip') clips.push(s.clip);
      const bytes = s.kind === 'clip' ? (CLIP_BYTES[s.clip] ?? 8_000) : s.text.length * BYTES_PER_CHAR;
      sendBack({ type: 'tts.chunk', generation: input.generation, audio: new Uint8Array(bytes).fill(0x7f) });
      sendBack({ type: 'tts.segment', generation: input.generation, text: s.kind === 'text' ? s.text : '', ms: bytes / 8 });
    };
    input.speech.forEach(speak);
    if (!input.streaming) sendBack({ type: 'tts.done', generation: input.generation });
    receive((cmd) => {
      if (cmd.type === 'tts.say') speak(cmd.speech);
      else sendBack({ type: 'tts.done', generation: input.generation });
    });
  });

  /** Generations whose agent was told the turn is committed, and whose agent was stopped before it finished. */
  const agentCommits: number[] = [];
  const agentStopped: number[] = [];
  // Like a vendor: the same question gets the same answer; a step is used up once its turn is committed.
  const agent = fromCallback<AgentCommand, AgentInput>(({ input, sendBack, receive }) => {
    agentInputs.push(input);
    const step = agentScript[0] ?? { text: 'Okay.' };
    let finished = false;
    receive((cmd) => {
      if (cmd.type !== 'agent.commit') return;
      agentCommits.push(input.generation);
      if (agentScript[0] === step) agentScript.shift();
    });
    const run = () => {
      finished = true;
      if ('error' in step) return sendBack({ type: 'agent.error', generation: input.generation, message: step.error });
      for (const word of step.text.split(/(?<= )/)) sendBack({ type: 'agent.delta', generation: input.generation, text: word });
      sendBack({ type: 'agent.done', generation: input.generation, action: step.action ?? null });
    };
    const id = 'delayMs' in step && step.delayMs ? clock.setTimeout(run, step.delayMs) : null;
    if (id === null) run();
    return () => {
      if (id !== null) clock.clearTimeout(id);
      if (!finished) agentStopped.push(input.generation);
    };
  });

  const machine = callMachine.provide({
    actors: {
      vad: fromCallback(({ receive }) => receive((e) => vadModes.push(e.mode))),
      stt: fromCallback(() => undefined),
      agent,
      tts,
      transfer: fromPromise(({ input }) => {
        restCalls.push(`transfer:${input.target}`);
        return options.transferFails ? Promise.reject(new Error('busy')) : Promise.resolve();
      }),
      hangup: fromPromise(({ input }) => {
        restCalls.push(`hangup:${input.reason}`);
        return Promise.resolve();
      }),
      handoff: fromPromise(({ input }) => {
        restCalls.push(`handoff:${input.reason}`);
        return options.transferFails ? Promise.reject(new Error('busy')) : Promise.resolve();
      }),
    } satisfies CallActors,
  });

  const actor: Actor<typeof machine> = createActor(machine, {
    input: { callSid: 'CA00000000000000000000000000000001', tenant: options.tenant ?? testTenant() },
    clock,
  });
  actor.on('*', (cmd) => {
    commands.push(cmd);
    if (cmd.type === 'out.audio') {
      // Like the real player: a mark after every 100 ms of audio.
      let startMs = sentMs.get(cmd.generation) ?? 0;
      const endMs = startMs + cmd.audio.length / 8;
      sentMs.set(cmd.generation, endMs);
      let at = Math.max(playheadMs, playing.at(-1)?.atMs ?? playheadMs);
      while (startMs < endMs) {
        const step = Math.min(100, endMs - startMs);
        startMs += step;
        at += step;
        playing.push({ generation: cmd.generation, epoch: epochs.get(cmd.generation) ?? 0, endMs: startMs, atMs: at });
      }
    } else if (cmd.type === 'out.clear') {
      epochs.set(cmd.generation, (epochs.get(cmd.generation) ?? 0) + 1);
      playing = [];
    } else if (cmd.type === 'out.resume') {
      const total = sentMs.get(cmd.generation) ?? 0;
      for (let ms = cmd.fromMs + 100; ms < total + 100; ms += 100) {
        const endMs = Math.min(ms, total);
        playing.push({ generation: cmd.generation, epoch: epochs.get(cmd.generation) ?? 0, endMs, atMs: playheadMs + (endMs - cmd.fromMs) });
      }
    }
  });

  /** Advance simulated time in 10 ms steps, echoing the marks of audio that finished playing. */
  const advance = (ms: number) => {
    const until = playheadMs + ms;
    while (playheadMs < until) {
      const step = Math.min(10, until - playheadMs);
      playheadMs += step;
      clock.increment(step);
      while (!options.noMarks && playing.length > 0 && playing[0]!.atMs <= playheadMs) {
        const next = playing.shift()!;
        if (actor.getSnapshot().status !== 'active') continue;
        actor.send({ type: 'twilio.mark', generation: next.generation, epoch: next.epoch, endMs: next.endMs });
      }
    }
  };

  const send = (event: CallEvent) => actor.send(event);
  const state = () => actor.getSnapshot();
  const path = () => JSON.stringify(actor.getSnapshot().value);
  const matches = (value: Parameters<ReturnType<typeof state>['matches']>[0]) => actor.getSnapshot().matches(value);

  /** The caller says something: VAD opens, closes, the recognizer delivers its final. */
  const say = (text: string, speechMs = 800) => {
    send({ type: 'vad.speechStart', atMs: playheadMs });
    advance(speechMs);
    send({ type: 'vad.speechEnd', atMs: playheadMs, speechMs });
    send({ type: 'stt.final', text, atMs: playheadMs });
  };

  /**
   * The caller says `text` as a streaming recognizer hears it: VAD opens, interim words during the
   * speech (`partial`, default the words themselves), the VAD closes `vadSilenceMs` after the last
   * word (its event back-dated to where the silence began), the final `finalAfterMs` after that.
   * `final: null` leaves the final owed (send it yourself).
   */
  const speak = (text: string, o: { speechMs?: number; partial?: string | null; vadSilenceMs?: number; finalAfterMs?: number; final?: string | null } = {}) => {
    const { speechMs = 800, vadSilenceMs = 200, finalAfterMs = 300 } = o;
    send({ type: 'vad.speechStart', atMs: playheadMs });
    advance(speechMs);
    const partial = o.partial === undefined ? text : o.partial;
    if (partial !== null) send({ type: 'stt.partial', text: partial });
    const endedAt = playheadMs;
    advance(vadSilenceMs);
    send({ type: 'vad.speechEnd', atMs: endedAt, speechMs, closedAtMs: playheadMs });
    const final = o.final === undefined ? text : o.final;
    if (final === null) return;
    advance(finalAfterMs);
    send({ type: 'stt.final', text: final, atMs: playheadMs });
  };

  /** Let promise actors (REST fakes) settle. */
  const settle = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  return { actor, clock, commands, settle, agentInputs, agentCommits, agentStopped, restCalls, vadModes, clips, send, state, path, matches, advance, say, speak, start: () => actor.start() };
}

export type CallHarness = ReturnType<typeof createCallHarness>;
