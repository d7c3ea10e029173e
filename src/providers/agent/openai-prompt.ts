/**
 * What the OpenAI receptionist is told: a system prompt built from the clinic's config, the five
 * tools it may call, and the call so far as chat messages. Kept apart from the adapter so the
 * wording can be reviewed (and tested) without a network in sight.
 */
import type OpenAI from 'openai';
import type { Tenant } from '../../config/tenant.schema.js';
import { spokenOpenAnswer } from '../../config/hours.js';
import type { AgentCallInfo, ChatTurn } from './types.js';

export type ToolName = 'transfer_to_staff' | 'end_call' | 'report_emergency' | 'request_appointment' | 'take_message';

const list = (xs: readonly string[]) => xs.join('; ');

/**
 * The system prompt. Everything the model writes is spoken by a TTS voice on an 8 kHz phone line,
 * so the style rules (short, plain, no markup) matter as much as the facts.
 */
export function systemPrompt(tenant: Tenant, call: AgentCallInfo = { callerIdUsable: false, startedAt: Date.now(), openNow: true }): string {
  const { info } = tenant;
  const hoursNow = tenant.hours
    ? [`- Open right now? ${spokenOpenAnswer(tenant.hours, call.startedAt, 'now')}`, `- Tomorrow: ${spokenOpenAnswer(tenant.hours, call.startedAt, 'tomorrow')}`]
    : [];
  const closed = call.openNow
    ? []
    : ['- The clinic is closed right now: nobody can take a transfer. Never call transfer_to_staff; offer to take a message instead.'];
  const callback = call.callerIdUsable
    ? 'The team calls back on the number the caller is calling from; only if the caller wants another number, ask for it, ' +
      'read the digits back one by one, and pass it as callback_number (otherwise pass null).'
    : 'Ask for the number the team should call back on, read the digits back one by one, and pass it as callback_number ' +
      '(null only if the caller will not give one).';
  const emergencyLine = tenant.transfer.emergency
    ? 'The phone system then reads the emergency instructions and connects the caller to the emergency line.'
    : 'The phone system then reads the emergency instructions to the caller; there is no emergency line to transfer to.';
  return [
    `You are the automated phone receptionist of ${tenant.name}, a veterinary clinic. You are on a live phone call, ` +
      'and everything you write is spoken aloud to the caller by a text-to-speech voice.',
    `The call opened with your greeting: "${tenant.greeting}"`,
    '',
    'Clinic facts (state only these; never invent prices, availability, other facts or staff):',
    `- Opening hours: ${info.hours}`,
    ...hoursNow,
    `- Address: ${info.address}`,
    `- Services: ${info.services.length ? list(info.services) : 'general veterinary care (the front desk can give details)'}`,
    ...(info.staff.length ? [`- Staff: ${list(info.staff)}`] : []),
    '',
    'What you can do:',
    '- Answer questions about the hours, address, services and staff above.',
    "- Take an appointment request or a prescription refill request. You need the pet's name, the owner's name, the reason " +
      '(for a refill: the medication), the preferred time and a call-back number; note the species and how urgent it is if ' +
      'said. Ask for what is missing, one question at a time. Then read the details back and ask if they are right. Only ' +
      'after the caller confirms, call request_appointment. You cannot book or confirm a time yourself: the team calls back.',
    "- Take a message for the clinic or a named staff member: the caller's name, the message and a call-back number; read it " +
      'back, and after the caller confirms call take_message.',
    `- Call-back number: ${callback}`,
    '- When you call request_appointment or take_message, say nothing yourself in that reply: the phone system saves the ' +
      'request first and then tells the caller it was sent.',
    '- Call transfer_to_staff to connect the caller to the front desk when they ask for a person, when they need something ' +
      'you cannot do, or when they are upset.',
    ...closed,
    '- Call end_call when the caller says goodbye or has nothing else.',
    '',
    'What you must never do:',
    '- Never give a diagnosis, medical advice, medication doses or home treatment. Say that a veterinarian needs to see the ' +
      'pet, and offer an appointment or the front desk.',
    '- If the pet may be in danger (poisoning or something toxic eaten, heavy bleeding, trouble breathing, choking, seizures, ' +
      'collapse, hit by a car) or the caller says it is an emergency, call report_emergency at once, without further questions. ' +
      emergencyLine,
    '',
    'How to speak:',
    '- Reply in one or two short sentences of plain spoken English, warm and to the point.',
    '- No markdown, lists, bullet points, headings, emojis, links or symbols: write everything the way you would say it.',
    '- Ask one question at a time.',
    "- If you did not understand the caller, ask them to say it again. Transcripts may contain mistakes; don't point them out.",
    '- A caller line like "caller pressed 1: appointments" means they pressed that key on their phone for that option.',
  ].join('\n');
}

const reason = { type: 'string', description: 'A few words on why, for the staff and the call log.' } as const;
const nullableString = (description: string) => ({ type: ['string', 'null'], description }) as const;

const CALLBACK_NUMBER = nullableString('The call-back number the caller gave, digits only, or null (see the call-back rule).');
const URGENCY = { type: 'string', enum: ['routine', 'soon', 'urgent'], description: 'How soon the clinic should act.' } as const;

const tool = (name: ToolName, description: string, properties: Record<string, object>): OpenAI.ChatCompletionFunctionTool => ({
  type: 'function',
  function: {
    name,
    description,
    // Strict mode: the model must produce exactly these fields, so the adapter never guesses.
    strict: true,
    parameters: { type: 'object', properties, required: Object.keys(properties), additionalProperties: false },
  },
});

/** The tools, in the shape Chat Completions takes. */
export const AGENT_TOOLS: readonly OpenAI.ChatCompletionFunctionTool[] = [
  tool('transfer_to_staff', 'Connect the caller to the clinic front desk (a person).', { reason }),
  tool('end_call', 'End the call politely, after the caller said goodbye or has nothing else.', { reason }),
  tool('report_emergency', 'The pet may be in danger: hand the call to the emergency procedure at once.', { reason }),
  tool('request_appointment', 'Send a confirmed appointment or refill request to the team, who call back to confirm.', {
    kind: { type: 'string', enum: ['appointment', 'refill'], description: 'An appointment, or a prescription refill.' },
    pet_name: nullableString("The pet's name, or null if not given."),
    pet_species: nullableString('The species (dog, cat, rabbit…), or null if not said.'),
    owner_name: nullableString("The owner's name, or null if not given."),
    reason: nullableString('Why the pet should be seen, or for a refill "prescription refill: <medication>"; null if not given.'),
    preferred_time: nullableString('When the caller would like to come in, in their words; null if not given.'),
    callback_number: CALLBACK_NUMBER,
    urgency: URGENCY,
  }),
  tool('take_message', 'Send a confirmed message to the clinic or a named staff member, who call back.', {
    recipient: nullableString('The staff member the message is for, as the caller named them, or null for the clinic.'),
    caller_name: nullableString("The caller's name, or null if not given."),
    message: { type: 'string', description: 'The message, in the caller\'s words.' },
    callback_number: CALLBACK_NUMBER,
    urgency: URGENCY,
  }),
];

/** What the model is sent of a long call (tenant `limits.historyTurns`) and what it already sent on. */
export interface HistoryWindow {
  /** The latest lines of the conversation kept; older ones are dropped. */
  maxTurns: number;
  /** Requests this call already passed to the team, oldest first, e.g. "an appointment request for Daisy". */
  sent: readonly string[];
}

/**
 * The call so far plus the caller's latest words, as chat messages after the system prompt. Each
 * turn resends the whole prompt, so at most `window.maxTurns` lines of history go; when lines were
 * dropped, a note says how many and which requests were already sent, so the model neither starts
 * over nor sends them twice.
 */
export function chatMessages(system: string, history: readonly ChatTurn[], transcript: string, window?: HistoryWindow): OpenAI.ChatCompletionMessageParam[] {
  const spoken = history.filter((t) => t.text.trim() !== '');
  const kept = window ? spoken.slice(Math.max(0, spoken.length - window.maxTurns)) : spoken;
  const dropped = spoken.length - kept.length;
  const turns: OpenAI.ChatCompletionMessageParam[] = kept.map((t) =>
    t.role === 'caller' ? { role: 'user', content: t.text } : { role: 'assistant', content: t.text });
  const note: OpenAI.ChatCompletionMessageParam[] =
    dropped > 0
      ? [{
          role: 'system',
          content: `The call has gone on for a while: its first ${dropped} lines are not shown. ` +
            (window?.sent.length ? `Already sent to the team this call: ${window.sent.join('; ')}. Do not send these again.` : 'Nothing has been sent to the team yet this call.'),
        }]
      : [];
  return [{ role: 'system', content: system }, ...note, ...turns, { role: 'user', content: transcript }];
}
