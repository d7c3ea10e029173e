/**
 * What Twilio's `From` says about the caller. Twilio puts a keypad spelling of ANONYMOUS,
 * RESTRICTED, BLOCKED, UNKNOWN or UNAVAILABLE (or, on some routes, the word itself) in `From`
 * when the caller withheld their number: those callers cannot be told apart.
 */

const E164 = /^\+[1-9]\d{6,14}$/;

/** +266696687 ANONYMOUS, +7378742833 RESTRICTED, +2562533 BLOCKED, +8656696 UNKNOWN, +86282452253 UNAVAILABLE. */
const WITHHELD = new Set(['+266696687', '+7378742833', '+2562533', '+8656696', '+86282452253']);

/** The caller's own E.164 number, or null when there is none or it was withheld. */
export function identifiableCaller(from: string | null | undefined): string | null {
  if (from === null || from === undefined || !E164.test(from) || WITHHELD.has(from)) return null;
  return from;
}
