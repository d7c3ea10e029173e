/**
 * Contracts of the call's child actors. The machine only names them; src/calls supplies the real
 * implementations with `callMachine.provide({ actors })`, tests supply fakes. Calling a stub is a bug.
 */
import { fromCallback, fromPromise, type EventObject } from 'xstate';
import type { AgentAction, CallEvent, ChatTurn, Speech, TransferTarget } from './call.types.js';

const notProvided = (name: string) => () => {
  throw new Error(`call actor "${name}" was not provided (use callMachine.provide)`);
};

/** Voice activity detection on the call's inbound audio; sends vad.speechStart / vad.speechEnd. */
export type VadCommand = { type: 'vad.mode'; mode: 'listening' | 'speaking' };
export const vadActor = fromCallback<VadCommand, { callSid: string }>(notProvided('vad'));

/** Speech to text on the call's inbound audio; sends stt.partial / stt.final / stt.error. */
export const sttActor = fromCallback<EventObject, { callSid: string }>(notProvided('stt'));

/** One reply: sends agent.delta…, then agent.done (or agent.error), all tagged with `generation`. */
export interface AgentInput {
  generation: number;
  transcript: string;
  history: readonly ChatTurn[];
}
export const agentActor = fromCallback<EventObject, AgentInput>(notProvided('agent'));

/**
 * Speech synthesis for one generation: speaks `speech` in order, then whatever arrives as
 * tts.say; after tts.end (or at once when not `streaming`) sends tts.done. Sends tts.chunk and
 * tts.segment as it goes; tts.error on failure.
 */
export type TtsCommand = { type: 'tts.say'; speech: Speech } | { type: 'tts.end' };
export interface TtsInput {
  generation: number;
  speech: readonly Speech[];
  /** More speech will follow through tts.say, closed by tts.end. */
  streaming: boolean;
}
export const ttsActor = fromCallback<TtsCommand, TtsInput>(notProvided('tts'));

/** Hand the live call to a human (Twilio REST update with <Dial>). Resolves once Twilio accepted it. */
export const transferActor = fromPromise<void, { target: TransferTarget; reason: string }>(notProvided('transfer'));

/** Hand the live call to the front desk because the engine is shutting down (Twilio REST update). */
export const handoffActor = fromPromise<void, { reason: string }>(notProvided('handoff'));

/** End the live call through Twilio REST. */
export const hangupActor = fromPromise<void, { reason: string }>(notProvided('hangup'));

export type { AgentAction, CallEvent };
