/**
 * `npm run replay -- <journal.jsonl>`: replays a call journal through the call machine and prints
 * the call's timeline: states, what the caller said, what the engine said (agent text per reply,
 * clip ids), commands (audio, marks, clear, transfer, hang-up), timers, per-turn latency.
 *
 *   npm run replay -- <journal>                      timeline
 *   npm run replay -- <journal> --timers simulated   timers fire at their nominal time, not as recorded
 *   npm run replay -- <journal> --json               the replay result as JSON
 *   npm run replay -- <journal> --all                every event line, nothing collapsed
 *   npm run replay -- --diff <a> <b>                 first divergence between two journals' replays
 *
 * Exit codes: 0 ok; 1 the replay diverged (from the journal, or between the two in --diff); 2 usage
 * or unreadable journal.
 */
import { parseArgs } from 'node:util';
import type { CommandSummary } from '../src/journal/format.js';
import {
  firstDivergence,
  JournalError,
  readJournal,
  replayJournal,
  traceKey,
  type Journal,
  type JournalEntry,
  type ReplayResult,
  type TraceItem,
} from '../src/replay/replay.js';

const USAGE = 'usage: npm run replay -- <journal.jsonl> [--timers recorded|simulated] [--json] [--all]\n       npm run replay -- --diff <a.jsonl> <b.jsonl> [--timers …]';

const out = (line = '') => process.stdout.write(`${line}\n`);
const sec = (ms: number) => (ms / 1000).toFixed(3).padStart(8);
const audioMs = (bytes: number) => `${(bytes / 8000).toFixed(1)} s`;
const quote = (s: string) => JSON.stringify(s);

/** `xstate.after.endOfTurn.call.listening.pausing` → `endOfTurn (listening.pausing)`. */
function timerName(type: string): string {
  const m = /^xstate\.after\.([^.]+)\.call\.?(.*)$/.exec(type);
  return m ? `${m[1]}${m[2] ? ` (${m[2]})` : ''}` : type;
}

/** What an actor result event is about, from its invoke id (`0.call.transferring.dialing`). */
function actorName(id: string): string {
  if (id.includes('transferring')) return 'transfer';
  if (id.includes('hangingUp')) return 'hang-up';
  return id;
}

type Row = { t: number; text: string; group?: string; bytes?: number; detail?: (count: number, bytes: number, untilMs: number) => string };

interface Render {
  rows: Row[];
  agentText: Map<number, string>;
  tts: Map<number, { chunks: number; bytes: number }>;
}

function inputRow(r: Render, e: JournalEntry, all: boolean): Row | null {
  const ev = e.event as { type: string } & Record<string, unknown>;
  const type = ev.type;
  const num = (k: string) => Number(ev[k]);
  const str = (k: string) => String(ev[k]);
  if (e.timer) return { t: e.t, text: `⏱ ${timerName(type)}` };
  if (type.startsWith('xstate.done.actor.')) return { t: e.t, text: `← ${actorName(type.slice(18))} accepted by Twilio` };
  if (type.startsWith('xstate.error.actor.')) {
    const err = ev.error instanceof Error ? ev.error.message : 'error';
    return { t: e.t, text: `← ${actorName(type.slice(19))} failed: ${err}` };
  }
  switch (type) {
    case 'twilio.start':
      return { t: e.t, text: '← stream started' };
    case 'twilio.mark':
      return all
        ? { t: e.t, text: `← mark gen ${num('generation')} epoch ${num('epoch')} @ ${num('endMs')} ms` }
        : { t: e.t, text: '', group: 'marks', detail: (n, _b, until) => `← ${n} mark${n > 1 ? 's' : ''} played (gen ${num('generation')}, up to ${(num('endMs') / 1000).toFixed(1)} s of audio${n > 1 ? `; last at ${(until / 1000).toFixed(3)} s` : ''})` };
    case 'twilio.dtmf':
      return { t: e.t, text: `← key ${quote(str('digit'))}` };
    case 'twilio.stop':
      return { t: e.t, text: '← stream stopped (caller hung up or Twilio ran other TwiML)' };
    case 'twilio.closed':
      return { t: e.t, text: '← socket closed without stop' };
    case 'call.status':
      return { t: e.t, text: `← call status ${str('status')}` };
    case 'call.recording':
      return { t: e.t, text: `← recording ${str('status')}` };
    case 'call.hangup':
      return { t: e.t, text: `← engine asks to hang up (${str('reason')})` };
    case 'vad.speechStart':
      return { t: e.t, text: `← caller starts speaking (stream ${Math.round(num('atMs'))} ms)` };
    case 'vad.speechEnd':
      return { t: e.t, text: `← caller stops speaking (${Math.round(num('speechMs'))} ms of speech)` };
    case 'stt.partial':
      return all ? { t: e.t, text: `← partial ${quote(str('text'))}` } : null;
    case 'stt.final':
      return { t: e.t, text: `← CALLER SAID ${quote(str('text'))}` };
    case 'agent.delta': {
      const g = num('generation');
      r.agentText.set(g, (r.agentText.get(g) ?? '') + str('text'));
      return all ? { t: e.t, text: `← agent delta gen ${g} ${quote(str('text'))}` } : null;
    }
    case 'agent.done': {
      const g = num('generation');
      const action = ev.action as { type: string; reason?: string; target?: string } | null;
      const act = action ? ` [${action.type}${action.target ? ` → ${action.target}` : ''}${action.reason ? `: ${action.reason}` : ''}]` : '';
      return { t: e.t, text: `← AGENT SAID (gen ${g}) ${quote(r.agentText.get(g) ?? '')}${act}` };
    }
    case 'tts.chunk': {
      const g = num('generation');
      const s = r.tts.get(g) ?? { chunks: 0, bytes: 0 };
      s.chunks++;
      s.bytes += (ev.audio as Uint8Array).length;
      r.tts.set(g, s);
      return all ? { t: e.t, text: `← tts chunk gen ${g} ${(ev.audio as Uint8Array).length} B` } : null;
    }
    case 'tts.segment':
      return all ? { t: e.t, text: `← tts segment gen ${num('generation')} ${Math.round(num('ms'))} ms ${quote(str('text'))}` } : null;
    case 'tts.done': {
      const g = num('generation');
      const s = r.tts.get(g) ?? { chunks: 0, bytes: 0 };
      return { t: e.t, text: `← synthesis done gen ${g}: ${s.chunks} chunks, ${s.bytes} B (${audioMs(s.bytes)})` };
    }
    default:
      // agent.expect, agent.appointment, *.error, dtmf.*: shown as they are.
      return { t: e.t, text: `← ${type} ${JSON.stringify(Object.fromEntries(Object.entries(ev).filter(([k]) => k !== 'type')))}` };
  }
}

function commandRow(t: number, c: CommandSummary): Row {
  switch (c.type) {
    case 'out.audio':
      return { t, text: '', group: `audio:${c.generation}`, bytes: c.bytes, detail: (n, b) => `→ audio gen ${c.generation}: ${n} chunk${n > 1 ? 's' : ''}, ${b} B (${audioMs(b)})` };
    case 'out.finish':
      return { t, text: `→ end of audio gen ${c.generation}` };
    case 'out.clear':
      return { t, text: `→ CLEAR (gen ${c.generation})` };
    case 'out.resume':
      return { t, text: `→ resume gen ${c.generation} from ${Math.round(c.fromMs)} ms` };
    case 'out.turn': {
      const how = `${c.endOfTurn.kind} words, ${c.endOfTurn.windowMs} ms window${c.prepared ? ', reply prepared during it' : ''}`;
      return { t, text: `→ turn committed (gen ${c.generation}, ${how}): ${quote(c.transcript)}` };
    }
    case 'out.discard':
      return { t, text: `→ prepared reply gen ${c.generation} thrown away (${c.reason})` };
    case 'out.interrupted':
      return { t, text: `→ interrupted after ${Math.round(c.heardMs)} ms heard (${c.confirmed ? 'confirmed' : 'false alarm, resuming'})` };
    case 'out.startRecording':
      return { t, text: '→ start recording' };
    case 'out.emergency':
      return { t, text: `→ EMERGENCY via ${c.source.via}` };
    case 'out.request':
      return { t, text: `→ ${c.request.kind} request stored (${c.request.id})` };
    case 'out.ended':
      return { t, text: `→ call ended: ${c.outcome}` };
  }
}

function traceRow(item: TraceItem): Row {
  if (item.kind === 'state') return { t: item.t, text: `state ${item.state}` };
  if (item.kind === 'command') return commandRow(item.t, item.command);
  return { t: item.t, text: item.clip ? `say clip "${item.clip}" (gen ${item.generation})` : `say (gen ${item.generation}) ${quote(item.text ?? '')}` };
}

/** Consecutive rows of one group become one line. */
function collapse(rows: Row[]): { t: number; text: string }[] {
  const lines: { t: number; text: string }[] = [];
  let run: { row: Row; count: number; bytes: number; until: number } | null = null;
  const flush = () => {
    if (run) lines.push({ t: run.row.t, text: run.row.detail?.(run.count, run.bytes, run.until) ?? run.row.text });
    run = null;
  };
  for (const row of rows) {
    if (row.group && run && run.row.group === row.group) {
      run.count++;
      run.bytes += row.bytes ?? 0;
      run.until = row.t;
      run.row = { ...row, t: run.row.t };
      continue;
    }
    flush();
    if (row.group) run = { row, count: 1, bytes: row.bytes ?? 0, until: row.t };
    else lines.push({ t: row.t, text: row.text });
  }
  flush();
  return lines;
}

function timeline(journal: Journal, replay: ReplayResult, all: boolean): { t: number; text: string }[] {
  const r: Render = { rows: [], agentText: new Map(), tts: new Map() };
  let next = 0;
  const inputsUpTo = (index: number) => {
    for (; next <= index && next < journal.events.length; next++) {
      const row = inputRow(r, journal.events[next]!, all);
      if (row) r.rows.push(row);
    }
  };
  for (const item of replay.trace) {
    if (item.cause >= 0) inputsUpTo(item.cause);
    r.rows.push(traceRow(item));
  }
  inputsUpTo(journal.events.length - 1);
  return all ? r.rows.map((row) => ({ t: row.t, text: row.text || (row.detail?.(1, row.bytes ?? 0, row.t) ?? '') })) : collapse(r.rows);
}

function printCall(path: string, journal: Journal, replay: ReplayResult, all: boolean): void {
  const h = journal.header;
  const timers = journal.events.filter((e) => e.timer).length;
  out(`journal    ${path}`);
  out(`call       ${h.callSid} · clinic ${h.tenantId} · started ${h.startedAt} · engine ${h.engineVersion}`);
  out(`providers  ${Object.entries(h.providers).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  out(`events     ${journal.events.length} (${timers} timer firings) · replay: ${replay.transitions.length} states, ${replay.commands.length} commands`);
  if (journal.truncatedAt !== null) out(`TRUNCATED  at ${sec(journal.truncatedAt).trim()} s: the journal hit its size limit; later events are missing`);
  if (journal.tornTail) out('TORN TAIL  the last line was cut off (crash?) and was ignored');
  out();
  out('       t s');
  for (const line of timeline(journal, replay, all)) out(`${sec(line.t)}  ${line.text}`);
  out();
  const rec = journal.outcome?.record;
  out(`outcome    replay: ${replay.outcome ?? '(did not end)'} · journal: ${journal.outcome?.outcome ?? '(none)'} · final state ${replay.finalState}${rec ? ` · ${(rec.durationMs / 1000).toFixed(1)} s` : ''}`);
  for (const turn of rec?.turns ?? []) {
    const part = (label: string, v: number | null) => `${label} ${v === null ? '–' : `${Math.round(v)} ms`}`;
    out(
      `turn       gen ${turn.generation}: ${part('end of speech → audio', turn.endOfSpeechToAudioMs)} (${part('stt', turn.sttMs)}, ${part('endpoint', turn.endpointMs)}, ${part('agent 1st text', turn.agentFirstTextMs)}, ${part('tts 1st audio', turn.ttsFirstAudioMs)}, ${part('1st audio out', turn.firstAudioMs)})`,
    );
  }
  for (const b of rec?.bargeIns ?? []) out(`barge-in   speech onset → clear ${Math.round(b.clearLatencyMs)} ms`);
  if (replay.timers.fired > 0) out(`timers     ${replay.timers.fired} fired live, on average ${replay.timers.meanLateMs} ms after their nominal time (max ${replay.timers.maxLateMs})`);
  if (replay.ignoredAfterEnd > 0) out(`after end  ${replay.ignoredAfterEnd} event(s) arrived after the machine ended (dropped live as well)`);
  if (replay.error) out(`ERROR      the machine threw: ${replay.error}`);
  out(replay.divergences.length === 0 ? 'replay     consistent with the journal' : `DIVERGED   ${replay.divergences.join('\n           ')}`);
}

function describeItem(item: TraceItem | null): string {
  return item ? `${sec(item.t).trim()} s  ${traceKey(item)}` : '(nothing: the replay ended here)';
}

function causeOf(journal: Journal, item: TraceItem | null): string {
  if (!item || item.cause < 0) return '';
  const e = journal.events[item.cause];
  if (!e) return '';
  const { type, ...rest } = e.event as { type: string } & Record<string, unknown>;
  const payload = type === 'tts.chunk' ? `{"generation":${String(rest.generation)},"bytes":${(rest.audio as Uint8Array).length}}` : JSON.stringify(rest);
  return `   after line ${e.line}: ${type} ${payload}`;
}

async function diff(pathA: string, pathB: string, timers: 'recorded' | 'simulated'): Promise<number> {
  const [a, b] = await Promise.all([readJournal(pathA), readJournal(pathB)]);
  const ra = replayJournal(a, { timers });
  const rb = replayJournal(b, { timers });
  const d = firstDivergence(ra, rb);
  out(`a  ${pathA}  (${ra.trace.length} steps, outcome ${ra.outcome ?? 'none'})`);
  out(`b  ${pathB}  (${rb.trace.length} steps, outcome ${rb.outcome ?? 'none'})`);
  if (!d) {
    out(`identical: ${ra.trace.length} steps (states, commands, speech) in the same order`);
    return 0;
  }
  out(`first divergence at step ${d.index + 1}:`);
  for (let i = Math.max(0, d.index - 5); i < d.index; i++) out(`   = ${describeItem(ra.trace[i] ?? null)}`);
  out(` a: ${describeItem(d.a)}`);
  const ca = causeOf(a, d.a);
  if (ca) out(ca);
  out(` b: ${describeItem(d.b)}`);
  const cb = causeOf(b, d.b);
  if (cb) out(cb);
  return 1;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { diff: { type: 'boolean' }, timers: { type: 'string' }, json: { type: 'boolean' }, all: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  const timers = values.timers ?? 'recorded';
  if (values.help || (timers !== 'recorded' && timers !== 'simulated')) {
    out(USAGE);
    return values.help ? 0 : 2;
  }
  if (values.diff) {
    const [a, b] = positionals;
    if (!a || !b || positionals.length !== 2) {
      out(USAGE);
      return 2;
    }
    return diff(a, b, timers);
  }
  const [path] = positionals;
  if (!path || positionals.length !== 1) {
    out(USAGE);
    return 2;
  }
  const journal = await readJournal(path);
  const replay = replayJournal(journal, { timers });
  if (values.json) out(JSON.stringify(replay, null, 2));
  else printCall(path, journal, replay, values.all === true);
  return replay.divergences.length === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // A bad journal or a missing file is a message, not a stack trace.
    const known = err instanceof JournalError || (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string');
    process.stderr.write(`replay: ${err instanceof Error ? (known ? err.message : (err.stack ?? err.message)) : String(err)}\n`);
    process.exitCode = 2;
  },
);
