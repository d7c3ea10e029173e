/**
 * CallTrace bookkeeping from synthetic activity: active state ids, the causing event of each
 * transition (mailbox order), folding of high-rate events, replies cut to what was heard, the end
 * of a call whose final snapshot never arrives, and phone-number masking.
 */
import { describe, expect, it } from 'vitest';
import type { StateValue } from 'xstate';
import { initialContext } from '../../machines/call/call.setup.js';
import type { CallContext, CallEvent } from '../../machines/call/call.types.js';
import type { CallActivity } from '../../src/calls/activity.js';
import { maskDeep, maskPhones } from '../../src/inspector/mask.js';
import { activeIds, CallTrace, leafIds } from '../../src/inspector/trace.js';

const SID = `CA${'1'.repeat(32)}`;
const base: CallContext = initialContext({
  callSid: SID,
  tenant: {
    id: 'oak', openNow: true, consent: { required: false, onRefusal: 'continue' }, recordingEnabled: false,
    emergency: { keywords: ['bleeding'], digit: '9', hasLine: true }, menu: {}, backchannels: [],
    timing: { silencePromptMs: 1, silencePromptsBeforeGoodbye: 1, endOfTurnMs: 1, endOfTurnShortMs: 1, endOfTurnLongMs: 1, endOfTurnCompleteMs: 1, preemptLeadMs: 0, maxPreemptsPerTurn: 1, fillerAfterMs: 1, bargeInMinSpeechMs: 1, interDigitMs: 1 },
    limits: { maxCallMs: 900_000 },
  },
});

let t = 0;
const snap = (value: StateValue, context: CallContext, changed = true): CallActivity => ({
  type: 'snapshot', callSid: SID, t: (t += 10), status: 'active', value, context, changed,
});
const ev = (event: CallEvent): CallActivity => ({ type: 'event', callSid: SID, t: (t += 1), source: 'edge', event });

describe('activeIds', () => {
  it('lists the active node ids root first, and the leaves', () => {
    expect(activeIds('greeting')).toEqual(['call', 'call.greeting']);
    expect(activeIds({ reply: { interrupted: 'judging' } })).toEqual(['call', 'call.reply', 'call.reply.interrupted', 'call.reply.interrupted.judging']);
    expect(leafIds(activeIds({ reply: 'speaking' }))).toEqual(['call.reply.speaking']);
  });
});

describe('CallTrace', () => {
  it('attributes each transition to the event the actor consumed for it, in mailbox order', () => {
    const trace = new CallTrace(SID, 'oak', 'Oak Hill', null, Date.now());
    expect(trace.apply(snap('connecting', base), 0)).toBe('state');
    // twilio.start is sent; while the actor enters greeting, the synthesizer already answers.
    trace.apply(ev({ type: 'twilio.start', streamSid: 'MZ1' }), 0);
    trace.apply(ev({ type: 'tts.segment', generation: 1, text: '', ms: 900 }), 0);
    expect(trace.apply(snap('greeting', base), 0)).toBe('state');
    expect(trace.apply(snap('greeting', base, false), 0)).toBe('quiet'); // tts.segment: no change
    expect(trace.apply(snap({ listening: 'waiting' }, base), 0)).toBe('state'); // from a timer
    const states = trace.timeline.filter((i) => i.kind === 'state').map((i) => [i.label, i.detail]);
    expect(states).toEqual([
      ['(start) → connecting', 'initial state'],
      ['connecting → greeting', 'on twilio.start'],
      ['greeting → listening.waiting', 'on a timer'],
    ]);
    expect(trace.summary(Date.now())).toMatchObject({ state: 'listening.waiting', live: true, clinic: 'Oak Hill' });
  });

  it('folds synthesized chunks, marks and agent text into one line each', () => {
    const trace = new CallTrace(SID, 'oak', 'Oak Hill', null, Date.now());
    trace.apply(snap({ reply: 'speaking' }, base), 0);
    for (let i = 0; i < 5; i++) {
      trace.apply(ev({ type: 'agent.delta', generation: 2, text: `w${i} ` }), 0);
      trace.apply(ev({ type: 'tts.chunk', generation: 2, audio: new Uint8Array(800) }), 0);
      trace.apply({ type: 'command', callSid: SID, t: (t += 1), command: { type: 'out.audio', generation: 2, audio: new Uint8Array(800) } }, 0);
    }
    const lines = trace.timeline.filter((i) => i.kind !== 'state');
    expect(lines.map((i) => [i.label, i.count, i.ms])).toEqual([
      ['agent text', 5, 0],
      ['synthesized audio', 5, 500],
      ['audio to caller', 5, 500],
    ]);
    expect(lines[0]?.detail).toBe('w0 w1 w2 w3 w4 ');
  });

  it('keeps the full reply beside the heard part when a reply is cut', () => {
    const trace = new CallTrace(SID, 'oak', 'Oak Hill', null, Date.now());
    const asked = { ...base, history: [{ role: 'caller' as const, text: 'what are your hours' }] };
    const full = 'We open at eight. We close at six on weekdays.';
    trace.apply(snap({ reply: 'speaking' }, { ...asked, generation: 2, reply: { generation: 2, transcript: 'what are your hours', prepared: false, committed: true, items: 2, failed: false, expect: null, text: full, pending: '', agentDone: true, action: null } }), 0);
    trace.apply(snap({ listening: 'waiting' }, { ...asked, reply: null, history: [...asked.history, { role: 'agent', text: 'We open at eight. We close…' }] }), 0);
    expect(trace.repliesView()).toEqual([{ index: 1, generation: 2, heard: 'We open at eight. We close…', full }]);
  });

  it('ends in `ended` even when the final snapshot never comes, and only once', () => {
    const trace = new CallTrace(SID, 'oak', 'Oak Hill', null, Date.now() - 5_000);
    trace.apply(snap({ listening: 'waiting' }, base), 0);
    expect(trace.apply({ type: 'ended', callSid: SID, t: (t += 5), outcome: 'callerHungUp' }, 0)).toBe('state');
    expect(trace.active).toEqual(['call', 'call.ended']);
    trace.apply(snap('ended', base), 0); // published late: no second line
    expect(trace.timeline.filter((i) => i.label.endsWith('→ ended'))).toHaveLength(1);
    expect(trace.summary(Date.now())).toMatchObject({ live: false, outcome: 'callerHungUp', state: 'ended' });
    expect(trace.allViews().at(-1)?.active).toEqual(['call', 'call.ended']);
  });

  it('masks phone numbers in what it shows', () => {
    const trace = new CallTrace(SID, 'oak', 'Oak Hill', null, Date.now());
    trace.apply(snap('greeting', { ...base, turn: { ...base.turn, text: 'call me on 555 010 0250' } }), 0);
    trace.apply(ev({ type: 'stt.final', text: 'my number is +1 (555) 010-0250', atMs: 1 }), 0);
    expect(JSON.stringify(trace.view()?.context)).toContain('call me on ••• ••• ••50');
    expect(trace.timelineView().at(-1)?.detail).toBe('my number is +• (•••) •••-••50');
    expect(JSON.stringify(trace.view())).toContain(SID); // ids are not phone numbers
  });
});

describe('maskPhones', () => {
  it('masks runs of 7+ digits, keeps short numbers, times and ids', () => {
    expect(maskPhones('+15550100200')).toBe('+•••••••••00');
    expect(maskPhones('call 555-0100 now')).toBe('call •••-••00 now');
    expect(maskPhones('open 7:30 am to 7 pm, 3300 Valley Blvd, TX 78735')).toBe('open 7:30 am to 7 pm, 3300 Valley Blvd, TX 78735');
    expect(maskPhones(`sid CA0123456789abcdef0123456789abcdef`)).toBe('sid CA0123456789abcdef0123456789abcdef');
    expect(maskDeep({ a: ['+15550100200'], n: 15550100200, b: new Uint8Array(4) })).toEqual({ a: ['+•••••••••00'], n: 15550100200, b: { bytes: 4 } });
  });
});
