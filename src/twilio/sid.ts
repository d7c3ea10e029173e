/**
 * Twilio SIDs (`AC…`, `CA…`): two letters and 32 hex digits. Twilio writes the hex in lower case, a
 * person pasting one may not: every comparison of account SIDs goes through `sameSid`.
 */
export const sameSid = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
