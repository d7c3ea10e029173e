/**
 * Every input the desk API takes, validated before it reaches the store. A failure is a 400
 * VET_E_BAD_REQUEST whose message names the field and the rule, never the value sent.
 */
import { z } from 'zod';
import { FOLLOW_UP_STATUSES, FOLLOW_UP_TYPES, type FollowUpChange, type FollowUpStatus, type FollowUpType } from '../store/types.js';

export const NOTE_MAX = 2000;
export const HANDLED_BY_MAX = 80;
/** Default and ceiling of `limit` (the store's own). */
export const LIST_LIMIT_DEFAULT = 100;
export const LIST_LIMIT_MAX = 500;

/** `open`: new and in progress together (the page's default view); `all`: every status. */
export type StatusFilter = FollowUpStatus | 'open' | 'all';
const STATUS_FILTERS: readonly StatusFilter[] = [...FOLLOW_UP_STATUSES, 'open', 'all'];

export interface ListFilter {
  status: StatusFilter;
  type: FollowUpType | null;
  from: number | null;
  to: number | null;
  /** The `clinic=` parameter, before the scope is applied. */
  clinic: string | null;
  limit: number;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

// Control characters other than tab and newlines: never useful in a note, and a log-forging aid.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex
const CONTROL_OR_NEWLINE = /[\u0000-\u001f\u007f]/;

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.\d{1,3})?)?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/;

/** A real calendar day (2025-02-30 is not one, although Date.parse says March 2nd). */
function realDay(y: string, m: string, d: string): boolean {
  const date = new Date(Date.UTC(Number(y), Number(m) - 1, Number(d)));
  return date.getUTCFullYear() === Number(y) && date.getUTCMonth() === Number(m) - 1 && date.getUTCDate() === Number(d);
}

/** `YYYY-MM-DD` (midnight UTC) or a full ISO 8601 date-time with `Z` or an offset → epoch ms. */
export function parseIsoDate(text: string): number | null {
  const day = DATE_ONLY.exec(text) ?? DATE_TIME.exec(text);
  if (!day || !realDay(day[1]!, day[2]!, day[3]!)) return null;
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : null;
}

const isoDate = (field: string) =>
  z
    .string({ error: `${field} must be one ISO 8601 date` })
    .max(40, `${field} must be an ISO 8601 date such as 2025-03-01 or 2025-03-01T08:00:00Z`)
    .transform((text, ctx) => {
      const ms = parseIsoDate(text);
      if (ms === null) {
        ctx.addIssue({ code: 'custom', message: `${field} must be an ISO 8601 date such as 2025-03-01 or 2025-03-01T08:00:00+01:00 (with Z or an offset)` });
        return z.NEVER;
      }
      return ms;
    });

const ListQuery = z.strictObject(
  {
    status: z.enum(STATUS_FILTERS, { error: `status must be one of ${STATUS_FILTERS.join(', ')}` }).optional(),
    type: z.enum(FOLLOW_UP_TYPES, { error: `type must be one of ${FOLLOW_UP_TYPES.join(', ')}` }).optional(),
    from: isoDate('from').optional(),
    to: isoDate('to').optional(),
    clinic: z
      .string({ error: 'clinic must be one clinic id' })
      .regex(/^[a-z0-9][a-z0-9-]{1,62}$/, 'clinic must be a clinic id (lower-case letters, digits and dashes)')
      .optional(),
    limit: z
      .string({ error: 'limit must be one number' })
      .regex(/^\d{1,4}$/, `limit must be a whole number from 1 to ${LIST_LIMIT_MAX}`)
      .transform(Number)
      .refine((n) => n >= 1 && n <= LIST_LIMIT_MAX, `limit must be a whole number from 1 to ${LIST_LIMIT_MAX}`)
      .optional(),
  },
  { error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown parameter; use status, type, from, to, clinic or limit` : undefined) },
);

const ChangeBody = z
  .strictObject(
    {
      status: z.enum(FOLLOW_UP_STATUSES, { error: `status must be one of ${FOLLOW_UP_STATUSES.join(', ')}` }).optional(),
      note: z
        .string({ error: 'note must be text' })
        .trim()
        .min(1, 'note must not be empty')
        .max(NOTE_MAX, `note must be at most ${NOTE_MAX} characters`)
        .refine((s) => !CONTROL.test(s), 'note must not contain control characters')
        .optional(),
      handledBy: z
        .string({ error: 'handledBy must be text (the staff member\'s name)' })
        .trim()
        .min(1, 'handledBy must not be empty (leave it out instead)')
        .max(HANDLED_BY_MAX, `handledBy must be at most ${HANDLED_BY_MAX} characters`)
        .refine((s) => !CONTROL_OR_NEWLINE.test(s), 'handledBy must be one line of text')
        .optional(),
    },
    { error: (issue) => (issue.code === 'unrecognized_keys' ? 'unknown field; send status, note and/or handledBy' : issue.code === 'invalid_type' ? 'send a JSON object such as {"status":"in_progress","handledBy":"Sam"}' : undefined) },
  )
  .refine((c) => c.status !== undefined || c.note !== undefined, 'send status, note, or both');

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? issue.message : 'invalid request';
}

export function parseListQuery(query: unknown): Parsed<ListFilter> {
  const r = ListQuery.safeParse(query ?? {});
  if (!r.success) return { ok: false, message: firstIssue(r.error) };
  const q = r.data;
  if (q.from !== undefined && q.to !== undefined && q.from >= q.to) return { ok: false, message: 'from must be before to (to is exclusive)' };
  return {
    ok: true,
    value: {
      status: q.status ?? 'all',
      type: q.type ?? null,
      from: q.from ?? null,
      to: q.to ?? null,
      clinic: q.clinic ?? null,
      limit: q.limit ?? LIST_LIMIT_DEFAULT,
    },
  };
}

export function parseChange(body: unknown): Parsed<FollowUpChange> {
  const r = ChangeBody.safeParse(body);
  if (!r.success) return { ok: false, message: firstIssue(r.error) };
  const change: FollowUpChange = {};
  if (r.data.status !== undefined) change.status = r.data.status;
  if (r.data.note !== undefined) change.note = r.data.note;
  if (r.data.handledBy !== undefined) change.handledBy = r.data.handledBy;
  return { ok: true, value: change };
}

/** Follow-up ids are UUIDs; CallSids and RecordingSids are Twilio's 34-character ids. Bounded either way. */
const ID = /^[A-Za-z0-9_-]{1,64}$/;
export const validId = (id: string): boolean => ID.test(id);
