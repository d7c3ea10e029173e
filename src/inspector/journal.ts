/**
 * A call journal opened in the inspector (POST /inspector/api/journal): the journal is replayed on
 * the simulated clock (src/replay) and the replay is fed to a CallTrace as if the call were running,
 * so the page gets the same record it shows for a finished call (snapshots for time travel, the
 * timeline, the transcript from the machine's history, turn latency from the outcome line).
 * Nothing is kept: the trace lives for the request only.
 */
import type { CallEvent, Outcome } from '../../machines/call/call.types.js';
import { replayJournal, type Journal } from '../replay/replay.js';
import type { CallActivity } from '../calls/activity.js';
import { callDetail, type CallDetail } from './feed.js';
import { CallTrace } from './trace.js';

export interface JournalDetail extends CallDetail {
  journal: {
    source: string;
    /** What the replayed machine reached, and what the journal recorded (null: no outcome line). */
    outcome: Outcome | null;
    recordedOutcome: Outcome | null;
    divergences: string[];
    truncated: boolean;
    tornTail: boolean;
  };
}

/** Events from Twilio and the webhooks; everything else came from a child or an invoked actor. */
const edgeEvent = (event: CallEvent) => event.type.startsWith('twilio.') || event.type.startsWith('call.');

/** Replays `journal` into a finished CallTrace and returns its detail. `clinic` is the name shown. */
export function journalDetail(journal: Journal, clinic: string): JournalDetail {
  const { callSid, tenantId } = journal.header;
  const parsed = Date.parse(journal.header.startedAt);
  const startedAtMs = Number.isFinite(parsed) ? parsed : Date.now();
  const record = journal.outcome ? { turns: journal.outcome.record.turns.map((t) => ({ ...t })), bargeIns: journal.outcome.record.bargeIns.map((b) => ({ ...b })) } : null;
  const trace = new CallTrace(callSid, tenantId, clinic, record, startedAtMs);

  // The observers run inside the replayed actor's: an exception there would be rethrown on a timer.
  const failed: { error: Error | null } = { error: null };
  let lastT = 0;
  const apply = (activity: CallActivity) => {
    lastT = Math.max(lastT, activity.t);
    if (failed.error) return;
    try {
      trace.apply(activity, activity.t, startedAtMs + activity.t);
    } catch (err) {
      failed.error = err instanceof Error ? err : new Error('the call trace failed on the replay', { cause: err });
    }
  };
  let lastValue = '';
  const replay = replayJournal(journal, {
    observe: {
      // Live, timer firings are not reported as events (the timeline says "on a timer"): same here.
      event: (t, entry) => {
        if (!entry.timer) apply({ type: 'event', callSid, t, source: edgeEvent(entry.event) ? 'edge' : 'child', event: entry.event });
      },
      snapshot: (t, snapshot) => {
        const value = JSON.stringify(snapshot.value);
        apply({ type: 'snapshot', callSid, t, status: snapshot.status, value: snapshot.value, context: snapshot.context, changed: value !== lastValue });
        lastValue = value;
      },
      command: (t, command) => apply({ type: 'command', callSid, t, command }),
    },
  });
  // A journal without an outcome line (the process died) still ends here: the page time-travels only finished calls.
  const end = Math.max(lastT, journal.outcome?.t ?? 0);
  apply({ type: 'ended', callSid, t: end, outcome: replay.outcome ?? replay.recordedOutcome ?? 'error' });
  if (failed.error) throw failed.error;

  return {
    ...callDetail(trace),
    journal: {
      source: journal.source,
      outcome: replay.outcome,
      recordedOutcome: replay.recordedOutcome,
      divergences: replay.divergences,
      truncated: journal.truncatedAt !== null,
      tornTail: journal.tornTail,
    },
  };
}
