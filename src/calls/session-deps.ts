/**
 * What a call session is given (src/calls/session.ts): providers, Twilio REST, the journal, the
 * follow-through, and the diagnostics hooks.
 */
import type { Logger } from 'pino';
import type { callMachine } from '../../machines/call/call.machine.js';
import type { CallCommand } from '../../machines/call/call.types.js';
import type { JournalFactory } from '../journal/writer.js';
import type { Providers } from '../providers/types.js';
import type { TwilioRest } from '../twilio/rest-types.js';
import type { CallActivity } from './activity.js';
import type { Prompts } from './child-actors.js';
import type { FollowThrough } from './follow-through.js';
import type { ProviderBudget } from './provider-budget.js';

export interface SessionDeps {
  providers: Providers;
  prompts: Prompts;
  /** Null when no Twilio credentials are configured (development): transfers and hang-ups then fail over in the machine. */
  rest: TwilioRest | null;
  publicBaseUrl: string;
  logger: Logger;
  /** Monotonic ms. */
  now?: () => number;
  /** Wall clock, epoch ms (opening hours at the call's start). Default Date.now. */
  clock?: () => number;
  /** The call machine to run; tests pass a variant (e.g. with an action that throws). */
  machine?: typeof callMachine;
  /** Live feed for the inspector: snapshots, events, commands, inbound audio, end. Must not throw. */
  onActivity?: (activity: CallActivity) => void;
  /** Event journal (docs/journal.md); absent: calls are not journaled. */
  journal?: JournalFactory;
  /** Diagnostics tap (tests, tools): every state change and every command of every call, in order. */
  tap?: SessionTap;
  /**
   * Where requests, messages, emergencies and the call summary go (the store, then the clinic).
   * Absent (unit tests, bench): requests are kept in the call's context and journal only.
   */
  followThrough?: FollowThrough;
  /** The clinics' daily provider budgets: usage counted, the embedded providers once one is used up. */
  budget?: ProviderBudget;
}

/** What the webhook told about a call beyond its CallSid. */
export interface CallOrigin {
  /** The signed `From`; used only as the clinic's privacy setting allows, never logged. */
  from: string | null;
}

export interface SessionTap {
  /** `state` is the dotted path; `t` ms since the call started. */
  transition?(callSid: string, state: string, t: number): void;
  command?(callSid: string, command: CallCommand, t: number): void;
}
