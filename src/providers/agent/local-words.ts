/**
 * Words → slots for the local receptionist (./local.ts): times, reasons, pet and owner names,
 * species, urgency cues, spoken phone numbers and how they are read back. Pure functions over
 * normalised transcripts (lower case, no punctuation but apostrophes, colons and dots).
 */
export const SPECIES: Record<string, string> = {
  dog: 'dog', puppy: 'dog', cat: 'cat', kitten: 'cat', rabbit: 'rabbit', bunny: 'rabbit', bird: 'bird', parrot: 'bird',
  hamster: 'hamster', 'guinea pig': 'guinea pig', ferret: 'ferret', horse: 'horse', lizard: 'lizard', snake: 'snake', turtle: 'turtle',
};
export const SPECIES_RE = new RegExp(`\\b(${Object.keys(SPECIES).join('|')})s?\\b`);
export const DIGIT_WORDS: Record<string, string> = {
  zero: '0', oh: '0', o: '0', one: '1', two: '2', three: '3', four: '4', five: '5', six: '6', seven: '7', eight: '8', nine: '9',
};
export const OTHER_NUMBER_RE = /\b(another|different|other|better|new) (number|phone)\b|\b(call|reach) me (at|on)\b|\bmy (cell|mobile|number|phone)\b/;
export const MESSAGE_RE = /\b(leave|take|send) (a |him a |her a )?message\b|\bmessage for\b/;

/** The digits a caller said ("five five five, oh one…", "555 0100", "+1 555…"); null unless 7–15 of them. */
export function spokenNumber(t: string): string | null {
  let digits = '';
  for (const w of t.replace(/\+/g, ' ').split(/[\s,.-]+/)) {
    if (/^\d+$/.test(w)) digits += w;
    else if (DIGIT_WORDS[w] !== undefined) digits += DIGIT_WORDS[w];
    else if (w === 'double' || w === 'triple') continue;
  }
  return digits.length >= 7 && digits.length <= 15 ? digits : null;
}

/** "5 5 5, 0 1 0, 0 2 0 0": digits spoken one by one, grouped like a phone number. */
export function readDigits(number: string): string {
  const groups = number.length === 10 ? [number.slice(0, 3), number.slice(3, 6), number.slice(6)]
    : number.length === 11 ? [number.slice(0, 1), number.slice(1, 4), number.slice(4, 7), number.slice(7)]
      : number.match(/.{1,4}/g) ?? [number];
  return groups.map((g) => g.split('').join(' ')).join(', ');
}

const HOUR = '(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\\d{1,2}(?::\\d{2})?)';
const AMPM = "(?:o'clock|a\\.?m\\.?|p\\.?m\\.?)";
const TIME_RE = new RegExp(
  `\\b(?:today|tonight|tomorrow|(?:next |this )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|week|weekend)|` +
  `as soon as possible|asap|(?:in the )?(?:morning|afternoon|evening)|(?:at )?noon|at ${HOUR}(?: (?:fifteen|thirty|forty five))?(?: ${AMPM})?|` +
  `${HOUR}(?: (?:fifteen|thirty|forty five))? ${AMPM})\\b`, 'g');
export const REASON_RE = /\b(check ?up|vaccin\w*|shots|booster|dental|teeth|vomit\w*|diarrh\w*|limp\w*|itch\w*|scratch\w*|skin|ears?|eyes?|lump|surgery|spay\w*|neuter\w*|not eating|cough\w*|sneez\w*|stitches|follow ?up)\b/;
export const PET_RE = /\b(?:(?:his|her|its|their|the|my (?:dog|cat|pet|puppy|kitten|rabbit|bird)(?:'s)?) name is|named|called)\s+([a-z']+)/;
/** "for my dog bella", "about our cat max". */
export const FOR_PET_RE = /\b(?:for|about) (?:my|our) (?:dog|cat|puppy|kitten|rabbit|bunny|bird|parrot|hamster|ferret|horse) ([a-z']+)/;
export const OWNER_RE = /\b(?:my name is|my name's|this is)\s+([a-z']+(?: [a-z']+)?)/;
const FILLER_RE = /^(?:(?:um+|uh+|er|well|so|okay|ok|yes|yeah|oh|it's|it is|its|his name is|her name is|its name is|the name is|my name is|my name's|this is|i'm|i am|he's|she's|called|named|for|a|an|the|it's for|because|he needs|she needs|they need|we need|i need|i'd like|i would like)\s+)+/;
export const STOP_NAME = new Set(('not sure no yes okay please thanks thank you my the i um uh a an him her them it his me us some ' +
  'refill prescription appointment medication today tomorrow').split(' '));

export const norm = (t: string) => t.toLowerCase().replace(/[’‘]/g, "'").replace(/[^a-z0-9':. ]+/g, ' ').replace(/\s+/g, ' ').trim();
export const cap = (w: string) => w.replace(/(^|\s)([a-z])/g, (_m: string, s: string, c: string) => s + c.toUpperCase());
export const clean = (t: string) => t.replace(/[.?!]+$/, '').replace(FILLER_RE, '').trim();
export const list = (xs: readonly string[]) => (xs.length < 2 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]!}`);
export const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
export const sentence = (t: string) => t.trim().replace(/[.!?]*$/, '.');

export function findTime(t: string): string | null {
  const hits = [...t.matchAll(TIME_RE)];
  if (!hits.length) return null;
  const first = hits[0]!;
  const last = hits[hits.length - 1]!;
  return t.slice(first.index, last.index + last[0].length);
}

export function nameFrom(answer: string): string | null {
  const words = clean(answer).split(' ').filter((w) => w && !STOP_NAME.has(w));
  return words.length ? cap(words.slice(0, 2).join(' ')) : null;
}
