/**
 * The one table of the call's child actors: for each, its input, what it receives, what it sends
 * back, and when it ends. The machine only names them (`callActors`, given to `setup`); every
 * implementation set is checked against `CallActors` with `satisfies`: the live one
 * (src/calls/child-actors.ts), replay's inert one (src/replay/replay.ts) and the test harnesses.
 * Calling a stub is a bug.
 *
 * | actor    | input          | receives          | sends back (all tagged with `generation` where it has one)  | ends |
 * |----------|----------------|-------------------|--------------------------------------------------------------|------|
 * | vad      | `CallRef`      | `VadCommand`      | vad.speechStart, vad.pause, vad.resume, vad.speechEnd        | with the call |
 * | stt      | `CallRef`      | —                 | stt.partial, stt.final, stt.error, provider.fallback         | with the call |
 * | agent    | `AgentInput`   | `AgentCommand`    | agent.delta…, agent.expect, agent.request, then agent.done or agent.error; provider.fallback | when the reply state exits |
 * | tts      | `TtsInput`     | `TtsCommand`      | tts.chunk, tts.segment, then tts.done or tts.error; provider.fallback | when its state exits |
 * | transfer | `TransferInput`| —                 | (promise) resolves once Twilio accepted the <Dial>           | done/error |
 * | hangup   | `ReasonInput`  | —                 | (promise) resolves once Twilio ended the call                | done/error |
 * | handoff  | `ReasonInput`  | —                 | (promise) resolves once Twilio accepted the front-desk TwiML | done/error |
 *
 * Ordering rules an implementation must keep (docs/design/conversation.md §2 for why):
 * - vad sends its boundary event to the machine *before* it tells the recognizer, so a recognizer
 *   that answers at once finds the machine already waiting for that transcript;
 * - agent sends agent.request only after the request is committed, and nothing of the reply that
 *   follows it before then; nothing at all after agent.done or once stopped;
 * - agent does nothing irreversible before agent.commit (the caller's turn is committed): no
 *   request is committed to the store, no per-call memory of the receptionist changes. Until then
 *   the reply is only prepared, and a stopped agent leaves no trace (docs/design/conversation.md §1.5);
 * - tts sends chunks of one generation in order, tts.segment after a spoken item's last chunk, and
 *   nothing after tts.done or once stopped.
 * Audio frames never pass through the machine: vad and stt read them from the call's AudioHub
 * (src/calls/audio-hub.ts), whose frame buffer is reused for the next frame (copy what you keep).
 */
import { fromCallback, fromPromise, type EventObject } from 'xstate';
import type { AgentAction, CallEvent, ChatTurn, Speech, TransferTarget } from './call.types.js';

const notProvided = (name: string) => () => {
  throw new Error(`call actor "${name}" was not provided (use callMachine.provide)`);
};

/** The call an always-on actor (vad, stt) serves. */
export interface CallRef {
  callSid: string;
}

/** Voice activity detection: stricter while we speak (echo), looser while the caller has the floor. */
export type VadCommand = { type: 'vad.mode'; mode: 'listening' | 'speaking' };

/** The caller's turn this reply answers is committed: what the agent does may now last. */
export type AgentCommand = { type: 'agent.commit' };

/** One reply to the caller's latest turn. */
export interface AgentInput {
  generation: number;
  transcript: string;
  history: readonly ChatTurn[];
}

/** Speaks `speech` in order, then whatever arrives as tts.say; after tts.end (or at once when not `streaming`) sends tts.done. */
export type TtsCommand = { type: 'tts.say'; speech: Speech } | { type: 'tts.end' };
export interface TtsInput {
  generation: number;
  speech: readonly Speech[];
  /** More speech will follow through tts.say, closed by tts.end. */
  streaming: boolean;
}

export interface TransferInput {
  target: TransferTarget;
  reason: string;
}

export interface ReasonInput {
  reason: string;
}

/** The contract table as XState actor logic; `setup({ actors: callActors })` names them. */
export const callActors = {
  vad: fromCallback<VadCommand, CallRef>(notProvided('vad')),
  stt: fromCallback<EventObject, CallRef>(notProvided('stt')),
  agent: fromCallback<AgentCommand, AgentInput>(notProvided('agent')),
  tts: fromCallback<TtsCommand, TtsInput>(notProvided('tts')),
  transfer: fromPromise<void, TransferInput>(notProvided('transfer')),
  hangup: fromPromise<void, ReasonInput>(notProvided('hangup')),
  handoff: fromPromise<void, ReasonInput>(notProvided('handoff')),
};

/** What every implementation set must be: `{ … } satisfies CallActors`. */
export type CallActors = typeof callActors;

export type { AgentAction, CallEvent };
