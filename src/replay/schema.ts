/**
 * zod schemas of journal lines (docs/journal.md). Event payloads are checked per type, so a journal
 * that replays is one whose events the machine can actually take.
 */
import { z } from 'zod';
import type { CallEvent, CallInput } from '../../machines/call/call.types.js';

const int = z.number().int();
const nullableString = z.string().nullable();

const menuEntry = z.discriminatedUnion('action', [
  z.object({ action: z.literal('transfer'), target: z.enum(['frontDesk', 'emergency']), label: z.string() }),
  z.object({ action: z.literal('emergency'), label: z.string() }),
  z.object({ action: z.literal('repeat'), label: z.string() }),
  z.object({ action: z.literal('hangup'), label: z.string() }),
  z.object({ action: z.literal('agent'), intent: z.string(), label: z.string() }),
]);

const callInput = z.object({
  callSid: z.string().min(1),
  tenant: z.object({
    id: z.string().min(1),
    /** Journals before clinic hours had no `openNow`: those clinics were always open. */
    openNow: z.boolean().default(true),
    consent: z.object({ required: z.boolean(), onRefusal: z.enum(['continue', 'transfer']) }),
    recordingEnabled: z.boolean(),
    emergency: z.object({ keywords: z.array(z.string()), digit: z.string(), hasLine: z.boolean() }),
    menu: z.record(z.string(), menuEntry),
    backchannels: z.array(z.string()),
    /**
     * Journals before prepared replies and adaptive windows have no `endOfTurnCompleteMs`,
     * `preemptLeadMs`, `maxPreemptsPerTurn`: those calls never prepared a reply early (lead 0).
     */
    timing: z
      .object({
        silencePromptMs: z.number(),
        silencePromptsBeforeGoodbye: z.number(),
        endOfTurnMs: z.number(),
        endOfTurnShortMs: z.number(),
        endOfTurnLongMs: z.number(),
        endOfTurnCompleteMs: z.number().optional(),
        preemptLeadMs: z.number().default(0),
        maxPreemptsPerTurn: z.number().default(0),
        fillerAfterMs: z.number(),
        bargeInMinSpeechMs: z.number(),
        interDigitMs: z.number(),
      })
      .transform(({ endOfTurnCompleteMs, ...t }) => ({ ...t, endOfTurnCompleteMs: endOfTurnCompleteMs ?? t.endOfTurnMs })),
    /** Journals before `limits.maxCallSeconds` had no limit: the longest timer a clock takes (24.8 days). */
    limits: z.object({ maxCallMs: z.number() }).default({ maxCallMs: 2 ** 31 - 1 }),
  }),
}) satisfies z.ZodType<CallInput>;

export const headerSchema = z.object({
  v: z.literal(1),
  type: z.literal('header'),
  callSid: z.string().min(1),
  tenantId: z.string().min(1),
  engineVersion: z.string(),
  providers: z.record(z.string(), z.string()),
  startedAt: z.iso.datetime(),
  input: callInput,
});

/** Fields every line after the header has. */
export const lineBase = z.looseObject({ t: z.number().nonnegative(), type: z.string().min(1) });

const storedRequest = z.object({
  id: z.string().min(1),
  kind: z.enum(['appointment', 'refill', 'message']),
  petName: nullableString,
  petSpecies: nullableString,
  ownerName: nullableString,
  reason: nullableString,
  preferredTime: nullableString,
  message: nullableString,
  recipient: nullableString,
  callback: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('callerId') }),
    z.object({ kind: z.literal('spoken') }),
    z.object({ kind: z.literal('none') }),
  ]),
  urgency: z.enum(['routine', 'soon', 'urgent']),
});
const agentAction = z.discriminatedUnion('type', [
  z.object({ type: z.literal('transfer'), target: z.enum(['frontDesk', 'emergency']), reason: z.string() }),
  z.object({ type: z.literal('end'), reason: z.string() }),
  z.object({ type: z.literal('emergency'), reason: z.string() }),
]);
const generation = { generation: int };

/** Payload (everything but t/type/timer) of each machine event; `tts.chunk` carries `bytes` instead of audio. */
export const eventPayloads: Record<CallEvent['type'], z.ZodObject> = {
  'twilio.start': z.object({ streamSid: z.string() }),
  'twilio.mark': z.object({ generation: int, epoch: int, endMs: z.number() }),
  'twilio.dtmf': z.object({ digit: z.string().min(1) }),
  'twilio.stop': z.object({}),
  'twilio.closed': z.object({}),
  'call.status': z.object({ status: z.enum(['completed', 'busy', 'failed', 'no-answer', 'canceled']) }),
  'call.recording': z.object({ recordingSid: z.string(), status: z.string() }),
  'call.hangup': z.object({ reason: z.string() }),
  'call.handoff': z.object({ reason: z.string() }),
  'vad.speechStart': z.object({ atMs: z.number() }),
  'vad.speechEnd': z.object({ atMs: z.number(), speechMs: z.number(), closedAtMs: z.number().optional() }),
  'vad.pause': z.object({ atMs: z.number() }),
  'vad.resume': z.object({ atMs: z.number() }),
  'stt.partial': z.object({ text: z.string(), atMs: z.number().optional() }),
  /** Journals before the two-step emergency check have no confidence: not reported. */
  'stt.final': z.object({ text: z.string(), atMs: z.number(), confidence: z.number().nullable().optional() }),
  'stt.error': z.object({ message: z.string() }),
  'agent.delta': z.object({ ...generation, text: z.string() }),
  'agent.expect': z.object({ ...generation, answer: z.enum(['short', 'normal', 'long']) }),
  'agent.request': z.object({ ...generation, request: storedRequest }),
  'agent.done': z.object({ ...generation, action: agentAction.nullable() }),
  'agent.error': z.object({ ...generation, message: z.string() }),
  'tts.chunk': z.object({ ...generation, bytes: int.nonnegative() }),
  'tts.segment': z.object({ ...generation, text: z.string(), ms: z.number() }),
  'tts.done': z.object(generation),
  'tts.error': z.object({ ...generation, message: z.string() }),
  'provider.fallback': z.object({ kind: z.enum(['stt', 'agent', 'tts']), from: z.string(), to: z.string(), reason: z.string() }),
  'dtmf.timeout': z.object({}),
  'dtmf.entered': z.object({ digits: z.string() }),
};

export const timerFlag = z.object({ timer: z.boolean().optional() });
export const afterPayload = z.object({});
export const donePayload = z.object({ output: z.unknown().optional() });
export const errorPayload = z.object({ error: z.object({ name: z.string().optional(), message: z.string(), code: z.string().optional() }) });

export const outcomeLine = z.object({
  t: z.number().nonnegative(),
  type: z.literal('outcome'),
  outcome: z.enum(['callerHungUp', 'completed', 'transferred', 'emergency', 'silence', 'noStream', 'notConnected', 'error', 'handedOff', 'timeLimit']),
  record: z.looseObject({
    durationMs: z.number(),
    turns: z.array(
      z.looseObject({
        generation: int,
        endOfSpeechToAudioMs: z.number().nullable(),
        sttMs: z.number().nullable(),
        endpointMs: z.number().nullable(),
        agentFirstTextMs: z.number().nullable(),
        ttsFirstAudioMs: z.number().nullable(),
        firstAudioMs: z.number().nullable(),
      }),
    ),
    bargeIns: z.array(z.object({ clearLatencyMs: z.number(), onsetStreamMs: z.number().optional() })),
    /** Requests and messages taken (journals before 0.3 counted appointments instead). */
    requests: int.optional(),
    appointments: int.optional(),
    recordings: int,
    dialStatus: z.string().nullable(),
    emergency: z.object({ via: z.string(), detail: z.string(), certainty: z.string().optional(), check: z.string().nullable().optional() }).nullable(),
    emergencyCheck: z.object({ detail: z.string(), basis: z.string(), answer: z.string().nullable() }).nullable().optional(),
  }),
  droppedEvents: int.optional(),
});

export const truncatedLine = z.object({ t: z.number().nonnegative(), type: z.literal('truncated'), maxBytes: int.optional() });

/** "path.to.field: message; …" from a zod error. */
export function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length > 0 ? `${i.path.join('.')}: ${i.message}` : i.message)).join('; ');
}
