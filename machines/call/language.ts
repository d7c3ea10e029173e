/**
 * Text rules the machine decides with: emergency keywords (with negation), yes/no, backchannels,
 * sentence splitting, and cutting a reply to what the caller heard. Pure functions, no I/O.
 */

/** Lower-case, unify apostrophes and "cannot"-style spellings, keep clause punctuation as boundaries. */
export function normalize(text: string): string {
  return text
    .toLowerCase()
    .replace(/[\u2018\u2019`]/g, "'")
    .replace(/\bcan ?not\b/g, "can't")
    .replace(/\bcant\b/g, "can't")
    .replace(/\bwon ?t\b/g, "won't")
    .replace(/[^a-z0-9'\s.,!?;:-]/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

const words = (clause: string) => clause.split(/[\s-]+/).filter((w) => w.length > 0);
const clauses = (text: string) => normalize(text).split(/[.,!?;:]+/).map(words).filter((c) => c.length > 0);

const NEGATIONS = new Set(['not', 'no', "isn't", "wasn't", "aren't", "don't", "doesn't", "didn't", 'never', 'nothing', "it's not"]);
/** Words before a keyword that may negate it ("it's not an emergency", "he isn't really bleeding"). */
const NEGATION_WINDOW = 3;

/**
 * The first emergency keyword said in `text`, unless negated in its clause. Tier 1 in docs/design/conversation.md:
 * act on the first interim. A missed emergency costs far more than a question, so only an explicit
 * negation right before the keyword suppresses it.
 */
export function findEmergency(text: string, keywords: readonly string[]): string | null {
  const said = clauses(text);
  for (const keyword of keywords) {
    const kw = words(normalize(keyword).replace(/[.,!?;:]/g, ''));
    if (kw.length === 0) continue;
    for (const clause of said) {
      for (let i = 0; i + kw.length <= clause.length; i++) {
        if (!kw.every((w, j) => clause[i + j] === w || clause[i + j] === `${w}s`)) continue;
        const before = clause.slice(Math.max(0, i - NEGATION_WINDOW), i);
        if (!before.some((w) => NEGATIONS.has(w))) return keyword;
      }
    }
  }
  return null;
}

const YES = new Set(['yes', 'yeah', 'yep', 'sure', 'okay', 'ok', 'fine', 'agree', 'alright', 'absolutely', 'correct', 'please']);
const NO = new Set(['no', 'nope', 'nah', "don't", 'not', 'refuse', 'decline']);

/** Classify a short answer. "no" wins over "yes" when both appear ("yes, no, I don't want that"). */
export function yesNo(text: string): 'yes' | 'no' | null {
  const all = clauses(text).flat();
  if (all.some((w) => NO.has(w))) return 'no';
  if (all.some((w) => YES.has(w))) return 'yes';
  return null;
}

/** Words that always interrupt us, even alone (docs/design/conversation.md §2). */
const ALWAYS_INTERRUPT = new Set(['stop', 'wait', 'hold', 'no', 'sorry', 'excuse', 'help']);

/**
 * Is what the caller said over us a real interruption? Backchannels ("mm-hmm", "okay") and
 * wordless noise are not; two or more other words, or one of the always-interrupt words, are.
 */
export function isRealInterruption(text: string, backchannels: readonly string[]): boolean {
  const said = normalize(text).replace(/[.,!?;:]/g, ' ').replace(/\s+/g, ' ').trim();
  if (said.length === 0) return false;
  const ws = words(said);
  if (ws.some((w) => ALWAYS_INTERRUPT.has(w))) return true;
  let rest = ` ${said} `;
  for (const b of backchannels) rest = rest.split(` ${normalize(b)} `).join(' ');
  return words(rest.trim()).length >= 2;
}

const ABBREVIATIONS = new Set(['dr', 'mr', 'mrs', 'ms', 'st', 'vs', 'etc', 'approx', 'no', 'prof', 'jr', 'sr']);

/**
 * Split streamed text into complete sentences (to synthesize each as soon as it is ready) and the
 * unfinished remainder. A sentence ends at . ! or ? followed by a space.
 */
export function takeSentences(buffer: string): { sentences: string[]; rest: string } {
  const sentences: string[] = [];
  let start = 0;
  const re = /[.!?]+["')\]]*\s+/g;
  for (let m = re.exec(buffer); m !== null; m = re.exec(buffer)) {
    // "Dr. Lee", "St. Mary", "a.m. or": a period after an abbreviation or an initial is not an end.
    const word = /([A-Za-z.]+)$/.exec(buffer.slice(start, m.index))?.[1] ?? '';
    if (m[0].startsWith('.') && (ABBREVIATIONS.has(word.toLowerCase()) || /^([a-z]\.)*[a-z]$/i.test(word))) continue;
    const end = m.index + m[0].length;
    const sentence = buffer.slice(start, end).trim();
    if (sentence.length > 0) sentences.push(sentence);
    start = end;
  }
  return { sentences, rest: buffer.slice(start) };
}

/**
 * The part of a reply the caller heard, given the spoken segments (text, end position in the audio
 * timeline) and the heard position: whole segments before it, then a proportional cut of the
 * segment in progress, ending on a whole word.
 */
export function heardText(segments: readonly { text: string; endMs: number }[], heardMs: number): string {
  const out: string[] = [];
  let startMs = 0;
  for (const seg of segments) {
    // Marks carry whole milliseconds; the timeline has fractions: within 1 ms counts as heard.
    if (seg.endMs - heardMs < 1) {
      if (seg.text) out.push(seg.text);
    } else {
      const span = seg.endMs - startMs;
      const fraction = span > 0 ? Math.max(0, heardMs - startMs) / span : 0;
      const cut = seg.text.slice(0, Math.floor(seg.text.length * fraction));
      const lastSpace = cut.lastIndexOf(' ');
      // Keep only whole words: a cut that ends right before a space ends on a word already.
      const endsOnWord = cut.length === seg.text.length || seg.text[cut.length] === ' ';
      const partial = endsOnWord ? cut.trimEnd() : lastSpace > 0 ? cut.slice(0, lastSpace) : '';
      if (partial) out.push(`${partial}…`);
      break;
    }
    startMs = seg.endMs;
  }
  return out.join(' ');
}
