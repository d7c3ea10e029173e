import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hoursState, HOURS_HORIZON_DAYS, openAt, spokenOpenAnswer } from '../../src/config/hours.js';
import type { OpenQuestion } from '../../src/config/hours.js';
import { ClinicHours } from '../../src/config/tenant.schema.js';

/** An instant from an ISO string with an explicit offset: no test reads the real clock. */
const at = (iso: string) => {
  expect(iso).toMatch(/(Z|[+-]\d\d:\d\d)$/);
  return Date.parse(iso);
};
const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());

const weekdays = (open: string, close: string) =>
  Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri'].map((d) => [d, [{ open, close }]]));

/** Riverside-like: Mon–Fri 8–6, Saturday 9–12 and 1–3, closed Sunday and Christmas. */
const chicago = ClinicHours.parse({
  timeZone: 'America/Chicago',
  weekly: {
    ...weekdays('08:00', '18:00'),
    sat: [{ open: '09:00', close: '12:00' }, { open: '13:00', close: '15:00' }],
  },
  closures: [{ date: '2026-12-25', reason: 'Christmas Day' }, { date: '2026-12-31' }],
});

const state = (hours: ClinicHours | undefined, when: number) => {
  const s = hoursState(hours, when);
  return { open: s.open, closesAt: iso(s.closesAt), nextOpen: iso(s.nextOpen?.at), closure: s.closure };
};

describe('openAt / hoursState', () => {
  it('no structured hours means always open (today’s behaviour)', () => {
    expect(openAt(undefined, at('2026-12-25T03:00:00Z'))).toBe(true);
    expect(hoursState(undefined, 0)).toEqual({ open: true, closesAt: null, nextOpen: null, closure: null });
  });

  it('opens at `open` and closes at `close` (half-open), in the clinic’s zone', () => {
    // Monday 2026-12-07, CST (UTC-6).
    expect(state(chicago, at('2026-12-07T07:59:59.999-06:00'))).toEqual({
      open: false, closesAt: null, nextOpen: '2026-12-07T14:00:00.000Z', closure: null,
    });
    expect(state(chicago, at('2026-12-07T08:00:00-06:00'))).toEqual({
      open: true, closesAt: '2026-12-08T00:00:00.000Z', nextOpen: '2026-12-08T14:00:00.000Z', closure: null,
    });
    expect(openAt(chicago, at('2026-12-07T17:59:59.999-06:00'))).toBe(true);
    expect(openAt(chicago, at('2026-12-07T18:00:00-06:00'))).toBe(false);
  });

  it('uses the local weekday, not the UTC one', () => {
    // Saturday 2026-12-12 20:00 in Chicago is already Sunday in UTC; Sunday 23:00 is Monday in UTC.
    expect(state(chicago, at('2026-12-12T20:00:00-06:00')).nextOpen).toBe('2026-12-14T14:00:00.000Z');
    expect(openAt(chicago, at('2026-12-13T09:00:00-06:00'))).toBe(false); // Sunday
    // Sydney is ahead of UTC: Monday 08:30 there is Sunday 21:30 UTC.
    const sydney = ClinicHours.parse({ timeZone: 'Australia/Sydney', weekly: weekdays('08:00', '18:00') });
    expect(openAt(sydney, at('2026-12-06T21:30:00Z'))).toBe(true);
    expect(openAt(sydney, at('2026-12-05T21:30:00Z'))).toBe(false); // Sunday 08:30 in Sydney
  });

  it('crosses midnight: 23:59 → 00:00 local, with "24:00" and "00:00" merging into one opening', () => {
    const overnight = ClinicHours.parse({
      timeZone: 'America/Chicago',
      weekly: { thu: [{ open: '18:00', close: '24:00' }], fri: [{ open: '00:00', close: '08:00' }], sat: [{ open: '20:00', close: '24:00' }] },
    });
    // Thursday 2026-12-10 23:59 local (Friday 05:59 UTC): open, and it closes Friday 08:00, not at midnight.
    expect(state(overnight, at('2026-12-10T23:59:00-06:00'))).toMatchObject({ open: true, closesAt: '2026-12-11T14:00:00.000Z' });
    expect(state(overnight, at('2026-12-11T00:00:00-06:00'))).toMatchObject({ open: true, closesAt: '2026-12-11T14:00:00.000Z' });
    expect(spokenOpenAnswer(overnight, at('2026-12-10T23:59:00-06:00'), 'now')).toBe("Yes, we're open now until 8 AM tomorrow.");
    // Saturday closes at "24:00" and Sunday is closed: open at 23:59, closed at 00:00.
    expect(state(overnight, at('2026-12-12T23:59:00-06:00'))).toMatchObject({ open: true, closesAt: '2026-12-13T06:00:00.000Z' });
    expect(spokenOpenAnswer(overnight, at('2026-12-12T23:59:00-06:00'), 'now')).toBe("Yes, we're open now until midnight.");
    expect(state(overnight, at('2026-12-13T00:00:00-06:00'))).toMatchObject({ open: false, nextOpen: '2026-12-18T00:00:00.000Z' });
  });

  it('spring forward (America/New_York 2026-03-08: 02:00 EST → 03:00 EDT)', () => {
    const ny = ClinicHours.parse({
      timeZone: 'America/New_York',
      weekly: { ...weekdays('08:00', '18:00'), sun: [{ open: '02:30', close: '05:00' }] },
    });
    // Friday 08:00 is EST (UTC-5), Monday 08:00 is EDT (UTC-4).
    expect(state(ny, at('2026-03-06T08:00:00-05:00'))).toMatchObject({ open: true, closesAt: '2026-03-06T23:00:00.000Z' });
    expect(state(ny, at('2026-03-09T08:00:00-04:00'))).toMatchObject({ open: true, closesAt: '2026-03-09T22:00:00.000Z' });
    // 02:30 never happens that Sunday: the clinic opens when the clocks jump (07:00 UTC, reading 03:00).
    expect(state(ny, at('2026-03-08T01:59:00-05:00'))).toMatchObject({ open: false, nextOpen: '2026-03-08T07:00:00.000Z' });
    expect(state(ny, at('2026-03-08T03:00:00-04:00'))).toMatchObject({ open: true, closesAt: '2026-03-08T09:00:00.000Z' });
    expect(spokenOpenAnswer(ny, at('2026-03-08T01:00:00-05:00'), 'now')).toBe("We're closed right now. We open today at 3 AM.");
    // Saturday evening: the next opening is found across the change.
    expect(state(ny, at('2026-03-07T20:00:00-05:00')).nextOpen).toBe('2026-03-08T07:00:00.000Z');

    const allDay = ClinicHours.parse({ timeZone: 'America/New_York', weekly: { sun: [{ open: '00:00', close: '24:00' }] } });
    const sunday = hoursState(allDay, at('2026-03-08T12:00:00-04:00'));
    expect(iso(sunday.closesAt)).toBe('2026-03-09T04:00:00.000Z');
    expect((sunday.closesAt ?? 0) - at('2026-03-08T00:00:00-05:00')).toBe(23 * 3_600_000); // a 23-hour day
  });

  it('fall back (America/New_York 2026-11-01: 02:00 EDT → 01:00 EST)', () => {
    const allDay = ClinicHours.parse({ timeZone: 'America/New_York', weekly: { sun: [{ open: '00:00', close: '24:00' }] } });
    const sunday = hoursState(allDay, at('2026-11-01T23:30:00-05:00'));
    expect(sunday).toMatchObject({ open: true, closesAt: at('2026-11-02T00:00:00-05:00') });
    expect((sunday.closesAt ?? 0) - at('2026-11-01T00:00:00-04:00')).toBe(25 * 3_600_000); // a 25-hour day
    expect(spokenOpenAnswer(allDay, at('2026-11-01T12:00:00-05:00'), 'today')).toBe("Yes, we're open today until midnight.");

    // 01:30 happens twice: an opening counts from the first, a closing to the second.
    const early = ClinicHours.parse({ timeZone: 'America/New_York', weekly: { sun: [{ open: '01:30', close: '03:00' }] } });
    expect(state(early, at('2026-11-01T01:29:00-04:00'))).toMatchObject({ open: false, nextOpen: '2026-11-01T05:30:00.000Z' });
    expect(state(early, at('2026-11-01T01:30:00-04:00'))).toMatchObject({ open: true, closesAt: '2026-11-01T08:00:00.000Z' });
    const late = ClinicHours.parse({ timeZone: 'America/New_York', weekly: { sun: [{ open: '00:00', close: '01:30' }] } });
    expect(openAt(late, at('2026-11-01T01:45:00-04:00'))).toBe(true); // first 01:45, before the second 01:30
    expect(openAt(late, at('2026-11-01T01:15:00-05:00'))).toBe(true);
    expect(state(late, at('2026-11-01T01:00:00-04:00')).closesAt).toBe('2026-11-01T06:30:00.000Z');
    expect(openAt(late, at('2026-11-01T01:30:00-05:00'))).toBe(false);
  });

  it('southern hemisphere (Australia/Sydney: +10 → +11 on 2026-10-04, back on 2026-04-05)', () => {
    const sydney = ClinicHours.parse({
      timeZone: 'Australia/Sydney',
      weekly: { ...weekdays('08:00', '18:00'), sun: [{ open: '02:30', close: '04:00' }] },
    });
    // Friday 2026-10-02 19:00 AEST: next is Monday 08:00 AEDT — but first Sunday 02:30, which is skipped to 03:00 AEDT.
    expect(state(sydney, at('2026-10-02T19:00:00+10:00')).nextOpen).toBe('2026-10-03T16:00:00.000Z');
    expect(state(sydney, at('2026-10-04T04:00:00+11:00')).nextOpen).toBe('2026-10-04T21:00:00.000Z'); // Monday 08:00 +11
    expect(state(sydney, at('2026-10-05T08:00:00+11:00'))).toMatchObject({ open: true, closesAt: '2026-10-05T07:00:00.000Z' });
    // April: 02:30 happens twice; the opening is the first (AEDT), the close at 04:00 AEST.
    expect(state(sydney, at('2026-04-05T02:00:00+11:00'))).toMatchObject({ open: false, nextOpen: '2026-04-04T15:30:00.000Z' });
    expect(state(sydney, at('2026-04-05T02:45:00+10:00'))).toMatchObject({ open: true, closesAt: '2026-04-04T18:00:00.000Z' });
    expect(spokenOpenAnswer(sydney, at('2026-10-02T19:00:00+10:00'), 'tomorrow')).toBe("We're closed tomorrow. We open again on Sunday at 3 AM.");
  });

  it('closures close the whole local date and are reported with their reason', () => {
    // Christmas is a Friday: closed all day, open again Saturday 09:00.
    expect(state(chicago, at('2026-12-25T10:00:00-06:00'))).toEqual({
      open: false, closesAt: null, nextOpen: '2026-12-26T15:00:00.000Z', closure: { date: '2026-12-25', reason: 'Christmas Day' },
    });
    expect(state(chicago, at('2026-12-24T19:00:00-06:00'))).toMatchObject({ closure: null, nextOpen: '2026-12-26T15:00:00.000Z' });
    expect(state(chicago, at('2026-12-31T09:00:00-06:00')).closure).toEqual({ date: '2026-12-31', reason: null });
    // A closure before a "24:00"/"00:00" pair closes only its own date.
    const overnight = ClinicHours.parse({
      timeZone: 'America/Chicago',
      weekly: { thu: [{ open: '18:00', close: '24:00' }], fri: [{ open: '00:00', close: '08:00' }] },
      closures: [{ date: '2026-12-24', reason: 'Christmas Eve' }],
    });
    expect(state(overnight, at('2026-12-24T20:00:00-06:00'))).toMatchObject({ open: false, nextOpen: '2026-12-25T06:00:00.000Z' });
    expect(openAt(overnight, at('2026-12-25T00:00:00-06:00'))).toBe(true);
  });

  it('looks 14 days ahead at most; open round the clock has no closing time', () => {
    const never = ClinicHours.parse({ timeZone: 'Europe/London', weekly: {} });
    expect(state(never, at('2026-06-01T12:00:00Z'))).toEqual({ open: false, closesAt: null, nextOpen: null, closure: null });
    const always = ClinicHours.parse({
      timeZone: 'Europe/London',
      weekly: Object.fromEntries(['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'].map((d) => [d, [{ open: '00:00', close: '24:00' }]])),
    });
    expect(state(always, at('2026-06-01T12:00:00Z'))).toEqual({ open: true, closesAt: null, nextOpen: null, closure: null });
    expect(spokenOpenAnswer(always, at('2026-06-01T12:00:00Z'), 'now')).toBe("Yes, we're open now.");
    expect(spokenOpenAnswer(always, at('2026-06-01T12:00:00Z'), 'tomorrow')).toBe("Tomorrow we're open all day.");

    const far = ClinicHours.parse({
      timeZone: 'Europe/London',
      weekly: { mon: [{ open: '09:00', close: '17:00' }] },
      closures: [{ date: '2026-06-08' }, { date: '2026-06-15' }],
    });
    // Monday 2026-06-01 18:00: the 8th and 15th are closed, the 22nd is 21 days away.
    expect(state(far, at('2026-06-01T18:00:00+01:00')).nextOpen).toBeNull();
    expect(HOURS_HORIZON_DAYS).toBe(14);
    expect(spokenOpenAnswer(far, at('2026-06-01T18:00:00+01:00'), 'now')).toBe(
      "We're closed right now. We're not scheduled to open again in the next 14 days.",
    );
    // Sunday 2026-06-07: the 22nd is 15 days ahead, just past the horizon; from the 8th it is 14.
    expect(state(far, at('2026-06-07T09:00:00+01:00')).nextOpen).toBeNull();
    expect(state(far, at('2026-06-08T09:00:00+01:00')).nextOpen).toBe('2026-06-22T08:00:00.000Z');
  });
});

describe('spokenOpenAnswer', () => {
  const ask = (when: string, question: OpenQuestion, hours: ClinicHours = chicago) => spokenOpenAnswer(hours, at(when), question);

  it('"are you open now?"', () => {
    expect(ask('2026-12-07T10:00:00-06:00', 'now')).toBe("Yes, we're open now until 6 PM.");
    expect(ask('2026-12-07T19:00:00-06:00', 'now')).toBe("We're closed right now. We open again tomorrow at 8 AM.");
    expect(ask('2026-12-08T06:30:00-06:00', 'now')).toBe("We're closed right now. We open today at 8 AM.");
    expect(ask('2026-12-12T10:00:00-06:00', 'now')).toBe("Yes, we're open now until noon.");
    expect(ask('2026-12-12T12:30:00-06:00', 'now')).toBe("We're closed right now. We open again today at 1 PM.");
    expect(ask('2026-12-12T16:00:00-06:00', 'now')).toBe("We're closed right now. We open again on Monday at 8 AM.");
    expect(ask('2026-12-25T10:00:00-06:00', 'now')).toBe("We're closed today for Christmas Day. We open again tomorrow at 9 AM.");
    expect(ask('2026-12-31T10:00:00-06:00', 'now')).toBe("We're closed today. We open again tomorrow at 8 AM.");
  });

  it('"are you open today?"', () => {
    expect(ask('2026-12-07T06:00:00-06:00', 'today')).toBe("Today we're open from 8 AM to 6 PM.");
    expect(ask('2026-12-07T10:00:00-06:00', 'today')).toBe("Yes, we're open today until 6 PM.");
    expect(ask('2026-12-07T19:00:00-06:00', 'today')).toBe("We're closed for the rest of today. We open again tomorrow at 8 AM.");
    expect(ask('2026-12-12T08:00:00-06:00', 'today')).toBe("Today we're open from 9 AM to noon and from 1 PM to 3 PM.");
    expect(ask('2026-12-12T10:00:00-06:00', 'today')).toBe("Yes, we're open today until noon, and again from 1 PM to 3 PM.");
    expect(ask('2026-12-12T12:15:00-06:00', 'today')).toBe("Today we're open again from 1 PM to 3 PM.");
    expect(ask('2026-12-13T10:00:00-06:00', 'today')).toBe("We're closed today. We open again tomorrow at 8 AM.");
    expect(ask('2026-12-25T10:00:00-06:00', 'today')).toBe("We're closed today for Christmas Day. We open again tomorrow at 9 AM.");
  });

  it('"are you open tomorrow?"', () => {
    expect(ask('2026-12-07T10:00:00-06:00', 'tomorrow')).toBe("Tomorrow we're open from 8 AM to 6 PM.");
    expect(ask('2026-12-11T10:00:00-06:00', 'tomorrow')).toBe("Tomorrow we're open from 9 AM to noon and from 1 PM to 3 PM.");
    expect(ask('2026-12-12T10:00:00-06:00', 'tomorrow')).toBe("We're closed tomorrow. We open again on Monday at 8 AM.");
    expect(ask('2026-12-24T10:00:00-06:00', 'tomorrow')).toBe("We're closed tomorrow for Christmas Day. We open again on Saturday at 9 AM.");
    // Just after midnight, "tomorrow" is the next local date, not the rest of the night.
    expect(ask('2026-12-08T00:05:00-06:00', 'tomorrow')).toBe("Tomorrow we're open from 8 AM to 6 PM.");
    const weekdaysOnly = ClinicHours.parse({
      timeZone: 'America/Chicago',
      weekly: weekdays('08:00', '18:00'),
      closures: [{ date: '2026-12-25', reason: 'Christmas Day' }],
    });
    expect(ask('2026-12-24T10:00:00-06:00', 'tomorrow', weekdaysOnly)).toBe("We're closed tomorrow for Christmas Day. We open again on Monday at 8 AM.");
  });

  it('speaks times as people do: 8 AM, 12:30 PM, noon, midnight; dates a week or more ahead', () => {
    const odd = ClinicHours.parse({
      timeZone: 'America/Chicago',
      weekly: { mon: [{ open: '07:45', close: '12:30' }, { open: '12:30', close: '24:00' }], tue: [{ open: '00:00', close: '00:30' }] },
      closures: [{ date: '2026-12-21' }, { date: '2026-12-22' }],
    });
    // Touching intervals are one opening.
    expect(ask('2026-12-07T06:00:00-06:00', 'today', odd)).toBe("Today we're open from 7:45 AM to midnight.");
    expect(ask('2026-12-07T23:00:00-06:00', 'now', odd)).toBe("Yes, we're open now until 12:30 AM tomorrow.");
    expect(ask('2026-12-08T01:00:00-06:00', 'now', odd)).toBe("We're closed right now. We open again on Monday at 7:45 AM.");
    expect(ask('2026-12-14T01:00:00-06:00', 'tomorrow', odd)).toBe("Tomorrow we're open from midnight to 12:30 AM.");
    // From Tuesday the 15th, the 21st and 22nd are closed: Monday the 28th is more than a week away.
    expect(ask('2026-12-15T01:00:00-06:00', 'now', odd)).toBe("We're closed right now. We open again on Monday, December 28 at 7:45 AM.");

    const nights = ClinicHours.parse({ timeZone: 'America/Chicago', weekly: { wed: [{ open: '00:00', close: '06:00' }], sat: [{ open: '00:00', close: '06:00' }] } });
    expect(ask('2026-12-08T20:00:00-06:00', 'now', nights)).toBe("We're closed right now. We open again at midnight tonight.");
    expect(ask('2026-12-07T20:00:00-06:00', 'now', nights)).toBe("We're closed right now. We open again at midnight tomorrow night.");
    expect(ask('2026-12-09T20:00:00-06:00', 'now', nights)).toBe("We're closed right now. We open again at midnight on Friday night.");
  });

  it('without structured hours, a plain yes', () => {
    for (const q of ['now', 'today', 'tomorrow'] as const) expect(spokenOpenAnswer(undefined, 0, q)).toBe(`Yes, we're open ${q}.`);
  });
});

describe('properties', () => {
  const zones = ['America/New_York', 'America/Chicago', 'Australia/Sydney', 'Europe/London', 'Australia/Lord_Howe', 'Asia/Kolkata', 'Pacific/Chatham'];
  // Quarter hours 0..96 ("24:00" only as a close).
  const clock = (q: number) => `${String(Math.floor(q / 4)).padStart(2, '0')}:${String((q % 4) * 15).padStart(2, '0')}`;
  const interval = fc
    .tuple(fc.integer({ min: 0, max: 96 }), fc.integer({ min: 0, max: 96 }))
    .filter(([a, b]) => a !== b)
    .map(([a, b]) => ({ open: clock(Math.min(a, b)), close: clock(Math.max(a, b)) }));
  const day = fc.array(interval, { maxLength: 2 }).map((list) => {
    const sorted = [...list].sort((x, y) => x.open.localeCompare(y.open));
    return sorted.filter((iv, i) => i === 0 || iv.open >= (sorted[i - 1]?.close ?? ''));
  });
  const hours = fc
    .record({
      timeZone: fc.constantFrom(...zones),
      weekly: fc.record({ mon: day, tue: day, wed: day, thu: day, fri: day, sat: day, sun: day }, { requiredKeys: [] }),
    })
    .map((h) => ClinicHours.parse(h));
  // 2026 and 2027, DST changes included.
  const instant = fc.integer({ min: Date.parse('2026-01-01T00:00:00Z'), max: Date.parse('2027-12-31T00:00:00Z') });

  it('closesAt and nextOpen are real edges: open just before the close, closed at it; closed just before an opening', () => {
    fc.assert(
      fc.property(hours, instant, (h, t) => {
        const s = hoursState(h, t);
        expect(s.open).toBe(openAt(h, t));
        if (s.closesAt !== null) {
          expect(s.open).toBe(true);
          expect(s.closesAt).toBeGreaterThan(t);
          expect(openAt(h, s.closesAt - 1)).toBe(true);
          expect(openAt(h, s.closesAt)).toBe(false);
        }
        if (s.nextOpen !== null) {
          expect(s.nextOpen.at).toBeGreaterThan(t);
          expect(openAt(h, s.nextOpen.at)).toBe(true);
          expect(openAt(h, s.nextOpen.at - 1)).toBe(false);
          if (!s.open) expect(openAt(h, Math.floor((t + s.nextOpen.at) / 2))).toBe(false);
        }
        expect(typeof spokenOpenAnswer(h, t, 'now')).toBe('string');
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with the local wall clock away from DST changes', () => {
    // An independent reading of the local clock: weekday and HH:MM straight from Intl.
    const clocks = new Map(zones.map((zone) => [zone, new Intl.DateTimeFormat('en-GB', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })]));
    const names = new Map(zones.map((zone) => [zone, new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' })]));
    const parts = (zone: string, t: number) => {
      const p = clocks.get(zone)?.formatToParts(t) ?? [];
      const get = (type: string) => p.find((x) => x.type === type)?.value ?? '';
      return { weekday: get('weekday').toLowerCase().slice(0, 3), hhmm: `${get('hour')}:${get('minute')}` };
    };
    const offset = (zone: string, t: number) => names.get(zone)?.formatToParts(t).find((x) => x.type === 'timeZoneName')?.value;
    fc.assert(
      fc.property(hours, instant, (h, t) => {
        // Skip instants within a day of an offset change: there wall-clock and elapsed time differ.
        fc.pre(offset(h.timeZone, t - 86_400_000) === offset(h.timeZone, t + 86_400_000));
        const { weekday, hhmm } = parts(h.timeZone, t);
        const intervals = h.weekly[weekday as keyof typeof h.weekly] ?? [];
        expect(openAt(h, t)).toBe(intervals.some((iv) => iv.open <= hhmm && hhmm < iv.close));
      }),
      { numRuns: 500 },
    );
  });
});
