import { z } from 'zod';

/**
 * One clinic ("tenant"). One JSON file per clinic in TENANTS_DIR, validated by this schema.
 * `npm run schema` writes config/tenant.schema.json from it for editors.
 * Every field a clinic may omit has a default here, so the rest of the engine reads a complete object.
 */

const e164 = z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as +15551230000');

export const DEFAULT_EMERGENCY_KEYWORDS = [
  'emergency', 'urgent', 'dying', 'bleeding', 'poison', 'choking', 'unconscious', 'seizure', "can't breathe",
] as const;

export const DEFAULT_BACKCHANNELS = [
  'mm-hmm', 'mhm', 'uh-huh', 'yeah', 'yep', 'okay', 'ok', 'right', 'sure', 'got it', 'i see', 'alright',
] as const;

/** What a DTMF key does, in the stream and in the fallback <Gather> menu. */
export const MenuAction = z.discriminatedUnion('action', [
  z.object({ action: z.literal('transfer'), target: z.enum(['frontDesk', 'emergency']), label: z.string().min(1) }),
  z.object({ action: z.literal('emergency'), label: z.string().min(1) }),
  z.object({ action: z.literal('repeat'), label: z.string().min(1) }),
  z.object({ action: z.literal('hangup'), label: z.string().min(1) }),
  /** Hand the key to the receptionist as if the caller had said `intent` (e.g. "appointment"). */
  z.object({ action: z.literal('agent'), intent: z.string().min(1), label: z.string().min(1) }),
]);
export type MenuAction = z.infer<typeof MenuAction>;

const ms = (min: number, max: number) => z.number().int().min(min).max(max);

export const VadOverrides = z
  .object({
    /** Energy (dBFS) a 20 ms frame needs to count as speech while the caller has the floor. */
    listeningThresholdDb: z.number().min(-80).max(0).default(-38),
    /** Stricter while we speak: Twilio cancels no echo, speakerphones leak our voice back. */
    speakingThresholdDb: z.number().min(-80).max(0).default(-30),
    /** Speech needed to open a segment (too short: coughs open turns; too long: first syllable lost). */
    minSpeechMs: ms(20, 1000).default(100),
    /** Silence needed to close a segment (turn logic runs after this). */
    minSilenceMs: ms(60, 2000).default(200),
  })
  .strict()
  .prefault({});

export const Timing = z
  .object({
    /** Caller silence before "are you still there?" (too short nags; too long is dead air). */
    silencePromptMs: ms(3000, 120_000).default(15_000),
    /** After this many unanswered prompts we say goodbye. */
    silencePromptsBeforeGoodbye: z.number().int().min(1).max(5).default(2),
    /** End of turn after VAD silence, open talk: the low end of the 500–800 ms band, since it is most of the 800 ms turn budget. */
    endOfTurnMs: ms(200, 3000).default(500),
    /** Shorter for yes/no answers (consent). */
    endOfTurnShortMs: ms(150, 3000).default(400),
    /** Longer when the caller gives names, times or numbers. */
    endOfTurnLongMs: ms(300, 3000).default(1800),
    /** Filler ("One moment.") if no reply audio this long after the turn ends. */
    fillerAfterMs: ms(300, 10_000).default(1500),
    /** Minimum caller speech while we talk before it counts as a barge-in. */
    bargeInMinSpeechMs: ms(60, 2000).default(300),
    /** Inter-digit timeout for multi-digit DTMF entries. */
    interDigitMs: ms(500, 10_000).default(2500),
  })
  .strict()
  .prefault({});

export const TenantSchema = z
  .object({
    $schema: z.string().optional(),
    /** Stable id: lower-case letters, digits and dashes. Appears in logs, journals and metrics. */
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{1,62}$/, 'lower-case letters, digits and dashes, 2–63 characters'),
    name: z.string().min(1).max(120),
    /** Twilio numbers (E.164) that route to this clinic. The signed `To` of the call picks the clinic. */
    phoneNumbers: z.array(e164).min(1),
    /** The Twilio account that owns these numbers (AccountSid, AC…); when set, calls from another account are refused. */
    accountSid: z.string().regex(/^AC[0-9a-fA-F]{32}$/).optional(),
    greeting: z.string().min(1).max(600),
    consent: z
      .object({
        required: z.boolean().default(false),
        text: z
          .string()
          .min(1)
          .max(600)
          .default('This call may be recorded and is answered by an automated assistant. Is that okay? Please say yes or no, or press 1 for yes and 2 for no.'),
        /** What a "no" does: carry on without recording, or hand the caller to staff. */
        onRefusal: z.enum(['continue', 'transfer']).default('continue'),
      })
      .strict()
      .prefault({}),
    recording: z.object({ enabled: z.boolean().default(false) }).strict().prefault({}),
    transfer: z
      .object({
        frontDesk: e164,
        /** Emergency line (the clinic's own or a partner emergency hospital). Without it, emergencies end with the script. */
        emergency: e164.optional(),
        /** Seconds the staff phone rings before the transfer counts as unanswered. */
        ringSeconds: z.number().int().min(5).max(60).default(20),
      })
      .strict(),
    emergency: z
      .object({
        keywords: z.array(z.string().min(2)).min(1).default([...DEFAULT_EMERGENCY_KEYWORDS]),
        /** Spoken, uninterruptible, before the transfer. Keep it short and concrete. */
        script: z.string().min(1).max(800),
        /** DTMF key that means emergency anywhere in the call. */
        digit: z.string().regex(/^[0-9*#]$/).default('9'),
      })
      .strict(),
    /** DTMF menu: key → action. Used mid-conversation and as the fallback menu when the stream is unavailable. */
    menu: z
      .record(z.string().regex(/^[0-9*#]{1,4}$/, 'menu keys are 1–4 characters of 0-9 * #'), MenuAction)
      .default({
        '1': { action: 'agent', intent: 'appointment', label: 'appointments' },
        '0': { action: 'transfer', target: 'frontDesk', label: 'the front desk' },
        '*': { action: 'repeat', label: 'to hear these options again' },
      }),
    voice: z
      .object({
        language: z.string().regex(/^[a-z]{2}(-[A-Z]{2})?$/).default('en-US'),
        /** Local synthesizer voice (flite): kal (8 kHz, fastest), slt, rms, awb. */
        local: z.enum(['kal', 'slt', 'rms', 'awb']).default('kal'),
        /** Cloud voice id (ElevenLabs), used when the cloud TTS provider is active. */
        cloud: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /** Facts the receptionist may state. */
    info: z
      .object({
        hours: z.string().min(1),
        address: z.string().min(1),
        services: z.array(z.string().min(1)).default([]),
        staff: z.array(z.string().min(1)).default([]),
      })
      .strict(),
    backchannels: z.array(z.string().min(1)).default([...DEFAULT_BACKCHANNELS]),
    timing: Timing,
    vad: VadOverrides,
    privacy: z
      .object({
        /** Keep the caller's number in journals and the inspector (otherwise masked). */
        storeCallerNumber: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    providers: z
      .object({
        stt: z.enum(['auto', 'local', 'openai', 'fake']).default('auto'),
        tts: z.enum(['auto', 'local', 'elevenlabs', 'fake']).default('auto'),
        agent: z.enum(['auto', 'local', 'openai', 'fake']).default('auto'),
        /** Chat model when the OpenAI agent is active. */
        model: z.string().min(1).default('gpt-4o-mini'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type TenantFile = z.input<typeof TenantSchema>;
export type Tenant = z.output<typeof TenantSchema>;
