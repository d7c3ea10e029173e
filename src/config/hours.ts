/**
 * Open or closed, from a clinic's structured `hours` (src/config/tenant.schema.ts), computed in the
 * clinic's own time zone. Pure: the instant is an argument, nothing here reads the clock. Intl only.
 *
 * Opening times are local wall-clock times. Each day's intervals become real instants through the
 * zone's offset on that date (found with Intl.DateTimeFormat#formatToParts), so DST is handled:
 * a time the clocks skip (02:30 on a spring-forward day) means the moment the clocks jump; a time
 * that happens twice (01:30 on a fall-back day) opens at its first and closes at its second
 * occurrence; "24:00" is the next day's midnight. A closure closes its whole local date.
 * See docs/hours.md.
 */
import { minutesOf, WEEKDAYS } from './tenant.schema.js';
import type { ClinicHours } from './tenant.schema.js';

export type { ClinicHours } from './tenant.schema.js';

/** How many days after today `hoursState` looks for the next opening (and for the current closing). */
export const HOURS_HORIZON_DAYS = 14;

export interface HoursState {
  open: boolean;
  /** While open: when this opening ends (epoch ms); null when closed or open past the horizon. */
  closesAt: number | null;
  /**
   * The next opening strictly after `at` (epoch ms), closures skipped, within HOURS_HORIZON_DAYS
   * after today; null if none. While open, that is the opening after the current one closes.
   */
  nextOpen: { at: number } | null;
  /** Today's (local date's) closure, if today is one. */
  closure: { date: string; reason: string | null } | null;
}

/** What the caller asked: "are you open (now)", "…today", "…tomorrow". */
export type OpenQuestion = 'now' | 'today' | 'tomorrow';

const MINUTE = 60_000;
const DAY = 86_400_000;

/** True when the clinic is open at `at` (epoch ms). No structured hours: always open. */
export function openAt(hours: ClinicHours | undefined, at: number): boolean {
  if (!hours) return true;
  const today = dayOf(wallMs(hours.timeZone, at));
  return periods(hours, today - 1, today).some((p) => p.start <= at && at < p.end);
}

/** Open now?, until when, when next, and today's closure. No structured hours: open, no closing known. */
export function hoursState(hours: ClinicHours | undefined, at: number): HoursState {
  if (!hours) return { open: true, closesAt: null, nextOpen: null, closure: null };
  const { timeZone } = hours;
  const today = dayOf(wallMs(timeZone, at));
  const horizon = instantOf(timeZone, (today + HOURS_HORIZON_DAYS + 1) * DAY, 'earliest');
  const list = periods(hours, today - 1, today + HOURS_HORIZON_DAYS);
  const current = list.find((p) => p.start <= at && at < p.end);
  const next = list.find((p) => p.start > at && p.start < horizon);
  const closure = closureOn(hours, today);
  return {
    open: current !== undefined,
    closesAt: current && current.end < horizon ? current.end : null,
    nextOpen: next ? { at: next.start } : null,
    closure: closure ? { date: closure.date, reason: closure.reason ?? null } : null,
  };
}

/**
 * What the receptionist says to "are you open (now / today / tomorrow)?", in the clinic's time zone:
 * "Yes, we're open now until 6 PM." / "We're closed right now. We open again tomorrow at 8 AM." /
 * "Tomorrow we're open from 8 AM to 6 PM." / "We're closed tomorrow for Christmas Day. We open again
 * on Monday at 8 AM." Without structured hours (always open) the answers are a plain yes; the engine
 * speaks `info.hours` for such clinics.
 */
export function spokenOpenAnswer(hours: ClinicHours | undefined, at: number, question: OpenQuestion): string {
  if (!hours) return `Yes, we're open ${question}.`;
  const { timeZone } = hours;
  const today = dayOf(wallMs(timeZone, at));
  const todays = dayPeriods(hours, today);
  const say = new Speaker(timeZone, today);

  if (question === 'tomorrow') {
    const tomorrows = dayPeriods(hours, today + 1);
    if (tomorrows.length > 0) return `Tomorrow we're open ${say.ranges(tomorrows)}.`;
    const closure = closureOn(hours, today + 1);
    const afterTomorrow = instantOf(timeZone, (today + 2) * DAY, 'earliest');
    const next = hoursState(hours, afterTomorrow - 1).nextOpen; // horizon counted from tomorrow
    const nextWithin = next && dayOf(wallMs(timeZone, next.at)) <= today + HOURS_HORIZON_DAYS ? next : null;
    return `We're closed tomorrow${reasonOf(closure)}. ${say.reopening(nextWithin, true)}`;
  }

  const state = hoursState(hours, at);
  const again = !(state.nextOpen && state.nextOpen.at === todays[0]?.start);
  if (question === 'now') {
    if (state.open) return state.closesAt === null ? "Yes, we're open now." : `Yes, we're open now ${say.until(state.closesAt)}.`;
    const lead = state.closure ? `We're closed today${reasonOf(state.closure)}.` : "We're closed right now.";
    return `${lead} ${say.reopening(state.nextOpen, again)}`;
  }

  // today
  if (todays.length === 0) return `We're closed today${reasonOf(state.closure)}. ${say.reopening(state.nextOpen, true)}`;
  const rest = todays.filter((p) => p.end > at);
  const [first, ...later] = rest;
  if (!first) return `We're closed for the rest of today. ${say.reopening(state.nextOpen, true)}`;
  if (first.start <= at) {
    const more = later.length > 0 ? `, and again ${say.ranges(later)}` : '';
    return `Yes, we're open today until ${say.time(first.end, 'end')}${more}.`;
  }
  return `Today we're open${rest.length < todays.length ? ' again' : ''} ${say.ranges(rest)}.`;
}

// ---------------------------------------------------------------------------------------------
// Periods: a day's opening intervals as instants.

interface Period {
  start: number;
  end: number;
}

type Closure = ClinicHours['closures'][number];

const closureOn = (hours: ClinicHours, day: number): Closure | undefined => {
  const date = dateOf(day);
  return hours.closures.find((c) => c.date === date);
};

const reasonOf = (closure: { reason?: string | null | undefined } | undefined | null) => (closure?.reason ? ` for ${closure.reason}` : '');

/** One local date's opening intervals as instants, in order, touching ones merged; [] on a closure. */
function dayPeriods(hours: ClinicHours, day: number): Period[] {
  if (closureOn(hours, day)) return [];
  const out: Period[] = [];
  for (const { open, close } of hours.weekly[weekdayOf(day)] ?? []) {
    const start = instantOf(hours.timeZone, day * DAY + minutesOf(open) * MINUTE, 'earliest');
    const end = instantOf(hours.timeZone, day * DAY + minutesOf(close) * MINUTE, 'latest');
    if (end > start) out.push({ start, end }); // empty when both ends fall in a DST gap
  }
  return merged(out);
}

/** Opening periods of local dates fromDay..toDay, merged across midnight (a "24:00" then an "00:00"). */
function periods(hours: ClinicHours, fromDay: number, toDay: number): Period[] {
  const all: Period[] = [];
  for (let day = fromDay; day <= toDay; day++) all.push(...dayPeriods(hours, day));
  return merged(all);
}

function merged(list: Period[]): Period[] {
  const out: Period[] = [];
  for (const p of [...list].sort((a, b) => a.start - b.start)) {
    const last = out.at(-1);
    if (last && p.start <= last.end) last.end = Math.max(last.end, p.end);
    else out.push({ ...p });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Wall clock ↔ instant. A "wall" value is the local reading expressed as epoch ms as if it were UTC:
// wall = instant + offset. Local dates are day numbers: floor(wall / DAY) (0 = 1970-01-01).

const formats = new Map<string, Intl.DateTimeFormat>();

function formatFor(timeZone: string): Intl.DateTimeFormat {
  let format = formats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23', // never "24" at midnight
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formats.set(timeZone, format);
  }
  return format;
}

/** The zone's wall-clock reading at `at`, as wall ms. */
function wallMs(timeZone: string, at: number): number {
  const fields: Partial<Record<Intl.DateTimeFormatPartTypes, number>> = {};
  for (const part of formatFor(timeZone).formatToParts(at)) {
    if (part.type !== 'literal') fields[part.type] = Number(part.value);
  }
  const { year = NaN, month = NaN, day = NaN, hour = NaN, minute = NaN, second = NaN } = fields;
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day); // not Date.UTC: it maps years 0-99 to 1900-1999
  date.setUTCHours(hour, minute, second, ((at % 1000) + 1000) % 1000);
  return date.getTime();
}

/**
 * The instant at which the zone's clock reads `wall`. Ambiguous readings (clocks set back) give
 * their earliest or latest occurrence as asked; skipped readings (clocks set forward) give the
 * instant of the jump, the first moment the clock reads later than `wall`.
 */
function instantOf(timeZone: string, wall: number, pick: 'earliest' | 'latest'): number {
  const steady = steadyOffset(timeZone, dayOf(wall - 1)); // "24:00" belongs to the day before
  if (steady !== null) return wall - steady;
  // Offsets in force around this reading; a day either side brackets any single transition.
  const offsets = [...new Set([wall - DAY, wall, wall + DAY].map((t) => wallMs(timeZone, t) - t))];
  const fits = offsets.map((offset) => wall - offset).filter((at) => wallMs(timeZone, at) === wall);
  if (fits.length > 0) return pick === 'earliest' ? Math.min(...fits) : Math.max(...fits);
  // In a gap: before the jump the clock reads earlier than `wall`, after it later. Bisect to the ms.
  let before = wall - Math.max(...offsets);
  let after = wall - Math.min(...offsets);
  if (!(wallMs(timeZone, before) < wall && wallMs(timeZone, after) > wall)) return wall - (wallMs(timeZone, wall) - wall);
  while (after - before > 1) {
    const mid = Math.floor((before + after) / 2);
    if (wallMs(timeZone, mid) > wall) after = mid;
    else before = mid;
  }
  return after;
}

const HOUR = 3_600_000;
const HALF_DAY = DAY / 2;
const sampled = new Map<string, number>();

/** The zone's offset at instant k × 12 h (memoized: formatToParts is the expensive part here). */
function sampledOffset(timeZone: string, k: number): number {
  const key = `${timeZone} ${k}`;
  let offset = sampled.get(key);
  if (offset === undefined) {
    if (sampled.size >= 50_000) sampled.clear();
    offset = wallMs(timeZone, k * HALF_DAY) - k * HALF_DAY;
    sampled.set(key, offset);
  }
  return offset;
}

/**
 * The zone's offset throughout local date `day` (its 00:00 to its 24:00), or null when it changes.
 * Offsets lie within -12 h..+14 h, so that date's instants lie within the sampled span; this
 * assumes no zone changes its offset and back within 12 h (none does).
 */
function steadyOffset(timeZone: string, day: number): number | null {
  const first = Math.floor((day * DAY - 16 * HOUR) / HALF_DAY);
  const last = Math.ceil(((day + 1) * DAY + 16 * HOUR) / HALF_DAY);
  const offset = sampledOffset(timeZone, first);
  for (let k = first + 1; k <= last; k++) if (sampledOffset(timeZone, k) !== offset) return null;
  return offset;
}

const dayOf = (wall: number) => Math.floor(wall / DAY);
const weekdayIndex = (day: number) => (((day + 4) % 7) + 7) % 7; // 1970-01-01 was a Thursday
const weekdayOf = (day: number) => WEEKDAYS[weekdayIndex(day)] ?? 'sun';
const dateOf = (day: number) => new Date(day * DAY).toISOString().slice(0, 10);

// ---------------------------------------------------------------------------------------------
// Speaking times and days.

const WEEKDAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'] as const;
const MONTH_NAMES = [
  'January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December',
] as const;

/** "8 AM", "12:30 PM", "noon", "midnight". */
function spokenClock(minuteOfDay: number): string {
  if (minuteOfDay === 0) return 'midnight';
  if (minuteOfDay === 720) return 'noon';
  const hour = Math.floor(minuteOfDay / 60);
  const minute = minuteOfDay % 60;
  const h12 = hour % 12 === 0 ? 12 : hour % 12;
  return `${h12}${minute === 0 ? '' : `:${String(minute).padStart(2, '0')}`} ${hour < 12 ? 'AM' : 'PM'}`;
}

/** Phrases relative to `today` (the local date of the question), in one zone. */
class Speaker {
  constructor(
    private readonly timeZone: string,
    private readonly today: number,
  ) {}

  /** Local date and minute of day of an instant. A closing at midnight belongs to the day before. */
  private local(at: number, as: 'start' | 'end'): { day: number; minute: number } {
    const wall = wallMs(this.timeZone, at);
    const day = dayOf(wall);
    const minute = Math.floor((wall - day * DAY) / MINUTE);
    return as === 'end' && minute === 0 ? { day: day - 1, minute: 0 } : { day, minute };
  }

  time(at: number, as: 'start' | 'end'): string {
    return spokenClock(this.local(at, as).minute);
  }

  /** "Monday", or "Monday, January 11" a week or more ahead (the weekday alone would be ambiguous). */
  private dayName(day: number): string {
    const weekday = WEEKDAY_NAMES[weekdayIndex(day)] ?? '';
    if (day - this.today < 7) return weekday;
    const date = new Date(day * DAY);
    return `${weekday}, ${MONTH_NAMES[date.getUTCMonth()] ?? ''} ${date.getUTCDate()}`;
  }

  /** "until 6 PM", "until midnight", "until 1 PM tomorrow", "until Monday at 6 PM". */
  until(at: number): string {
    const { day, minute } = this.local(at, 'end');
    const time = spokenClock(minute);
    const ahead = day - this.today;
    if (ahead <= 0) return `until ${time}`;
    if (ahead === 1) return `until ${time} tomorrow`;
    return `until ${this.dayName(day)} at ${time}`;
  }

  /** "today at 1 PM", "tomorrow at 8 AM", "on Monday at 8 AM", "at midnight tonight". */
  private when(at: number): string {
    const { day, minute } = this.local(at, 'start');
    const ahead = day - this.today;
    if (minute === 0 && ahead >= 1) {
      // An opening at 00:00 is spoken as the night before: "tomorrow at midnight" is ambiguous.
      if (ahead === 1) return 'at midnight tonight';
      if (ahead === 2) return 'at midnight tomorrow night';
      return `at midnight on ${this.dayName(day - 1)} night`;
    }
    const time = spokenClock(minute);
    if (ahead <= 0) return `today at ${time}`;
    if (ahead === 1) return `tomorrow at ${time}`;
    return `on ${this.dayName(day)} at ${time}`;
  }

  /** "We open again tomorrow at 8 AM." (or "We open today at 8 AM." before the day's first opening). */
  reopening(next: { at: number } | null, again: boolean): string {
    if (!next) return `We're not scheduled to open again in the next ${HOURS_HORIZON_DAYS} days.`;
    return `We open ${again ? 'again ' : ''}${this.when(next.at)}.`;
  }

  /** "from 9 AM to noon and from 1 PM to 3 PM", "all day". */
  ranges(list: readonly Period[]): string {
    const spoken = list.map((p) => {
      const start = this.local(p.start, 'start');
      const end = this.local(p.end, 'end');
      if (start.minute === 0 && end.minute === 0 && end.day === start.day) return 'all day';
      return `from ${spokenClock(start.minute)} to ${spokenClock(end.minute)}`;
    });
    return spoken.length <= 1 ? (spoken[0] ?? '') : `${spoken.slice(0, -1).join(', ')} and ${spoken.at(-1) ?? ''}`;
  }
}
