/**
 * One line of the inspector's event timeline per event or command. High-rate items (synthesized
 * chunks, outbound audio, mark echoes, agent text deltas, partial transcripts) carry a `key`: a run
 * of items with the same key is folded into one line with a count (see CallTrace).
 */
import type { CallCommand, CallEvent } from '../../machines/call/call.types.js';

export type TimelineKind =
  | 'state'
  | 'twilio'
  | 'vad'
  | 'transcript'
  | 'agent'
  | 'tool'
  | 'tts'
  | 'audio'
  | 'bargein'
  | 'turn'
  | 'fallback'
  | 'emergency'
  | 'error'
  | 'end';

export interface Summary {
  kind: TimelineKind;
  label: string;
  detail: string;
  /** Consecutive items with the same key are folded: `append` joins details, `replace` keeps the last. */
  key?: string;
  merge?: 'append' | 'replace';
  /** Audio duration carried by the item (summed when folded). */
  ms?: number;
}

const ms = (bytes: number) => Math.round(bytes / 8);

export function summarizeEvent(event: CallEvent): Summary | null {
  switch (event.type) {
    case 'twilio.start':
      return { kind: 'twilio', label: 'stream started', detail: event.streamSid };
    case 'twilio.mark':
      return { kind: 'twilio', label: 'mark played', detail: `generation ${event.generation}, heard to ${event.endMs} ms`, key: `mark:${event.generation}:${event.epoch}`, merge: 'replace' };
    case 'twilio.dtmf':
      return { kind: 'twilio', label: 'key pressed', detail: event.digit };
    case 'twilio.stop':
      return { kind: 'twilio', label: 'stream stopped', detail: 'caller hung up' };
    case 'twilio.closed':
      return { kind: 'twilio', label: 'socket closed', detail: 'without a stop message' };
    case 'call.status':
      return { kind: 'twilio', label: 'status callback', detail: event.status };
    case 'call.recording':
      return { kind: 'twilio', label: 'recording callback', detail: event.status };
    case 'call.hangup':
      return { kind: 'end', label: 'hang-up requested', detail: event.reason };
    case 'vad.speechStart':
      return { kind: 'vad', label: 'speech started', detail: `stream ${event.atMs} ms` };
    case 'vad.speechEnd':
      return { kind: 'vad', label: 'speech ended', detail: `${event.speechMs} ms of speech` };
    case 'vad.pause':
      return { kind: 'vad', label: 'pause', detail: `stream ${event.atMs} ms` };
    case 'vad.resume':
      return { kind: 'vad', label: 'speech resumed', detail: `stream ${event.atMs} ms` };
    case 'stt.partial':
      return { kind: 'transcript', label: 'partial transcript', detail: event.text, key: 'partial', merge: 'replace' };
    case 'stt.final':
      return { kind: 'transcript', label: 'transcript', detail: event.text };
    case 'stt.error':
      return { kind: 'error', label: 'recognizer error', detail: event.message };
    case 'provider.fallback':
      return { kind: 'error', label: `${event.kind} fallback`, detail: `${event.from} → ${event.to}: ${event.reason}` };
    case 'agent.delta':
      return { kind: 'agent', label: 'agent text', detail: event.text, key: `agent:${event.generation}`, merge: 'append' };
    case 'agent.expect':
      return { kind: 'tool', label: 'expect answer', detail: event.answer };
    case 'agent.request': {
      const { id: _id, kind, callback, ...rest } = event.request;
      const fields = Object.entries(rest).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${String(v)}`);
      fields.push(`callback: ${callback.kind === 'spoken' ? 'number given by the caller' : callback.kind}`);
      return { kind: 'tool', label: `${kind} request`, detail: fields.join(', ') };
    }
    case 'call.handoff':
      return { kind: 'end', label: 'hand-off requested', detail: event.reason };
    case 'agent.done':
      if (!event.action) return { kind: 'agent', label: 'agent done', detail: `generation ${event.generation}` };
      return {
        kind: event.action.type === 'emergency' ? 'emergency' : 'tool',
        label: `agent action: ${event.action.type}`,
        detail: event.action.type === 'transfer' ? `${event.action.target}: ${event.action.reason}` : event.action.reason,
      };
    case 'agent.error':
      return { kind: 'error', label: 'agent error', detail: event.message };
    case 'tts.chunk':
      return { kind: 'tts', label: 'synthesized audio', detail: `generation ${event.generation}`, key: `tts:${event.generation}`, merge: 'replace', ms: ms(event.audio.length) };
    case 'tts.segment':
      return { kind: 'tts', label: event.text ? 'sentence synthesized' : 'clip ready', detail: event.text, ms: Math.round(event.ms) };
    case 'tts.done':
      return { kind: 'tts', label: 'synthesis done', detail: `generation ${event.generation}` };
    case 'tts.error':
      return { kind: 'error', label: 'synthesizer error', detail: event.message };
    case 'dtmf.timeout':
    case 'dtmf.entered':
      return { kind: 'twilio', label: event.type, detail: event.type === 'dtmf.entered' ? event.digits : '' };
  }
}

export function summarizeCommand(command: CallCommand): Summary | null {
  switch (command.type) {
    case 'out.audio':
      return { kind: 'audio', label: 'audio to caller', detail: `generation ${command.generation}`, key: `out:${command.generation}`, merge: 'replace', ms: ms(command.audio.length) };
    case 'out.finish':
      return null;
    case 'out.clear':
      return { kind: 'bargein', label: 'clear sent', detail: `generation ${command.generation}` };
    case 'out.resume':
      return { kind: 'bargein', label: 'resume playback', detail: `from ${command.fromMs} ms` };
    case 'out.startRecording':
      return { kind: 'tool', label: 'start recording', detail: '' };
    case 'out.emergency': {
      const s = command.source;
      const how = s.via === 'speech' ? `${s.certainty}: ${s.basis}, ${s.transcript}${s.confidence === null ? '' : ` ${s.confidence}`}` : s.certainty;
      const label = `emergency (${s.via}, ${how}${command.check ? `; check: ${command.check}` : ''})`;
      return { kind: 'emergency', label, detail: s.via === 'speech' ? s.keyword : s.via === 'dtmf' ? s.digit : s.reason.slice(0, 200) };
    }
    case 'out.request':
      return { kind: 'tool', label: `${command.request.kind} stored`, detail: command.request.id };
    case 'out.turn':
      return { kind: 'turn', label: `caller turn ${command.generation}`, detail: command.transcript };
    case 'out.discard':
      return { kind: 'turn', label: `prepared reply ${command.generation} thrown away`, detail: command.reason };
    case 'out.interrupted':
      return {
        kind: 'bargein',
        label: command.confirmed ? 'barge-in: reply cut' : 'barge-in: false alarm, resuming',
        detail: `heard ${command.heardMs} ms of generation ${command.generation}`,
      };
    case 'out.ended':
      return { kind: 'end', label: 'call ended', detail: command.outcome };
  }
}

/** States that are a fallback path: shown as such in the timeline. */
const FALLBACK_STATES = new Set([
  'call.listening.reprompting',
  'call.listening.apologizing',
  'call.listening.menu',
  'call.transferring.failed',
]);

export const isFallbackState = (id: string): boolean => FALLBACK_STATES.has(id);
