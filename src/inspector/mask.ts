/**
 * Phone numbers never reach the inspector page: every string shown there (transcripts, agent text,
 * event details, context) goes through `maskPhones`. A run of 7 or more digits, optionally with
 * `+`, spaces, dots, dashes or parentheses between them, keeps only its last two digits. Digits
 * inside identifiers (`CA0123…`, `MZ…`) are left alone: a number must not touch a letter.
 */
const PHONE = /(?<![\w+])\+?\d[\d ().-]{5,}\d(?!\w)/g;
const MIN_DIGITS = 7;
const KEEP = 2;

export function maskPhones(text: string): string {
  return text.replace(PHONE, (match) => {
    const digits = match.replace(/\D/g, '').length;
    if (digits < MIN_DIGITS) return match;
    let seen = 0;
    return match.replace(/\d/g, (d) => (++seen > digits - KEEP ? d : '•'));
  });
}

/** A JSON-safe deep copy with every string masked; typed arrays become their length. */
export function maskDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskPhones(value);
  if (value === null || typeof value !== 'object' || depth > 12) return value;
  if (ArrayBuffer.isView(value)) return { bytes: value.byteLength };
  if (Array.isArray(value)) return value.map((v) => maskDeep(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = maskDeep(v, depth + 1);
  return out;
}
