/**
 * The local receptionist: rules over the tenant config, no model, no network. It answers hours,
 * address and services; takes appointment and refill requests by filling four slots over several
 * turns (pet, owner, reason, time; any order, one question per turn, then a read-back and a yes/no
 * confirmation); hands callers to the front desk; says goodbye; and flags clear emergencies
 * (the call machine detects those itself, first). DTMF turns ("caller pressed 1: appointment") go
 * through the tenant menu. Replies stream as word deltas like an LLM's, checking the AbortSignal
 * before each one and using no timers, so tests are deterministic. An aborted reply emits nothing
 * further: no appointment, no action.
 */
import type { Tenant } from '../../config/tenant.schema.js';
import { clipTexts } from '../tts/prompt-cache.js';
import type { AgentAction, AgentOutput, AgentProvider, AgentSession, AgentTurn, AppointmentRequest } from './types.js';

type Slot = keyof AppointmentRequest;
type Flow = 'appointment' | 'refill';
type Expect = 'short' | 'normal' | 'long';
interface Reply {
  say: string[];
  expect?: Expect;
  appointment?: AppointmentRequest;
  action?: AgentAction;
}
type Mode =
  | { kind: 'idle'; askedAnythingElse: boolean }
  | { kind: 'collecting'; flow: Flow; asking: Slot }
  | { kind: 'confirming'; flow: Flow }
  | { kind: 'fixing'; flow: Flow };

const REFILL = 'prescription refill';
const CAN_DO = 'I can tell you our hours or address, book an appointment, request a refill, or connect you to the front desk.';
const SLOTS: readonly Slot[] = ['petName', 'ownerName', 'reason', 'preferredTime'];
const QUESTION: Record<Flow, Record<Slot, string>> = {
  appointment: { petName: "What's your pet's name?", ownerName: 'And your name, please?',
    reason: "What's the visit for?", preferredTime: 'When would you like to come in?' },
  refill: { petName: "What's your pet's name?", ownerName: 'And your name, please?',
    reason: 'Which medication needs a refill?', preferredTime: 'When would you like to pick it up?' },
};

const HOUR = '(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\\d{1,2}(?::\\d{2})?)';
const AMPM = "(?:o'clock|a\\.?m\\.?|p\\.?m\\.?)";
const TIME_RE = new RegExp(
  `\\b(?:today|tonight|tomorrow|(?:next |this )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|week|weekend)|` +
  `as soon as possible|asap|(?:in the )?(?:morning|afternoon|evening)|(?:at )?noon|at ${HOUR}(?: (?:fifteen|thirty|forty five))?(?: ${AMPM})?|` +
  `${HOUR}(?: (?:fifteen|thirty|forty five))? ${AMPM})\\b`, 'g');
const REASON_RE = /\b(check ?up|vaccin\w*|shots|booster|dental|teeth|vomit\w*|diarrh\w*|limp\w*|itch\w*|scratch\w*|skin|ears?|eyes?|lump|surgery|spay\w*|neuter\w*|not eating|cough\w*|sneez\w*|stitches|follow ?up)\b/;
const PET_RE = /\b(?:(?:his|her|its|their|the|my (?:dog|cat|pet|puppy|kitten|rabbit|bird)(?:'s)?) name is|named|called)\s+([a-z']+)/;
const OWNER_RE = /\b(?:my name is|my name's|this is)\s+([a-z']+(?: [a-z']+)?)/;
const FILLER_RE = /^(?:(?:um+|uh+|er|well|so|okay|ok|yes|yeah|oh|it's|it is|its|his name is|her name is|its name is|the name is|my name is|my name's|this is|i'm|i am|he's|she's|called|named|for|a|an|the|it's for|because|he needs|she needs|they need|we need|i need|i'd like|i would like)\s+)+/;
const STOP_NAME = new Set(('not sure no yes okay please thanks thank you my the i um uh a an him her them it his me us some ' +
  'refill prescription appointment medication today tomorrow').split(' '));

const norm = (t: string) => t.toLowerCase().replace(/[’‘]/g, "'").replace(/[^a-z0-9':. ]+/g, ' ').replace(/\s+/g, ' ').trim();
const cap = (w: string) => w.replace(/(^|\s)([a-z])/g, (_m: string, s: string, c: string) => s + c.toUpperCase());
const clean = (t: string) => t.replace(/[.?!]+$/, '').replace(FILLER_RE, '').trim();
const list = (xs: readonly string[]) => (xs.length < 2 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]!}`);
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sentence = (t: string) => t.trim().replace(/[.!?]*$/, '.');

function findTime(t: string): string | null {
  const hits = [...t.matchAll(TIME_RE)];
  if (!hits.length) return null;
  const first = hits[0]!;
  const last = hits[hits.length - 1]!;
  return t.slice(first.index, last.index + last[0].length);
}

function nameFrom(answer: string): string | null {
  const words = clean(answer).split(' ').filter((w) => w && !STOP_NAME.has(w));
  return words.length ? cap(words.slice(0, 2).join(' ')) : null;
}

class LocalAgentSession implements AgentSession {
  private mode: Mode = { kind: 'idle', askedAnythingElse: false };
  private req: AppointmentRequest = { petName: null, ownerName: null, reason: null, preferredTime: null };
  private readonly staffRe: RegExp | null;
  private readonly emergencyWords: string[];

  constructor(private readonly tenant: Tenant) {
    const names = tenant.info.staff.flatMap((s) => norm(s.replace(/\(.*?\)/g, '')).split(' '))
      .filter((w) => w.length > 2 && !/^(dr|doctor|dvm|vmd|mrs?|ms|the|and)$/.test(w));
    this.staffRe = names.length ? new RegExp(`\\b(${names.map(escape).join('|')})\\b`) : null;
    this.emergencyWords = tenant.emergency.keywords.map(norm);
  }

  respond(turn: AgentTurn): AsyncIterable<AgentOutput> {
    return lazily(this.outputs(turn));
  }

  private *outputs(turn: AgentTurn): Generator<AgentOutput, void> {
    const reply = this.decide(turn.transcript);
    if (turn.signal.aborted) return;
    if (reply.appointment) yield { type: 'appointment', request: reply.appointment };
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
    return this.understand(norm(transcript));
  }

  private key(key: string, said: string): Reply {
    const m = this.tenant.menu[key];
    if (key === this.tenant.emergency.digit && m?.action !== 'agent') return this.emergency(`caller pressed ${key}`);
    if (!m) return said ? this.understand(norm(said)) : { say: ["Sorry, that key isn't on the menu.", this.menuText()] };
    switch (m.action) {
      case 'agent': return this.understand(norm(m.intent));
      case 'transfer':
        return m.target === 'emergency' ? this.emergency(`caller pressed ${key}`) : this.transfer(`caller pressed ${key}`);
      case 'emergency': return this.emergency(`caller pressed ${key}`);
      case 'repeat': return { say: [this.menuText()], expect: 'short' };
      case 'hangup': return this.goodbye(`caller pressed ${key}`);
    }
  }

  private understand(t: string): Reply {
    const mode = this.mode;
    const emergency = this.emergencyWords.find((k) => this.mentions(t, k));
    if (emergency) return this.emergency(`caller said "${emergency}"`);
    if (/\b(front desk|operator|receptionist|staff|person|human|someone|somebody|representative)\b/.test(t) ||
      (this.staffRe?.test(t) && /\b(talk|speak|connect|transfer)\b/.test(t))) return this.transfer('caller asked for a person');
    const yes = /^(yes|yeah|yep|yup|sure|correct|right|that's right|that is right|that's correct|absolutely|ok|okay|sounds good)\b/.test(t);
    const no = /^(no|nope|nah|not really|that's wrong|wrong|incorrect)\b/.test(t);
    if (yes && mode.kind === 'confirming') return this.confirmed(mode.flow); // "yes, that's all" confirms, not goodbye
    if (/\b(bye|goodbye|that's all|that is all|that's it|nothing else)\b/.test(t) ||
      (mode.kind === 'idle' && /^(no )?(thanks|thank you)\b/.test(t))) return this.goodbye('caller said goodbye');
    if (/\b(never ?mind|cancel that|forget it)\b/.test(t) && mode.kind !== 'idle') {
      this.reset();
      return { say: ['Okay, no problem. What else can I help with?'], expect: 'normal' };
    }
    const info = this.info(t);

    if (mode.kind === 'confirming' || mode.kind === 'fixing') {
      const changed = this.extract(t);
      if (changed) return this.next(mode.flow, []);
      if (no || mode.kind === 'fixing') {
        const slot = /\b(pet|dog|cat|his name|her name)\b/.test(t) ? 'petName' : /\b(my name|owner|your name)\b/.test(t) ? 'ownerName'
          : /\b(reason|why|medication)\b/.test(t) ? 'reason' : /\b(time|day|when|date)\b/.test(t) ? 'preferredTime' : null;
        if (slot) {
          this.req[slot] = null;
          return this.next(mode.flow, ['Okay.']);
        }
        this.mode = { kind: 'fixing', flow: mode.flow };
        return { say: ['Sorry about that. What should I change: the pet\'s name, your name, the reason, or the time?'], expect: 'normal' };
      }
      if (info) return { ...info, say: [...info.say, 'So, is the request right?'], expect: 'short' };
      return { say: [this.readBack(mode.flow)], expect: 'short' };
    }

    if (mode.kind === 'collecting') {
      if (info) return { ...info, say: [...info.say, QUESTION[mode.flow][mode.asking]], expect: 'long' };
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
    if (/\b(hours?|open|opening|close|closed|closing)\b/.test(t)) return { say: [sentence(`Our hours are ${hours}`)] };
    if (/\b(address|where are you|where is|located|location|directions|get there)\b/.test(t)) return { say: [sentence(`We're at ${address}`)] };
    if (/\b(services?|offer|do you (do|treat|see|have)|provide)\b/.test(t)) {
      return { say: [services.length ? sentence(`We offer ${list(services)}`) : 'We offer general care for pets. The front desk can tell you more.'] };
    }
    return null;
  }

  /** Picks up whatever slots the words reveal, in any order. Returns true if any changed. */
  private extract(t: string): boolean {
    const before = JSON.stringify(this.req);
    const time = findTime(t);
    if (time) this.req.preferredTime = time;
    const pet = PET_RE.exec(t)?.[1] ?? (this.req.petName ? undefined : /\bfor ([a-z']+)/.exec(t)?.[1]);
    if (pet && !STOP_NAME.has(pet) && !REASON_RE.test(pet) && !findTime(pet)) this.req.petName = cap(pet);
    const owner = OWNER_RE.exec(t)?.[1];
    if (owner) this.req.ownerName = nameFrom(owner);
    const reason = REASON_RE.exec(t)?.[0];
    if (reason && this.req.reason === null) this.req.reason = reason;
    return JSON.stringify(this.req) !== before;
  }

  /** The answer to the question we asked, when no pattern picked it up. */
  private fill(slot: Slot, t: string, flow: Flow): void {
    if (slot === 'petName' || slot === 'ownerName') this.req[slot] = nameFrom(t);
    else if (slot === 'reason') this.req.reason = flow === 'refill' ? `${REFILL}: ${clean(t)}` : clean(t) || null;
    else this.req.preferredTime = clean(t) || null;
  }

  private next(flow: Flow, say: string[]): Reply {
    const missing = SLOTS.find((s) => this.missing(s, flow));
    if (missing) {
      this.mode = { kind: 'collecting', flow, asking: missing };
      return { say: [...say, QUESTION[flow][missing]], expect: 'long' };
    }
    this.mode = { kind: 'confirming', flow };
    return { say: [...say, this.readBack(flow)], expect: 'short' };
  }

  private missing(slot: Slot, flow: Flow): boolean {
    return this.req[slot] === null || (flow === 'refill' && slot === 'reason' && this.req.reason === REFILL);
  }

  private readBack(flow: Flow): string {
    const r = this.req;
    const what = flow === 'refill' ? 'A refill request' : 'An appointment';
    const reason = flow === 'refill' ? `Medication: ${r.reason?.replace(`${REFILL}: `, '') ?? 'not given'}` : `Reason: ${r.reason ?? 'not given'}`;
    return `Let me read that back. ${what} for ${r.petName ?? 'your pet'}, from ${r.ownerName ?? 'you'}. ` +
      `${sentence(reason)} ${sentence(`Time: ${r.preferredTime ?? 'any time'}`)} Is that right?`;
  }

  private confirmed(flow: Flow): Reply {
    const appointment = { ...this.req };
    this.reset();
    this.mode = { kind: 'idle', askedAnythingElse: true };
    const what = flow === 'refill' ? 'refill request' : 'request';
    return { appointment, say: [`Great. I've sent your ${what} to the team.`, "They'll call you to confirm.", 'Anything else I can help with?'], expect: 'normal' };
  }

  private transfer(reason: string): Reply {
    this.reset();
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

  /** A keyword counts unless negated just before it ("not an emergency", "he isn't bleeding"). */
  private mentions(t: string, keyword: string): boolean {
    const at = t.search(new RegExp(`\\b${escape(keyword)}\\b`));
    if (at < 0) return false;
    return !/\b(not|no|isn't|isnt|wasn't|never|without)\b(\s+\S+){0,2}\s*$/.test(t.slice(0, at));
  }

  private reset(): void {
    this.mode = { kind: 'idle', askedAnythingElse: false };
    this.req = { petName: null, ownerName: null, reason: null, preferredTime: null };
  }
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
  startSession: (tenant) => new LocalAgentSession(tenant),
};
