import { describe, expect, it } from 'vitest';
import { TenantSchema } from '../../src/config/tenant.schema.js';
import type { Tenant } from '../../src/config/tenant.schema.js';
import { localAgent } from '../../src/providers/agent/local.js';
import type { AgentOutput, AgentSession, ChatTurn } from '../../src/providers/agent/types.js';

const tenant: Tenant = TenantSchema.parse({
  id: 'riverside',
  name: 'Riverside Vet Clinic',
  phoneNumbers: ['+15550100001'],
  greeting: 'Thanks for calling Riverside Vet Clinic. How can I help?',
  transfer: { frontDesk: '+15550100002', emergency: '+15550100003' },
  emergency: { script: 'If your pet is in danger, we will connect you to our emergency team now.' },
  info: {
    hours: 'Monday to Friday, 8 am to 6 pm, and Saturday 9 am to 1 pm',
    address: '12 River Road, Springfield',
    services: ['vaccinations', 'dental care', 'surgery'],
    staff: ['Dr. Priya Patel (veterinarian)', 'Emily Stone'],
  },
});

interface Said {
  text: string;
  outputs: AgentOutput[];
  deltas: number;
  expect: string | undefined;
  action: AgentOutput | undefined;
  request: AgentOutput | undefined;
}

function conversation(callerIdUsable = false) {
  const session: AgentSession = localAgent.startSession(tenant, { callerIdUsable, startedAt: Date.parse('2026-12-07T15:00:00Z'), openNow: true });
  const history: ChatTurn[] = [];
  return async (transcript: string, signal = new AbortController().signal): Promise<Said> => {
    const outputs: AgentOutput[] = [];
    for await (const o of session.respond({ transcript, history, signal })) outputs.push(o);
    const text = outputs.map((o) => (o.type === 'delta' ? o.text : '')).join('');
    history.push({ role: 'caller', text: transcript }, { role: 'agent', text });
    const find = (type: AgentOutput['type']) => outputs.find((o) => o.type === type);
    const e = find('expect');
    return { text, outputs, deltas: outputs.filter((o) => o.type === 'delta').length, expect: e?.type === 'expect' ? e.answer : undefined,
      action: find('action'), request: find('request') };
  };
}

describe('local agent', () => {
  it('states the tenant hours, address and services, streamed as several word deltas', async () => {
    const say = conversation();
    const hours = await say('What are your hours?');
    expect(hours.text).toContain('Monday to Friday, 8 am to 6 pm, and Saturday 9 am to 1 pm');
    expect(hours.deltas).toBeGreaterThan(5);
    expect(hours.outputs.every((o) => o.type !== 'delta' || !/\s\S/.test(o.text.trim()))).toBe(true); // one word each
    expect((await say('where are you located')).text).toContain('12 River Road, Springfield');
    expect((await say('what services do you offer')).text).toContain('vaccinations, dental care and surgery');
    const bye = await say('no');
    expect(bye.action).toMatchObject({ type: 'action', action: { type: 'end' } });
  });

  it('takes an appointment over several turns, one question at a time, and stores a complete record', async () => {
    const say = conversation();
    const start = await say('I want to book an appointment');
    expect(start.text).toMatch(/pet's name/);
    expect(start.expect).toBe('long');
    expect((await say('Bella')).text).toMatch(/your name/);
    expect((await say('my name is Sam Jones')).text).toMatch(/visit for/);
    expect((await say('she needs her vaccinations')).text).toMatch(/When would you like/);
    const number = await say('tomorrow morning');
    expect(number.text).toMatch(/number for the team to call you back/);
    expect(number.expect).toBe('long');
    const readBack = await say('five five five, oh one oh oh, two oh oh');
    expect(readBack.text).toContain('Bella');
    expect(readBack.text).toContain('Sam Jones');
    expect(readBack.text).toContain('tomorrow morning');
    expect(readBack.text).toContain("We'll call you back at 5 5 5, 0 1 0, 0 2 0 0.");
    expect(readBack.text).toMatch(/Is that right\?$/);
    expect(readBack.expect).toBe('short');
    expect(readBack.request).toBeUndefined();
    const done = await say("yes, that's it"); // a confirmation, not a goodbye
    expect(done.outputs[0]).toEqual({
      type: 'request',
      request: { kind: 'appointment', petName: 'Bella', petSpecies: null, ownerName: 'Sam Jones', reason: 'vaccinations', preferredTime: 'tomorrow morning',
        message: null, recipient: null, callback: { kind: 'spoken', number: '5550100200' }, urgency: 'routine' },
    });
    expect(done.text).toMatch(/sent your request/);
    expect(done.action).toBeUndefined();
  });

  it('a prepared turn changes the slot filling only once it is committed; a thrown-away one leaves no trace', async () => {
    const session = localAgent.startSession(tenant, { callerIdUsable: false, startedAt: Date.parse('2026-12-07T15:00:00Z'), openNow: true });
    const text = async (transcript: string, committed?: Promise<void>, signal = new AbortController().signal) => {
      let out = '';
      for await (const o of session.respond({ transcript, history: [], signal, ...(committed ? { committed } : {}) })) if (o.type === 'delta') out += o.text;
      return out;
    };
    expect(await text('I want to book an appointment')).toMatch(/pet's name/);
    // Prepared on "Bella", then the caller went on ("Bella Smith"): the first answer is thrown away.
    const thrown = new AbortController();
    expect(await text('Bella', new Promise(() => undefined), thrown.signal)).toMatch(/your name/);
    thrown.abort();
    // Decided on the memory as it was: still asking for the pet's name, so this is the pet.
    let commit = () => {};
    const committed = new Promise<void>((resolve) => (commit = resolve));
    expect(await text('Bella Smith', committed)).toMatch(/your name/);
    // Not committed yet: the memory has not moved (the same words get the same answer).
    expect(await text('Bella Smith', new Promise(() => undefined))).toMatch(/your name/);
    commit();
    await committed;
    expect(await text('my name is Sam Jones')).toMatch(/visit for/);
  });

  it('accepts details in any order and corrections after the read-back', async () => {
    const say = conversation();
    expect((await say('i want to book an appointment for bella tomorrow morning')).text).toMatch(/your name/);
    expect((await say('this is sam')).text).toMatch(/visit for/);
    expect((await say('a checkup')).text).toMatch(/call you back on/);
    const read = await say('555 0100 200');
    expect(read.text).toMatch(/Let me read that back/);
    expect((await say('no')).text).toMatch(/What should I change/);
    expect((await say('the time')).text).toMatch(/When would you like/);
    expect((await say('monday afternoon at ten')).text).toContain('Time: monday afternoon at ten.');
    expect((await say('no, the number')).text).toMatch(/call you back on/);
    expect((await say('call me at 555 777 1234')).text).toContain('5 5 5, 7 7 7, 1 2 3 4');
    const done = await say('yes please');
    expect(done.request).toMatchObject({
      type: 'request',
      request: { petName: 'Bella', ownerName: 'Sam', reason: 'checkup', preferredTime: 'monday afternoon at ten', callback: { kind: 'spoken', number: '5557771234' } },
    });
  });

  it('answers a question in the middle of a booking and asks the same slot again', async () => {
    const say = conversation();
    await say('book an appointment');
    const mid = await say('when are you open');
    expect(mid.text).toContain('8 am to 6 pm');
    expect(mid.text).toMatch(/pet's name\?$/);
  });

  it('takes a refill request with the medication as the reason', async () => {
    const say = conversation();
    expect((await say('I need a prescription refill')).text).toMatch(/pet's name/);
    await say('his name is Max');
    expect((await say('John')).text).toMatch(/Which medication/);
    expect((await say('carprofen')).text).toMatch(/pick it up/);
    await say('friday');
    expect((await say("I don't have one")).text).toMatch(/without a number/);
    const done = await say('yes');
    expect(done.request).toMatchObject({
      request: { kind: 'refill', petName: 'Max', ownerName: 'John', reason: 'prescription refill: carprofen', preferredTime: 'friday', callback: { kind: 'none' } },
    });
    expect(done.text).toMatch(/team will follow up/);
  });

  it('offers the number the call came from when the clinic stores caller numbers, and takes another on request', async () => {
    const say = conversation(true);
    await say('i need to book a checkup for my dog bella as soon as possible');
    await say('my name is sam');
    const read = await say('tomorrow');
    expect(read.text).toContain("We'll call you back on the number you're calling from.");
    expect(read.text).toContain('Bella, your dog');
    expect((await say('no, use a different number')).text).toMatch(/call you back on\?$/);
    expect((await say('five five five one two three four five six seven')).text).toContain('5 5 5, 1 2 3, 4 5 6 7');
    const done = await say('yes');
    expect(done.request).toMatchObject({ request: { petSpecies: 'dog', urgency: 'soon', callback: { kind: 'spoken', number: '5551234567' } } });
    const kept = conversation(true);
    await kept('book an appointment for max');
    await kept('this is ann');
    await kept('vaccinations');
    await kept('friday');
    expect((await kept('yes')).request).toMatchObject({ request: { callback: { kind: 'callerId' } } });
  });

  it('takes a message for a named staff member, in the caller\'s words', async () => {
    const say = conversation();
    expect((await say('can I leave a message for doctor patel')).text).toMatch(/your name/);
    expect((await say('my name is Sam Jones')).text).toMatch(/the message\?$/);
    expect((await say('Please call me about Bella\'s test results.')).text).toMatch(/call you back on/);
    const read = await say('555 010 0200');
    expect(read.text).toContain('A message for Dr. Priya Patel, from Sam Jones: Please call me about Bella\'s test results.');
    const done = await say('yes');
    expect(done.request).toMatchObject({
      request: { kind: 'message', recipient: 'Dr. Priya Patel', ownerName: 'Sam Jones', message: "Please call me about Bella's test results",
        callback: { kind: 'spoken', number: '5550100200' } },
    });
    expect(done.text).toMatch(/sent your message/);
  });

  it('hands callers who ask for a person to the front desk', async () => {
    const say = conversation();
    const r = await say('can I talk to a real person');
    expect(r.text).toMatch(/^Let me connect you/);
    expect(r.action).toEqual({ type: 'action', action: { type: 'transfer', target: 'frontDesk', reason: 'caller asked for a person' } });
    expect(r.outputs[r.outputs.length - 1]).toBe(r.action);
    expect((await conversation()('i want to speak to doctor patel')).action).toMatchObject({ action: { type: 'transfer' } });
  });

  it('says goodbye and ends the call', async () => {
    const r = await conversation()("thanks, that's all. bye");
    expect(r.text).toContain('Riverside Vet Clinic');
    expect(r.action).toMatchObject({ type: 'action', action: { type: 'end' } });
  });

  it('maps DTMF turns through the tenant menu', async () => {
    const say = conversation();
    expect((await say('caller pressed 1: appointment')).text).toMatch(/appointment.*pet's name/);
    expect((await conversation()('caller pressed 0: front desk')).action).toMatchObject({ action: { type: 'transfer', target: 'frontDesk' } });
    expect((await conversation()('caller pressed *')).text).toMatch(/Press 1 for appointments\. Press 0 for the front desk\./);
    expect((await conversation()('caller pressed 9')).action).toMatchObject({ action: { type: 'emergency' } });
  });

  it('flags clear emergencies, not negated ones nor a lone keyword (the call machine asked about that one)', async () => {
    expect((await conversation()('my dog is bleeding, it is an emergency')).action).toMatchObject({ action: { type: 'emergency' } });
    expect((await conversation()("he can't breathe")).action).toMatchObject({ action: { type: 'emergency' } });
    const calm = await conversation()("it's not an emergency");
    expect(calm.action).toBeUndefined();
    // "my rabbit has a sore ear" as the embedded recognizer hears it, after the caller said no to the check.
    const misheard = await conversation()('my rabbit had a seizure');
    expect(misheard.action).toBeUndefined();
    expect(misheard.text).toMatch(/didn't catch that/);
  });

  it('answers something it does not understand with what it can do', async () => {
    const r = await conversation()('purple monkey dishwasher');
    expect(r.text).toMatch(/didn't catch that/);
    expect(r.text).toMatch(/hours.*address.*appointment.*refill.*front desk/);
  });

  it('stops at once when the turn is aborted, with no action', async () => {
    const session = localAgent.startSession(tenant);
    const ac = new AbortController();
    const got: AgentOutput[] = [];
    for await (const o of session.respond({ transcript: 'goodbye', history: [], signal: ac.signal })) {
      got.push(o);
      if (got.length === 2) ac.abort();
    }
    expect(got).toHaveLength(2);
    expect(got.every((o) => o.type === 'delta')).toBe(true);
    const pre = new AbortController();
    pre.abort();
    const none: AgentOutput[] = [];
    for await (const o of session.respond({ transcript: 'what are your hours', history: [], signal: pre.signal })) none.push(o);
    expect(none).toEqual([]);
  });
});

describe('local agent and clinic hours', () => {
  const weekday = [{ open: '08:00', close: '18:00' }];
  const withHours = TenantSchema.parse({
    ...tenant,
    hours: {
      timeZone: 'America/Los_Angeles',
      weekly: { mon: weekday, tue: weekday, wed: weekday, thu: weekday, fri: weekday, sat: [{ open: '09:00', close: '13:00' }] },
      closures: [{ date: '2026-12-25', reason: 'Christmas Day' }],
    },
  });
  const ask = async (at: string, transcript: string, openNow = true) => {
    const session = localAgent.startSession(withHours, { callerIdUsable: false, startedAt: Date.parse(at), openNow });
    let text = '';
    for await (const o of session.respond({ transcript, history: [], signal: new AbortController().signal })) if (o.type === 'delta') text += o.text;
    return text.replace(/ Anything else I can help with\?$/, '');
  };

  it('answers "are you open now / tomorrow" from the structured hours in the clinic time zone', async () => {
    // Friday 17:30 in Los Angeles.
    expect(await ask('2026-12-05T01:30:00Z', 'are you open now')).toBe("Yes, we're open now until 6 PM.");
    expect(await ask('2026-12-05T01:30:00Z', 'are you open tomorrow')).toBe("Tomorrow we're open from 9 AM to 1 PM.");
    // Across midnight: a minute before, tomorrow is Saturday; a minute after, tomorrow is Sunday (closed).
    expect(await ask('2026-12-05T07:59:00Z', 'are you open tomorrow')).toBe("Tomorrow we're open from 9 AM to 1 PM.");
    expect(await ask('2026-12-05T08:01:00Z', 'are you open tomorrow')).toBe("We're closed tomorrow. We open again on Monday at 8 AM.");
    // The night the clocks go back (1:30 happens twice): still Sunday, closed, open Monday at 8.
    expect(await ask('2026-11-01T08:30:00Z', 'are you open right now')).toBe("We're closed right now. We open again tomorrow at 8 AM.");
    expect(await ask('2026-12-25T17:00:00Z', 'are you open today')).toMatch(/closed today for Christmas Day/);
    // Without a day in the question: the clinic's own words.
    expect(await ask('2026-12-05T01:30:00Z', 'what are your hours')).toContain('Monday to Friday, 8 am to 6 pm');
  });

  it('after hours, asking for a person takes a message instead of ringing an empty front desk', async () => {
    const session = localAgent.startSession(withHours, { callerIdUsable: false, startedAt: Date.parse('2026-12-06T20:00:00Z'), openNow: false });
    const outputs: AgentOutput[] = [];
    for await (const o of session.respond({ transcript: 'can I talk to a real person', history: [], signal: new AbortController().signal })) outputs.push(o);
    const text = outputs.map((o) => (o.type === 'delta' ? o.text : '')).join('');
    expect(text).toMatch(/closed right now.*take a message.*What is your name/);
    expect(outputs.some((o) => o.type === 'action')).toBe(false);
  });
});
