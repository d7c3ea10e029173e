/**
 * The live feed a call session reports to the inspector (`SessionDeps.onActivity`): every snapshot,
 * every event sent to the actor (from the Twilio edge or a child actor), every command the machine
 * emits, the caller's decoded audio frames (for the level meter) and the end of the call.
 * `t` is ms since the session was created (the session's monotonic clock).
 *
 * Listeners run inside the actor's observers: they must be cheap and must never throw (an error in
 * an observer is rethrown on a timer by XState and would take the process down).
 */
import type { Snapshot, StateValue } from 'xstate';
import type { CallCommand, CallContext, CallEvent, Outcome } from '../../machines/call/call.types.js';

export type SnapshotStatus = Snapshot<unknown>['status'];

export type CallActivity =
  /** Every snapshot the actor publishes; `changed` when the state value differs from the last one. */
  | { type: 'snapshot'; callSid: string; t: number; status: SnapshotStatus; value: StateValue; context: CallContext; changed: boolean }
  /** An event about to be sent to the actor: `edge` from webhooks/Media Stream, `child` from an invoked actor. */
  | { type: 'event'; callSid: string; t: number; source: 'edge' | 'child'; event: CallEvent }
  /** A command the machine emitted, before the session executes it. */
  | { type: 'command'; callSid: string; t: number; command: CallCommand }
  /** One decoded inbound frame (20 ms, 8 kHz); the array is reused by the session: read it now. */
  | { type: 'audio'; callSid: string; t: number; pcm: Int16Array }
  /** The session finished (outcome recorded, actor stopped). */
  | { type: 'ended'; callSid: string; t: number; outcome: Outcome }
  /** The call's stream reached another worker, which carries the call: forget this copy (no outcome). */
  | { type: 'moved'; callSid: string; t: number };

export type ActivityListener = (activity: CallActivity) => void;
