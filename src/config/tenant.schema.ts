import { z } from 'zod';
import { BUDGETS } from '../../machines/call/budgets.js';

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
    /** Silence inside a segment reported as a pause: finished words may prepare the reply then (docs/design/conversation.md §1.5). 0, or not below minSilenceMs: none. */
    pauseMs: z.number().int().min(0).max(2000).default(100),
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
    /** Longer when the caller gives names, times or numbers, or trails off ("and…", "um", "my dog is"). */
    endOfTurnLongMs: ms(300, 3000).default(1800),
    /** After words that read as finished: a question, a punctuated sentence, a short answer (machines/call/language.ts). */
    endOfTurnCompleteMs: ms(150, 3000).default(250),
    /**
     * The reply (agent request, first synthesis) starts once the end-of-turn window has this long
     * left, its audio held until the window closes; 0: only after it closes (docs/design/conversation.md §1.5).
     */
    preemptLeadMs: ms(0, 3000).default(700),
    /** Replies prepared and thrown away in one turn (the caller went on) before the turn waits for its window instead. */
    maxPreemptsPerTurn: z.number().int().min(1).max(5).default(2),
    /**
     * Filler ("One moment.") if no reply audio this long after the turn ends. At most 6 s: the
     * machine gives up thinking at 8 s (machines/call/budgets.ts), so a later filler would never play.
     */
    fillerAfterMs: ms(300, 6_000).default(BUDGETS.fillerAfterMs),
    /**
     * Caller speech while we talk that counts as a barge-in; a longer cough pauses the reply until the
     * recognizer hears no words in it (docs/design/conversation.md §2).
     */
    bargeInMinSpeechMs: ms(60, 2000).default(150),
    /** Inter-digit timeout for multi-digit DTMF entries. */
    interDigitMs: ms(500, 10_000).default(2500),
  })
  .strict()
  .prefault({});

/** 24-hour "HH:MM" → minutes after midnight (`"24:00"` → 1440). Only for strings the schema accepted. */
export const minutesOf = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

const OPEN_TIME = /^(?:[01]\d|2[0-3]):[0-5]\d$/;
const CLOSE_TIME = /^(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)$/;
const clockTime = (last: '23:59' | '24:00') =>
  z.string().regex(last === '24:00' ? CLOSE_TIME : OPEN_TIME, `must be a 24-hour time "HH:MM" from "00:00" to "${last}"`);
/** Both ends well-formed (zod still runs refinements after a failed regex; one line per problem is enough). */
const wellFormed = (iv: { open: string; close: string }) => OPEN_TIME.test(iv.open) && CLOSE_TIME.test(iv.close);

/** True when Intl knows the zone (it throws RangeError otherwise). */
export function isTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/** One opening interval of a day, in the clinic's local wall-clock time: open ≤ t < close. */
export const OpeningInterval = z
  .object({
    open: clockTime('23:59'),
    /** `"24:00"` = open until midnight. An interval never crosses midnight: split it at "24:00" / "00:00". */
    close: clockTime('24:00'),
  })
  .strict()
  .superRefine(({ open, close }, ctx) => {
    if (wellFormed({ open, close }) && minutesOf(close) <= minutesOf(open)) {
      ctx.addIssue({
        code: 'custom',
        path: ['close'],
        input: close,
        message: `must be later than open ("${open}"); to stay open past midnight, close at "24:00" and open at "00:00" the next day`,
      });
    }
  });
export type OpeningInterval = z.output<typeof OpeningInterval>;

/** A day's intervals, in order and without overlaps (touching, as 12:00 then 12:00, is fine). */
const DayIntervals = z.array(OpeningInterval).superRefine((intervals, ctx) => {
  for (let i = 1; i < intervals.length; i++) {
    const previous = intervals[i - 1];
    const current = intervals[i];
    if (previous && current && wellFormed(previous) && wellFormed(current) && minutesOf(current.open) < minutesOf(previous.close)) {
      ctx.addIssue({
        code: 'custom',
        path: [i, 'open'],
        input: current.open,
        message: `overlaps or comes before the previous interval ("${previous.open}"–"${previous.close}"); list a day's intervals in order without overlaps`,
      });
    }
  }
});

export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/**
 * When the clinic is open, in its own time zone (src/config/hours.ts computes open/closed from it;
 * docs/hours.md). A missing day is a closed day; a closure closes one whole local date.
 */
export const ClinicHours = z
  .object({
    /** IANA time zone of the clinic, e.g. "America/Chicago"; every time below is wall-clock time there. */
    timeZone: z.string().min(1).refine(isTimeZone, 'must be an IANA time zone such as "America/Chicago" or "Europe/London"'),
    weekly: z
      .object({
        mon: DayIntervals.optional(),
        tue: DayIntervals.optional(),
        wed: DayIntervals.optional(),
        thu: DayIntervals.optional(),
        fri: DayIntervals.optional(),
        sat: DayIntervals.optional(),
        sun: DayIntervals.optional(),
      })
      .strict(),
    /** Whole local dates the clinic is closed (public holidays, training days). */
    closures: z
      .array(
        z
          .object({
            date: z.iso.date('must be a calendar date "YYYY-MM-DD" such as "2026-12-25"'),
            /** Spoken: "We're closed tomorrow for Christmas Day." */
            reason: z.string().min(1).max(120).optional(),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();
export type ClinicHours = z.output<typeof ClinicHours>;

/** Names an environment variable (the file holds the name, never the secret). */
const envName = z
  .string()
  .regex(/^[A-Z][A-Z0-9_]{1,63}$/, 'must be an environment variable name such as RIVERSIDE_WEBHOOK_SECRET (upper-case letters, digits and _)');

/** Absolute http(s) URL without credentials or fragment. https-only in production: checked by loadTenants. */
function isWebhookUrl(text: string): boolean {
  if (text !== text.trim() || text.includes('#')) return false;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (url.protocol === 'https:' || url.protocol === 'http:') && url.hostname !== '' && url.username === '' && url.password === '';
}

/** "frontdesk@clinic.example" or "Front Desk <frontdesk@clinic.example>"; never a line break (header injection). */
const MAILBOX = /^(?:[^<>\r\n]*<([^<>\s]+)>|([^<>\s]+))$/;
const isMailbox = (text: string) => {
  const address = MAILBOX.exec(text.trim());
  const bare = address?.[1] ?? address?.[2];
  return bare !== undefined && z.regexes.email.test(bare);
};

export const FollowUps = z
  .object({
    /** POST each follow-up to the clinic's system, signed (HMAC) with the secret in `secretEnv`. */
    webhook: z
      .object({
        url: z.string().max(2000).refine(isWebhookUrl, 'must be an absolute http(s) URL without user name, password or #fragment, e.g. https://clinic.example/vetline').meta({ format: 'uri' }),
        secretEnv: envName,
      })
      .strict()
      .optional(),
    /** E-mail each follow-up to the front desk. */
    email: z
      .object({
        to: z.array(z.email('must be an e-mail address such as frontdesk@clinic.example')).min(1).max(20),
        /** Sender, e.g. "Vetline <vetline@clinic.example>"; the deployment's default when absent. */
        from: z.string().max(200).refine(isMailbox, 'must be an e-mail address, optionally with a name: "Vetline <vetline@clinic.example>"').optional(),
      })
      .strict()
      .optional(),
    /** Text the caller a confirmation (only when they agreed to it on the call). */
    sms: z.object({ enabled: z.boolean().default(false) }).strict().prefault({}),
    /** Follow-ups and call summaries older than this are deleted. */
    retentionDays: z.number().int().min(1).max(3650).default(365),
  })
  .strict()
  .prefault({});

/**
 * Cost and abuse bounds (docs/configuration.md "Limits", docs/providers.md "Cost per call"). Every
 * field has a default, so a clinic file may omit the block.
 */
export const Limits = z
  .object({
    /**
     * Longest conversation with the assistant. When it is reached the caller hears a short wrap-up,
     * then the front desk (open) or goodbye (closed); never during an emergency or a transfer.
     * 15 minutes: three times a long booking call, short enough that a stuck or looping caller
     * cannot hold one of MAX_CALLS for hours.
     */
    maxCallSeconds: z.number().int().min(60).max(7200).default(900),
    /**
     * Calls from one caller number to this clinic that may be with the assistant at once; over it,
     * the caller gets the front desk (open) or the key menu (closed), never a dead line. 2: a caller
     * who redials while the first call is still ending is not refused; a third at once is a dialer.
     */
    concurrentCallsPerCaller: z.number().int().min(1).max(50).default(2),
    /**
     * Calls from one caller number that may reach the assistant in any 60 minutes (sliding window);
     * over it, as above. 10: an anxious owner calling back stays well under it; an autodialer does not.
     */
    callsPerCallerPerHour: z.number().int().min(1).max(1000).default(10),
    /**
     * Caller and assistant lines of the conversation the cloud receptionist is sent each turn (the
     * latest ones; older ones are dropped, what was already sent to the clinic is summarised). 20
     * lines: a whole appointment request, asked one question at a time, with room to spare.
     */
    historyTurns: z.number().int().min(2).max(200).default(20),
    /**
     * `max_completion_tokens` of each cloud receptionist reply. Replies are one or two spoken
     * sentences (~40 tokens) or one tool call (~120 tokens with every appointment field); 300 only
     * stops a runaway reply.
     */
    maxCompletionTokens: z.number().int().min(50).max(4000).default(300),
    /**
     * What the clinic's calls may consume from cloud providers per UTC day (docs/providers.md
     * "Daily budget"). A warning is logged at 80 % of any of the three; at 100 % the clinic's new
     * calls use the embedded providers until midnight UTC. Defaults: about 300 two-minute calls.
     */
    dailyProviderBudget: z
      .object({
        /** Chat tokens billed (input + output). */
        agentTokens: z.number().int().min(1).max(1_000_000_000).default(5_000_000),
        /** Characters sent to the cloud synthesizer. */
        ttsCharacters: z.number().int().min(1).max(100_000_000).default(500_000),
        /** Caller speech sent to the cloud recognizer, in seconds. */
        sttSeconds: z.number().int().min(1).max(10_000_000).default(6_000),
      })
      .strict()
      .prefault({}),
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
        /**
         * Asked when an emergency word was heard but not clearly (a partial transcript, low confidence,
         * a lone keyword); yes, keys 1/2, or no answer within 4 s (= yes). Keep it a short yes/no question.
         */
        question: z
          .string()
          .min(1)
          .max(160)
          .default('Is your pet in danger right now? Say yes or no, or press 1 for yes, 2 for no.'),
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
    /** Structured opening hours; absent = always open (`info.hours` stays the spoken general answer). */
    hours: ClinicHours.optional(),
    /** Where messages taken on a call go, and how long they are kept. */
    followUps: FollowUps,
    /** Front-desk inbox: `tokenEnv` names the environment variable holding this clinic's inbox token. */
    desk: z.object({ tokenEnv: envName }).strict().optional(),
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
    limits: Limits,
    providers: z
      .object({
        stt: z.enum(['auto', 'local', 'openai', 'elevenlabs', 'fake']).default('auto'),
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
