/**
 * The local receptionist: rules over the tenant config, no model, no network. It answers hours,
 * address and services; takes appointment and refill requests by filling slots over several
 * turns (pet, owner, reason, time, call-back number; any order, one question per turn, then a
 * read-back with the number's digits and a yes/no confirmation); takes messages for the clinic or
 * a named staff member (name, message, call-back number); hands callers to the front desk; says
 * goodbye; and flags clear emergencies (the call machine detects those itself, first). Species and
 * urgency are picked up from the caller's words when said. DTMF turns ("caller pressed 1:
 * appointment") go through the tenant menu. Replies stream as word deltas like an LLM's, checking
 * the AbortSignal before each one and using no timers, so tests are deterministic. An aborted reply
 * emits nothing further: no request, no action.
 *
 * Call-back number: when the clinic stores caller numbers and the call has one, the read-back says
 * the team will call the number the caller is calling from, and "use another number" asks for one;
 * otherwise the caller is asked for a number, read back digit by digit.
 */
import type { Tenant } from '../../config/tenant.schema.js';
import { classifyEmergency } from '../../../machines/call/language.js';
import { clipTexts } from '../tts/prompt-cache.js';
import { spokenOpenAnswer } from '../../config/hours.js';
import {
  SPECIES, SPECIES_RE, OTHER_NUMBER_RE, MESSAGE_RE, spokenNumber, readDigits, REASON_RE, PET_RE, FOR_PET_RE, OWNER_RE, STOP_NAME, norm, cap, clean, list, escape, sentence, findTime, nameFrom,
} from './local-words.js';
import { anonymousCall, type AgentAction, type AgentCallInfo, type AgentOutput, type AgentProvider, type AgentSession, type AgentTurn, type CallerRequest } from './types.js';

type Callback = CallerRequest['callback'];
/** What the receptionist is filling in; `callback` is null until known. */
interface Draft {
  petName: string | null;
  petSpecies: string | null;
  ownerName: string | null;
  reason: string | null;
  preferredTime: string | null;
  message: string | null;
  recipient: string | null;
  callback: Callback | null;
  urgency: CallerRequest['urgency'];
}
type Slot = 'petName' | 'ownerName' | 'reason' | 'preferredTime' | 'message' | 'callback';
type Flow = 'appointment' | 'refill' | 'message';
type Expect = 'short' | 'normal' | 'long';
interface Reply {
  say: string[];
  expect?: Expect;
  request?: CallerRequest;
  action?: AgentAction;
}
/** What a session remembers between turns (slot filling). */
interface Memory {
  mode: Mode;
  req: Draft;
  numberMisses: number;
  askedNumber: boolean;
}

type Mode =
  | { kind: 'idle'; askedAnythingElse: boolean }
  | { kind: 'collecting'; flow: Flow; asking: Slot }
  | { kind: 'confirming'; flow: Flow }
  | { kind: 'fixing'; flow: Flow };

const REFILL = 'prescription refill';
const CAN_DO = 'I can tell you our hours or address, book an appointment, request a refill, take a message, or connect you to the front desk.';
const SLOTS: Record<Flow, readonly Slot[]> = {
  appointment: ['petName', 'ownerName', 'reason', 'preferredTime', 'callback'],
  refill: ['petName', 'ownerName', 'reason', 'preferredTime', 'callback'],
  message: ['ownerName', 'message', 'callback'],
};
const CALLBACK_Q = "What's the best number for the team to call you back on?";
const QUESTION: Record<Flow, Partial<Record<Slot, string>>> = {
  appointment: { petName: "What's your pet's name?", ownerName: 'And your name, please?',
    reason: "What's the visit for?", preferredTime: 'When would you like to come in?', callback: CALLBACK_Q },
  refill: { petName: "What's your pet's name?", ownerName: 'And your name, please?',
    reason: 'Which medication needs a refill?', preferredTime: 'When would you like to pick it up?', callback: CALLBACK_Q },
  message: { ownerName: 'Sure, I can take a message. What is your name, please?', message: "What's the message?", callback: CALLBACK_Q },
};
class LocalAgentSession implements AgentSession {
  private mode: Mode = { kind: 'idle', askedAnythingElse: false };
  private req: Draft = emptyDraft();
  /** Times the call-back number was asked for and not understood (after two, the request goes without one). */
  private numberMisses = 0;
  private readonly staffRe: RegExp | null;
  private readonly staffNames: { words: string[]; name: string }[];

  constructor(private readonly tenant: Tenant, private readonly call: AgentCallInfo) {
    this.staffNames = tenant.info.staff.map((entry) => ({
      name: entry.replace(/\s*\(.*?\)\s*/g, ' ').trim(),
      words: norm(entry.replace(/\(.*?\)/g, '')).split(' ').filter((w) => w.length > 2 && !/^(dr|doctor|dvm|vmd|mrs?|ms|the|and)$/.test(w)),
    }));
    const names = this.staffNames.flatMap((s) => s.words);
    this.staffRe = names.length ? new RegExp(`\\b(${names.map(escape).join('|')})\\b`) : null;
  }

  /**
   * Decides at once on the per-call memory, then puts the memory back as it was: the decision's
   * memory is kept only when the turn is committed (a prepared reply the caller talked over leaves
   * no trace, and the words that replace it are decided on the memory as it was).
   */
  respond(turn: AgentTurn): AsyncIterable<AgentOutput> {
    const before = this.memory();
    const reply = this.decide(turn.transcript);
    const after = this.memory();
    this.restore(before);
    if (turn.committed) void turn.committed.then(() => this.restore(after));
    else this.restore(after);
    return lazily(this.outputs(reply, turn));
  }

  private memory(): Memory {
    return { mode: { ...this.mode }, req: structuredClone(this.req), numberMisses: this.numberMisses, askedNumber: this.askedNumber };
  }

  private restore(m: Memory): void {
    this.mode = { ...m.mode };
    this.req = structuredClone(m.req);
    this.numberMisses = m.numberMisses;
    this.askedNumber = m.askedNumber;
  }

  private *outputs(reply: Reply, turn: AgentTurn): Generator<AgentOutput, void> {
    if (turn.signal.aborted) return;
    if (reply.request) yield { type: 'request', request: reply.request };
    const words = reply.say.join(' ').split(' ').filter(Boolean);
    for (let i = 0; i < words.length; i++) {
      if (turn.signal.aborted) return;
      yield { type: 'delta', text: i < words.length - 1 ? `${words[i]!} ` : words[i]! };
    }
    if (turn.signal.aborted) return;
    if (reply.expect) yield { type: 'expect', answer: reply.expect };
    if (reply.action) yield { type: 'action', action: reply.action };
  }

  private decide(transcript: string): Reply {
    const pressed = /^caller pressed ([0-9*#]+)(?::\s*(.*))?$/i.exec(transcript.trim());
    if (pressed) return this.key(pressed[1]!, pressed[2] ?? '');
    return this.understand(norm(transcript), transcript.trim());
  }

  private key(key: string, said: string): Reply {
    const m = this.tenant.menu[key];
    if (key === this.tenant.emergency.digit && m?.action !== 'agent') return this.emergency(`caller pressed ${key}`);
    if (!m) return said ? this.understand(norm(said), said) : { say: ["Sorry, that key isn't on the menu.", this.menuText()] };
    switch (m.action) {
      case 'agent': return this.understand(norm(m.intent), m.intent);
      case 'transfer':
        return m.target === 'emergency' ? this.emergency(`caller pressed ${key}`) : this.transfer(`caller pressed ${key}`);
      case 'emergency': return this.emergency(`caller pressed ${key}`);
      case 'repeat': return { say: [this.menuText()], expect: 'short' };
      case 'hangup': return this.goodbye(`caller pressed ${key}`);
    }
  }

  /** `t` is the normalised transcript, `raw` what the recognizer wrote (a message is kept in the caller's words). */
  private understand(t: string, raw: string): Reply {
    const mode = this.mode;
    // Only a clear mention: the call machine asks about an uncertain one itself before a turn gets
    // here, and after the caller said no it is theirs to explain (docs/design/conversation.md §4).
    const emergency = classifyEmergency(raw, this.tenant.emergency.keywords, { final: true, confidence: null });
    if (emergency?.certainty === 'clear') return this.emergency(`caller said "${emergency.keyword}"`);
    const collectingMessage = mode.kind === 'collecting' && mode.flow === 'message' && mode.asking === 'message';
    if (!collectingMessage && MESSAGE_RE.test(t) && mode.kind === 'idle') return this.startMessage(t);
    if (!collectingMessage && (/\b(front desk|operator|receptionist|staff|person|human|someone|somebody|representative)\b/.test(t) ||
      (this.staffRe?.test(t) && /\b(talk|speak|connect|transfer)\b/.test(t)))) return this.transfer('caller asked for a person');
    const yes = /^(yes|yeah|yep|yup|sure|correct|right|that's right|that is right|that's correct|absolutely|ok|okay|sounds good)\b/.test(t);
    const no = /^(no|nope|nah|not really|that's wrong|wrong|incorrect)\b/.test(t);
    if (yes && mode.kind === 'confirming') return this.confirmed(mode.flow); // "yes, that's all" confirms, not goodbye
    if (!collectingMessage && (/\b(bye|goodbye|that's all|that is all|that's it|nothing else)\b/.test(t) ||
      (mode.kind === 'idle' && /^(no )?(thanks|thank you)\b/.test(t)))) return this.goodbye('caller said goodbye');
    if (/\b(never ?mind|cancel that|forget it)\b/.test(t) && mode.kind !== 'idle') {
      this.reset();
      return { say: ['Okay, no problem. What else can I help with?'], expect: 'normal' };
    }
    if (collectingMessage) {
      this.req.message = clean(raw.replace(/[.?!]+$/, '')) || raw;
      return this.next(mode.flow, []);
    }
    const info = this.info(t);

    if (mode.kind === 'confirming' || mode.kind === 'fixing') {
      const changed = this.extract(t);
      if (changed) return this.next(mode.flow, []);
      if (no || mode.kind === 'fixing') {
        const slot: Slot | null = /\b(number|phone)\b/.test(t) ? 'callback'
          : /\b(pet|dog|cat|his name|her name)\b/.test(t) ? 'petName' : /\b(my name|owner|your name)\b/.test(t) ? 'ownerName'
            : /\b(message)\b/.test(t) && mode.flow === 'message' ? 'message'
              : /\b(reason|why|medication)\b/.test(t) ? 'reason' : /\b(time|day|when|date)\b/.test(t) ? 'preferredTime' : null;
        if (slot && SLOTS[mode.flow].includes(slot)) {
          this.clear(slot);
          return this.next(mode.flow, ['Okay.']);
        }
        this.mode = { kind: 'fixing', flow: mode.flow };
        return { say: [`Sorry about that. What should I change: ${list(SLOTS[mode.flow].map((s) => SLOT_NAME[s]))}?`], expect: 'normal' };
      }
      if (info) return { ...info, say: [...info.say, 'So, is the request right?'], expect: 'short' };
      return { say: [this.readBack(mode.flow)], expect: 'short' };
    }

    if (mode.kind === 'collecting') {
      if (info) return { ...info, say: [...info.say, QUESTION[mode.flow][mode.asking]!], expect: 'long' };
      if (mode.asking === 'callback') return this.takeNumber(mode.flow, t);
      this.extract(t);
      if (this.missing(mode.asking, mode.flow) && t) this.fill(mode.asking, t, mode.flow);
      return this.next(mode.flow, []);
    }

    const refill = /\b(refills?|prescriptions?|medications?|meds|medicine|pills)\b/.test(t);
    if (refill || /\b(appointments?|book|booking|schedule|reschedule|see (the|a) (vet|doctor)|check ?up|visit|vaccin\w*|shots)\b/.test(t)) {
      const flow: Flow = refill ? 'refill' : 'appointment';
      this.reset();
      if (flow === 'refill') this.req.reason = REFILL;
      this.extract(t);
      const intro = flow === 'refill' ? 'I can pass a refill request to the team.' : 'Sure, I can help with an appointment.';
      return this.next(flow, [intro]);
    }
    if (info) {
      this.mode = { kind: 'idle', askedAnythingElse: true };
      return { ...info, say: [...info.say, 'Anything else I can help with?'] };
    }
    if (mode.askedAnythingElse && no) return this.goodbye('caller has nothing else');
    if (yes) return { say: ['Sure. What can I help with?'], expect: 'normal' };
    this.mode = { kind: 'idle', askedAnythingElse: false };
    const hello = /^(hi|hello|hey|good (morning|afternoon|evening))\b/.test(t);
    return { say: [hello ? 'Hi!' : "Sorry, I didn't catch that.", CAN_DO], expect: 'normal' };
  }

  /** Hours, address, services: answered anywhere, also in the middle of a booking. */
  private info(t: string): Reply | null {
    const { hours, address, services } = this.tenant.info;
    // "Are you open now / today / tomorrow?": from the structured hours, in the clinic's time zone.
    const when = /\b(tomorrow)\b/.test(t) ? 'tomorrow' : /\b(today|tonight)\b/.test(t) ? 'today' : /\b(now|right now|still open|at the moment)\b/.test(t) ? 'now' : null;
    if (this.tenant.hours && when && /\b(open|opening|close|closed|closing)\b/.test(t)) {
      return { say: [spokenOpenAnswer(this.tenant.hours, this.call.startedAt, when)] };
    }
    if (/\b(hours?|open|opening|close|closed|closing)\b/.test(t)) return { say: [sentence(`Our hours are ${hours}`)] };
    if (/\b(address|where are you|where is|located|location|directions|get there)\b/.test(t)) return { say: [sentence(`We're at ${address}`)] };
    if (/\b(services?|offer|do you (do|treat|see|have)|provide)\b/.test(t)) {
      return { say: [services.length ? sentence(`We offer ${list(services)}`) : 'We offer general care for pets. The front desk can tell you more.'] };
    }
    return null;
  }

  private startMessage(t: string): Reply {
    this.reset();
    const staff = this.staffRe ? this.staffNames.find((s) => s.words.some((w) => new RegExp(`\\b${escape(w)}\\b`).test(t))) : undefined;
    this.req.recipient = staff?.name ?? null;
    this.extract(t);
    return this.next('message', []);
  }

  /** Picks up whatever slots the words reveal, in any order. Returns true if any changed. */
  private extract(t: string): boolean {
    const before = JSON.stringify(this.req);
    const time = findTime(t);
    if (time) this.req.preferredTime = time;
    const pet = PET_RE.exec(t)?.[1] ?? FOR_PET_RE.exec(t)?.[1] ?? (this.req.petName ? undefined : /\bfor ([a-z']+)/.exec(t)?.[1]);
    if (pet && !STOP_NAME.has(pet) && !REASON_RE.test(pet) && !findTime(pet) && !SPECIES_RE.test(pet)) this.req.petName = cap(pet);
    const owner = OWNER_RE.exec(t)?.[1];
    if (owner) this.req.ownerName = nameFrom(owner);
    const reason = REASON_RE.exec(t)?.[0];
    if (reason && this.req.reason === null) this.req.reason = reason;
    const species = SPECIES_RE.exec(t)?.[1];
    if (species) this.req.petSpecies = SPECIES[species] ?? species;
    if (/\b(urgent|urgently|right away|immediately)\b/.test(t)) this.req.urgency = 'urgent';
    else if (this.req.urgency === 'routine' && /\b(as soon as possible|asap|today|tonight|soon)\b/.test(t)) this.req.urgency = 'soon';
    const number = spokenNumber(t);
    if (number) this.req.callback = { kind: 'spoken', number };
    else if (OTHER_NUMBER_RE.test(t) && this.req.callback?.kind === 'callerId') {
      this.req.callback = null;
      this.askedNumber = true;
    }
    return JSON.stringify(this.req) !== before;
  }

  /** The answer to "what number should we call?". */
  private takeNumber(flow: Flow, t: string): Reply {
    this.extract(t);
    if (this.req.callback) return this.next(flow, []);
    if (/^(no|nope|i don't|i'd rather not|none)\b/.test(t) || ++this.numberMisses >= 2) {
      this.req.callback = { kind: 'none' };
      return this.next(flow, ["Okay, I'll send it without a number."]);
    }
    return { say: ['Sorry, I need the number digit by digit, for example five five five, zero one zero zero.'], expect: 'long' };
  }

  /** The answer to the question we asked, when no pattern picked it up. */
  private fill(slot: Slot, t: string, flow: Flow): void {
    if (slot === 'petName' || slot === 'ownerName') this.req[slot] = nameFrom(t);
    else if (slot === 'reason') this.req.reason = flow === 'refill' ? `${REFILL}: ${clean(t)}` : clean(t) || null;
    else if (slot === 'preferredTime') this.req.preferredTime = clean(t) || null;
  }

  private next(flow: Flow, say: string[]): Reply {
    // A number the call came from is offered without a question; "use another number" asks.
    if (this.req.callback === null && this.call.callerIdUsable && this.numberMisses === 0 && !this.askedNumber) this.req.callback = { kind: 'callerId' };
    const missing = SLOTS[flow].find((s) => this.missing(s, flow));
    if (missing) {
      if (missing === 'callback') this.askedNumber = true;
      this.mode = { kind: 'collecting', flow, asking: missing };
      return { say: [...say, QUESTION[flow][missing]!], expect: 'long' };
    }
    this.mode = { kind: 'confirming', flow };
    return { say: [...say, this.readBack(flow)], expect: 'short' };
  }

  /** Set once the caller was asked for a number, so "use another number" never falls back to caller ID. */
  private askedNumber = false;

  private missing(slot: Slot, flow: Flow): boolean {
    if (slot === 'callback') return this.req.callback === null;
    return this.req[slot] === null || (flow === 'refill' && slot === 'reason' && this.req.reason === REFILL);
  }

  private clear(slot: Slot): void {
    if (slot === 'callback') {
      this.req.callback = null;
      this.askedNumber = true;
    } else this.req[slot] = null;
  }

  private readBack(flow: Flow): string {
    const r = this.req;
    const callback = r.callback?.kind === 'spoken' ? `We'll call you back at ${readDigits(r.callback.number)}.`
      : r.callback?.kind === 'callerId' ? "We'll call you back on the number you're calling from." : 'We have no number to call you back on.';
    if (flow === 'message') {
      return `Let me read that back. A message for ${r.recipient ?? 'the team'}, from ${r.ownerName ?? 'you'}: ${sentence(r.message ?? '')} ${callback} Is that right?`;
    }
    const what = flow === 'refill' ? 'A refill request' : 'An appointment';
    const pet = r.petName ? `${r.petName}${r.petSpecies ? `, your ${r.petSpecies}` : ''}` : 'your pet';
    const reason = flow === 'refill' ? `Medication: ${r.reason?.replace(`${REFILL}: `, '') ?? 'not given'}` : `Reason: ${r.reason ?? 'not given'}`;
    return `Let me read that back. ${what} for ${pet}, from ${r.ownerName ?? 'you'}. ` +
      `${sentence(reason)} ${sentence(`Time: ${r.preferredTime ?? 'any time'}`)} ${callback} Is that right?`;
  }

  private confirmed(flow: Flow): Reply {
    const r = this.req;
    const request: CallerRequest = {
      kind: flow, petName: r.petName, petSpecies: r.petSpecies, ownerName: r.ownerName, reason: r.reason, preferredTime: r.preferredTime,
      message: r.message, recipient: r.recipient, callback: r.callback ?? { kind: 'none' }, urgency: r.urgency,
    };
    this.reset();
    this.mode = { kind: 'idle', askedAnythingElse: true };
    const what = flow === 'refill' ? 'refill request' : flow === 'message' ? 'message' : 'request';
    const then = request.callback.kind === 'none' ? 'The team will follow up.' : flow === 'message' ? "They'll call you back." : "They'll call you to confirm.";
    return { request, say: [`Great. I've sent your ${what} to the team.`, then, 'Anything else I can help with?'], expect: 'normal' };
  }

  private transfer(reason: string): Reply {
    this.reset();
    if (!this.call.openNow) {
      // After hours nobody would pick up: take a message instead of ringing an empty front desk.
      return this.next('message', ["We're closed right now, so nobody can take your call, but I can take a message for the team."]);
    }
    return { say: ['Let me connect you to the front desk.'], action: { type: 'transfer', target: 'frontDesk', reason } };
  }

  private goodbye(reason: string): Reply {
    this.reset();
    return { say: [`Thanks for calling ${this.tenant.name}. Goodbye!`], action: { type: 'end', reason } };
  }

  private emergency(reason: string): Reply {
    this.reset();
    return { say: ['This sounds like an emergency.'], action: { type: 'emergency', reason } };
  }

  private menuText(): string {
    return clipTexts(this.tenant).menu;
  }

  private reset(): void {
    this.mode = { kind: 'idle', askedAnythingElse: false };
    this.req = emptyDraft();
    this.numberMisses = 0;
    this.askedNumber = false;
  }
}

const SLOT_NAME: Record<Slot, string> = {
  petName: "the pet's name", ownerName: 'your name', reason: 'the reason', preferredTime: 'the time', message: 'the message', callback: 'the phone number',
};

function emptyDraft(): Draft {
  return { petName: null, petSpecies: null, ownerName: null, reason: null, preferredTime: null, message: null, recipient: null, callback: null, urgency: 'routine' };
}

/** Pulls a sync generator one item per promise, so the consumer can abort between deltas. */
function lazily<T>(items: Generator<T, void>): AsyncIterable<T, void> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.resolve(items.next()),
      return: () => Promise.resolve(items.return()),
    }),
  };
}

export const localAgent: AgentProvider = {
  name: 'local',
  startSession: (tenant, call = anonymousCall()) => new LocalAgentSession(tenant, call),
};
