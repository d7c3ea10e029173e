/**
 * Reading a call journal (docs/journal.md): each line validated, with the line number in every
 * error, into the header, the input events in order, and the outcome.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { ZodError, ZodObject } from 'zod';
import type { CallEvent, CallInput, Outcome } from '../../machines/call/call.types.js';
import type { JournalHeader, JournalRecordSummary } from '../journal/format.js';
import {
  afterPayload,
  describeIssues,
  donePayload,
  errorPayload,
  eventPayloads,
  headerSchema,
  lineBase,
  outcomeLine,
  timerFlag,
  truncatedLine,
} from './schema.js';

export class JournalError extends Error {
  constructor(
    readonly source: string,
    readonly line: number,
    detail: string,
  ) {
    super(`${source}:${line}: ${detail}`);
    this.name = 'JournalError';
  }
}

export interface JournalEntry {
  /** ms since the call started. */
  t: number;
  /**
   * The event as the actor received it (audio rebuilt as zeros of the recorded length, actor
   * errors as `Error`s). Besides CallEvents this carries the machine's own `xstate.after.*`,
   * `xstate.done.actor.*` and `xstate.error.actor.*` events; typed as CallEvent so it can be
   * handed to `transition(callMachine, …)`.
   */
  event: CallEvent;
  /** The actor's own delayed event (an `after` timeout or a delayed raise), fired at `t` live. */
  timer: boolean;
  /** 1-based line number in the file. */
  line: number;
}

export interface JournalOutcome {
  t: number;
  outcome: Outcome;
  record: JournalRecordSummary;
  droppedEvents?: number;
}

export interface Journal {
  source: string;
  header: JournalHeader;
  /** The machine input (same as `header.input`). */
  input: CallInput;
  events: JournalEntry[];
  outcome: JournalOutcome | null;
  /** The writer hit its size bound: events after `truncatedAt` are missing. */
  truncatedAt: number | null;
  /** The last line was cut off mid-write (crash); it was dropped. */
  tornTail: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads and validates a journal file (a path or a file: URL). Throws JournalError with the line number. */
export async function readJournal(path: string | URL): Promise<Journal> {
  const file = typeof path === 'string' ? path : fileURLToPath(path);
  return parseJournal(await readFile(file, 'utf8'), file);
}

export function parseJournal(text: string, source = 'journal'): Journal {
  const lines = text.split('\n');
  // A file ends with a newline; a last piece without one is a write cut short by a crash.
  const tail = lines.pop() ?? '';
  let tornTail = false;
  if (tail.trim() !== '') {
    try {
      JSON.parse(tail);
      lines.push(tail);
    } catch {
      tornTail = true;
    }
  }
  if (lines.length === 0 || lines[0]?.trim() === '') throw new JournalError(source, 1, 'empty journal (no header line)');

  const json = (n: number): unknown => {
    try {
      return JSON.parse(lines[n - 1] ?? '') as unknown;
    } catch (err) {
      throw new JournalError(source, n, `not JSON (${err instanceof Error ? err.message : String(err)})`);
    }
  };
  const check = <T>(n: number, what: string, result: { success: true; data: T } | { success: false; error: ZodError }): T => {
    if (!result.success) throw new JournalError(source, n, `${what}: ${describeIssues(result.error)}`);
    return result.data;
  };

  const header = check(1, 'header', headerSchema.safeParse(json(1))) as JournalHeader;
  const events: JournalEntry[] = [];
  let outcome: JournalOutcome | null = null;
  let truncatedAt: number | null = null;
  let lastT = 0;

  for (let n = 2; n <= lines.length; n++) {
    if ((lines[n - 1] ?? '').trim() === '') continue;
    const raw = json(n);
    const base = check(n, 'line', lineBase.safeParse(raw));
    if (outcome) throw new JournalError(source, n, `"${base.type}" after the outcome line`);
    if (base.t < lastT) throw new JournalError(source, n, `t goes backwards (${base.t} after ${lastT})`);
    lastT = base.t;
    if (base.type === 'outcome') {
      outcome = check(n, 'outcome', outcomeLine.safeParse(raw)) as JournalOutcome;
      continue;
    }
    if (base.type === 'truncated') {
      check(n, 'truncated', truncatedLine.safeParse(raw));
      truncatedAt = base.t;
      continue;
    }
    if (base.type === 'header') throw new JournalError(source, n, 'a second header');
    if (truncatedAt !== null) throw new JournalError(source, n, 'event after the truncated line');
    events.push({ t: base.t, event: decodeEvent(n, base.type, raw as Record<string, unknown>), timer: check(n, base.type, timerFlag.safeParse(raw)).timer === true, line: n });
  }
  return { source, header, input: header.input, events, outcome, truncatedAt, tornTail };

  function decodeEvent(n: number, type: string, raw: Record<string, unknown>): CallEvent {
    const payload = (schema: ZodObject) => {
      const { t: _t, type: _type, timer: _timer, ...rest } = raw;
      return check(n, type, schema.safeParse(rest));
    };
    if (type.startsWith('xstate.after.')) return { type, ...payload(afterPayload) } as unknown as CallEvent;
    if (type.startsWith('xstate.done.actor.')) {
      const { output } = payload(donePayload) as { output?: unknown };
      return { type, output, actorId: type.slice('xstate.done.actor.'.length) } as unknown as CallEvent;
    }
    if (type.startsWith('xstate.error.actor.')) {
      const { error } = payload(errorPayload) as { error: { name?: string; message: string; code?: string } };
      const err = Object.assign(new Error(error.message), error.name ? { name: error.name } : {}, error.code ? { code: error.code } : {});
      return { type, error: err, actorId: type.slice('xstate.error.actor.'.length) } as unknown as CallEvent;
    }
    const schema = (eventPayloads as Partial<Record<string, ZodObject>>)[type];
    if (!schema) throw new JournalError(source, n, `unknown event type "${type}"`);
    const data = payload(schema);
    if (type === 'tts.chunk' && isObject(data)) {
      const { bytes, ...rest } = data as { bytes: number; generation: number };
      return { type, ...rest, audio: new Uint8Array(bytes) };
    }
    return { type, ...data } as CallEvent;
  }
}
