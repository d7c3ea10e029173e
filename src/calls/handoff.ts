/**
 * Calls whose webhook and Media Stream land on different processes (issue #14 part 3: `WORKERS`
 * behind one port; several instances behind a load balancer). /twilio/voice creates the call's
 * session where the webhook landed; the stream's process, holding a verified token for a call it
 * does not know, takes the call over through a CallHandoff before the upgrade completes: the holder
 * releases it (`Registry.release`) and the stream's process creates it anew (`Registry.adopt`). A
 * call never moves once its stream has started.
 */
import type { CallSeed } from './registry.js';

export interface CallHandoff {
  /** Ask whoever holds `callSid` waiting for its stream to release it: its seed, or null when no one does. */
  take(callSid: string): Promise<CallSeed | null>;
}
