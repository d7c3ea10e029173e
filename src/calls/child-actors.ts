/**
 * The real implementations of the call machine's child actors. Each turns a provider
 * (src/providers) into events for the machine and releases everything when it stops.
 *
 * Contracts (inputs, what each actor receives and sends, ordering rules) are the table in
 * machines/call/call.actors.ts; this set is checked against it with `satisfies`.
 *
 * The actor logic (`liveActors`) is one set for the whole process, so the machine is provided with
 * it once, not per call: building a provided machine costs more CPU than the rest of a call's
 * set-up. `createCallActor` makes a call's actor and binds that call's dependencies to its actor
 * system (one per call actor tree) in the same step; the logic looks them up there.
 */
import { createActor, fromCallback, fromPromise, type Actor, type ActorOptions, type CallbackLogicFunction, type EventObject } from 'xstate';
import type { callMachine } from '../../machines/call/call.machine.js';
import type { AgentCommand, AgentInput, CallActors, CallRef, ReasonInput, TransferInput, TtsCommand, TtsInput, VadCommand } from '../../machines/call/call.actors.js';
import type { CallerRequest as MachineRequest, CallEvent, CallInput, ClipId, Speech, TransferTarget } from '../../machines/call/call.types.js';
import type { Tenant } from '../config/tenant.schema.js';
import type { AgentAction, AgentSession, CallerRequest, FallbackReport } from '../providers/agent/types.js';
import type { SttProvider } from '../providers/stt/types.js';
import type { TtsOptions, TtsProvider } from '../providers/tts/types.js';
import type { VadProvider } from '../providers/vad/types.js';
import type { AudioHub } from './audio-hub.js';
import { AudioBatcher } from './audio-batcher.js';

export interface Prompts {
  get(tenantId: string, clip: ClipId): Uint8Array;
}

export interface CallActorDeps {
  tenant: Tenant;
  hub: AudioHub;
  vad: VadProvider;
  stt: SttProvider;
  tts: TtsProvider;
  agent: AgentSession;
  prompts: Prompts;
  /** Vocabulary to bias recognition toward (clinic name, staff, menu words, emergency keywords). */
  vocabulary: readonly string[];
  transfer(target: TransferTarget, signal: AbortSignal): Promise<void>;
  hangup(signal: AbortSignal): Promise<void>;
  /** Drain deadline: hand the call to the front desk through Twilio REST. */
  handoff(signal: AbortSignal): Promise<void>;
  /**
   * Makes a confirmed request durable (the store) and returns its id. The agent actor awaits it
   * before passing on any more of the reply, so "I've sent it" is never said before it is true.
   */
  commitRequest(request: CallerRequest): Promise<string>;
  /** Billable provider usage (tokens, characters) for the call's cost estimate; speech time comes from the VAD. */
  usage?(usage: ProviderUsage): void;
  /** Observes every event a child sends to the machine (latency accounting, journal). */
  observe?(event: CallEvent): void;
  /** A reply generation's agent actor started (its request goes out now, the turn possibly not yet committed). */
  replyStarted?(generation: number): void;
}

/** Usage of one reply generation (its reply may still be thrown away if it was only prepared). */
export type ProviderUsage = { kind: 'agent'; generation: number; inputTokens: number; outputTokens: number } | { kind: 'tts'; generation: number; characters: number };

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Largest chunk handed to the machine at once; the player slices it into 100 ms messages anyway. */
const MAX_CHUNK_BYTES = 8 * 400;

/** What one call's child actors do, as plain functions over that call's dependencies. */
interface CallActorBodies {
  vad: CallbackLogicFunction<VadCommand, EventObject, { callSid: string }>;
  stt: CallbackLogicFunction<EventObject, EventObject, { callSid: string }>;
  agent: CallbackLogicFunction<AgentCommand, EventObject, AgentInput>;
  tts: CallbackLogicFunction<TtsCommand, EventObject, TtsInput>;
  transfer(target: TransferTarget, signal: AbortSignal): Promise<void>;
  hangup(signal: AbortSignal): Promise<void>;
  handoff(signal: AbortSignal): Promise<void>;
}

/**
 * The machine's copy of a committed request: the same fields (declared twice so machines/ stays
 * pure; this fails to compile if they drift), less the call-back number, which only the store keeps.
 */
const forMachine = ({ callback, ...rest }: CallerRequest): MachineRequest => ({ ...rest, callback: { kind: callback.kind } });

/** Spoken instead of "I've sent it" when the request could not be stored; the call then goes to the front desk. */
const NOT_SAVED_LINE = "I'm sorry, I couldn't save your request. Let me connect you to the front desk.";

/** Keyed by actor system (xstate's `ActorSystem`; only its identity matters here). */
const boundCalls = new WeakMap<object, CallActorBodies>();

function bodiesOf(system: object): CallActorBodies {
  const bodies = boundCalls.get(system);
  if (!bodies) throw new Error('call actors were not bound to this call (make call actors with createCallActor)');
  return bodies;
}

/** The child actor logic of every call (the contract table's shape); each instance runs its own call's bound implementation. */
const liveActors = {
  vad: fromCallback<VadCommand, CallRef>((args) => bodiesOf(args.system).vad(args)),
  stt: fromCallback<EventObject, CallRef>((args) => bodiesOf(args.system).stt(args)),
  agent: fromCallback<AgentCommand, AgentInput>((args) => bodiesOf(args.system).agent(args)),
  tts: fromCallback<TtsCommand, TtsInput>((args) => bodiesOf(args.system).tts(args)),
  transfer: fromPromise<void, TransferInput>(({ input, signal, system }) => bodiesOf(system).transfer(input.target, signal)),
  hangup: fromPromise<void, ReasonInput>(({ signal, system }) => bodiesOf(system).hangup(signal)),
  handoff: fromPromise<void, ReasonInput>(({ signal, system }) => bodiesOf(system).handoff(signal)),
} satisfies CallActors;

const provided = new WeakMap<typeof callMachine, typeof callMachine>();

/**
 * The only way to make a call actor: the machine (provided with the live actors once per machine,
 * tests pass variants) and this call's dependencies bound to its actor system in one step, so no
 * actor can start with its dependencies forgotten.
 */
export function createCallActor(machine: typeof callMachine, options: ActorOptions<typeof callMachine> & { input: CallInput }, deps: CallActorDeps): Actor<typeof callMachine> {
  let withActors = provided.get(machine);
  if (!withActors) provided.set(machine, (withActors = machine.provide({ actors: liveActors })));
  const actor = createActor(withActors, options);
  boundCalls.set(actor.system, createCallActorBodies(deps));
  return actor;
}

function createCallActorBodies(deps: CallActorDeps): CallActorBodies {
  const { tenant, hub } = deps;
  const observed = (sendBack: (e: CallEvent) => void) => (event: CallEvent) => {
    deps.observe?.(event);
    sendBack(event);
  };

  const vad: CallActorBodies['vad'] = ({ sendBack, receive }) => {
    const send = observed(sendBack);
    const v = tenant.vad;
    const detector = deps.vad.create({
      listening: { thresholdDb: v.listeningThresholdDb, minSpeechMs: v.minSpeechMs, minSilenceMs: v.minSilenceMs, pauseMs: v.pauseMs },
      // While we speak, echo leaks back: louder and longer speech is needed to count as a barge-in.
      speaking: {
        thresholdDb: v.speakingThresholdDb,
        minSpeechMs: Math.max(v.minSpeechMs, tenant.timing.bargeInMinSpeechMs),
        minSilenceMs: v.minSilenceMs,
        pauseMs: v.pauseMs,
      },
    });
    receive((cmd) => detector.setMode(cmd.mode));
    let quiet = new Int16Array(160);
    return hub.onFrame((pcm, atMs) => {
      // Echo guard: a frame that may be only our own voice coming back is silence to the VAD (the
      // recognizer still gets it; docs/design/conversation.md §2).
      if (quiet.length !== pcm.length) quiet = new Int16Array(pcm.length);
      const decision = detector.process(hub.mayBeEcho(pcm, atMs) ? quiet : pcm, atMs);
      if (!decision) return;
      // A pause inside the segment is the machine's alone: the recognizer's segment goes on.
      if (decision.type === 'pause' || decision.type === 'resume') return send({ type: decision.type === 'pause' ? 'vad.pause' : 'vad.resume', atMs: decision.atMs });
      // The machine hears of the boundary first, then the recognizer: a recognizer that answers at
      // once (the local one) must find the machine already waiting for that transcript.
      send(decision.type === 'speechStart' ? { type: 'vad.speechStart', atMs: decision.atMs } : { type: 'vad.speechEnd', atMs: decision.atMs, speechMs: decision.speechMs });
      hub.boundary(decision.type === 'speechStart' ? 'start' : 'end');
    });
  };

  const stt: CallActorBodies['stt'] = ({ sendBack }) => {
    const send = observed(sendBack);
    const ac = new AbortController();
    let failed = false;
    const stream = deps.stt.open({
      language: tenant.voice.language,
      vocabulary: deps.vocabulary,
      signal: ac.signal,
      onPartial: (text) => send({ type: 'stt.partial', text, atMs: hub.nowMs }),
      onFinal: (text, confidence) => send({ type: 'stt.final', text, atMs: hub.nowMs, confidence }),
      onError: (err) => {
        failed = true;
        send({ type: 'stt.error', message: message(err) });
      },
      onFallback: (r) => send({ type: 'provider.fallback', ...r }),
    });
    const offFrame = hub.onFrame((pcm) => {
      if (!failed) stream.write(pcm);
    });
    const offBoundary = hub.onBoundary((b) => {
      if (failed) return;
      if (b === 'start') stream.speechStarted();
      else stream.speechEnded();
    });
    return () => {
      offFrame();
      offBoundary();
      ac.abort();
      stream.close();
    };
  };

  const agent: CallActorBodies['agent'] = ({ input, sendBack, receive }) => {
    const send = observed(sendBack);
    const ac = new AbortController();
    const { generation } = input;
    // The reply may be only prepared (the caller's end-of-turn window still open): nothing
    // irreversible until the machine commits the turn (agent.commit), and nothing at all if it
    // stops the actor first (call.actors.ts).
    let commit = () => {};
    const committed = new Promise<void>((resolve) => (commit = resolve));
    const stopped = new Promise<void>((resolve) => ac.signal.addEventListener('abort', () => resolve(), { once: true }));
    receive((cmd) => {
      if (cmd.type === 'agent.commit') commit();
    });
    deps.replyStarted?.(generation);
    void (async () => {
      let action: AgentAction | null = null;
      try {
        const turn = { transcript: input.transcript, history: input.history, signal: ac.signal, committed, onFallback: (r: FallbackReport) => send({ type: 'provider.fallback', ...r }) };
        for await (const out of deps.agent.respond(turn)) {
          if (ac.signal.aborted) return;
          if (out.type === 'delta') send({ type: 'agent.delta', generation, text: out.text });
          else if (out.type === 'expect') send({ type: 'agent.expect', generation, answer: out.answer });
          else if (out.type === 'request') {
            await Promise.race([committed, stopped]);
            if (ac.signal.aborted) return;
            let id: string;
            try {
              id = await deps.commitRequest(out.request);
            } catch (err) {
              if (ac.signal.aborted) return;
              // Nothing is lost silently: the caller is told, and a person takes over.
              send({ type: 'agent.delta', generation, text: NOT_SAVED_LINE });
              send({ type: 'agent.done', generation, action: { type: 'transfer', target: 'frontDesk', reason: `request not saved: ${message(err).slice(0, 80)}` } });
              return;
            }
            if (ac.signal.aborted) return;
            send({ type: 'agent.request', generation, request: { ...forMachine(out.request), id } });
          } else if (out.type === 'usage') deps.usage?.({ kind: 'agent', generation, inputTokens: out.inputTokens, outputTokens: out.outputTokens });
          else action = out.action;
        }
        if (!ac.signal.aborted) send({ type: 'agent.done', generation, action });
      } catch (err) {
        if (!ac.signal.aborted) send({ type: 'agent.error', generation, message: message(err) });
      }
    })();
    return () => ac.abort();
  };

  const tts: CallActorBodies['tts'] = ({ input, sendBack, receive }) => {
    const send = observed(sendBack);
    const ac = new AbortController();
    const { generation } = input;
    const queue: Speech[] = [...input.speech];
    let ended = !input.streaming;
    let running = false;
    const { voice } = tenant;
    const ttsOptions: TtsOptions = {
      voice: voice.local,
      ...(voice.cloud ? { cloudVoice: voice.cloud } : {}),
      language: voice.language,
      signal: ac.signal,
      onFallback: (r) => send({ type: 'provider.fallback', ...r }),
    };

    // Chunks handed to the machine; what the synthesizer streams is joined on the way (audio-batcher.ts).
    const handOver = (audio: Uint8Array) => {
      for (let off = 0; off < audio.length; off += MAX_CHUNK_BYTES) {
        send({ type: 'tts.chunk', generation, audio: audio.subarray(off, Math.min(audio.length, off + MAX_CHUNK_BYTES)) });
      }
    };
    const batcher = new AudioBatcher(handOver);

    const speakOne = async (speech: Speech) => {
      let bytes = 0;
      if (speech.kind === 'clip') {
        const clip = deps.prompts.get(tenant.id, speech.clip);
        bytes = clip.length;
        handOver(clip);
      } else {
        deps.usage?.({ kind: 'tts', generation, characters: speech.text.length });
        for await (const chunk of deps.tts.synthesize(speech.text, ttsOptions)) {
          if (ac.signal.aborted) return;
          bytes += chunk.length;
          batcher.push(chunk);
        }
        // The segment ends where its audio ends: all of it handed over first.
        if (!ac.signal.aborted) batcher.flush();
      }
      if (!ac.signal.aborted) send({ type: 'tts.segment', generation, text: speech.kind === 'text' ? speech.text : '', ms: bytes / 8 });
    };

    const pump = async () => {
      if (running) return;
      running = true;
      try {
        while (queue.length > 0 && !ac.signal.aborted) await speakOne(queue.shift()!);
        if (ended && !ac.signal.aborted) send({ type: 'tts.done', generation });
      } catch (err) {
        if (!ac.signal.aborted) {
          batcher.flush(); // what was synthesized before the failure, as before it
          send({ type: 'tts.error', generation, message: message(err) });
        }
      } finally {
        running = false;
      }
      // Something may have arrived while the last item was finishing.
      if (queue.length > 0 && !ac.signal.aborted) void pump();
    };

    receive((cmd) => {
      if (cmd.type === 'tts.say') queue.push(cmd.speech);
      else ended = true;
      void pump();
    });
    void pump();
    return () => {
      ac.abort();
      batcher.stop();
    };
  };

  return {
    vad, stt, agent, tts,
    transfer: (target, signal) => deps.transfer(target, signal),
    hangup: (signal) => deps.hangup(signal),
    handoff: (signal) => deps.handoff(signal),
  };
}
