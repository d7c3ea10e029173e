/**
 * Text rules the machine decides with: emergency keywords (with negation), yes/no, backchannels,
 * sentence and first-clause splitting, cutting a reply to what the caller heard, and how a turn
 * ends (the end-of-turn window, same meaning). Pure functions, no I/O.
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

/** One non-negated keyword said: where (clause, first word) and how many words it spans. */
interface KeywordHit {
  keyword: string;
  clause: number;
  at: number;
  length: number;
}

/** Every non-negated mention of every keyword, in keyword order. */
function keywordHits(text: string, keywords: readonly string[]): KeywordHit[] {
  const said = clauses(text);
  const hits: KeywordHit[] = [];
  for (const keyword of keywords) {
    const kw = words(normalize(keyword).replace(/[.,!?;:]/g, ''));
    if (kw.length === 0) continue;
    said.forEach((clause, c) => {
      for (let i = 0; i + kw.length <= clause.length; i++) {
        if (!kw.every((w, j) => clause[i + j] === w || clause[i + j] === `${w}s`)) continue;
        const before = clause.slice(Math.max(0, i - NEGATION_WINDOW), i);
        if (!before.some((w) => NEGATIONS.has(w))) hits.push({ keyword, clause: c, at: i, length: kw.length });
      }
    });
  }
  return hits;
}

/**
 * The first emergency keyword said in `text`, unless negated in its clause. Tier 1 in docs/design/conversation.md:
 * act on the first interim. A missed emergency costs far more than a question, so only an explicit
 * negation right before the keyword suppresses it.
 */
export function findEmergency(text: string, keywords: readonly string[]): string | null {
  return keywordHits(text, keywords)[0]?.keyword ?? null;
}

/**
 * Below this recognizer confidence a final transcript's keyword is uncertain. Recognizers that
 * report none (the OpenAI ones) are not held to it; the embedded one reports its mean word
 * posterior, ~0.85–0.9 even for a phrase it forced a wrong sentence onto, which is why a lone
 * keyword is uncertain at any confidence.
 */
export const EMERGENCY_MIN_CONFIDENCE = 0.7;

/**
 * Why a spoken keyword counts as clear or uncertain. Clear: a final transcript, confidence not
 * below EMERGENCY_MIN_CONFIDENCE (or not reported), and either a keyword of two or more words
 * ("can't breathe": `phrase`) or two or more distinct keywords at different places (`keywords`).
 * Uncertain otherwise, for the first reason that applies: `partial` (an interim transcript),
 * `lowConfidence`, `singleKeyword` (one one-word keyword, however often said).
 */
export type EmergencyBasis = 'phrase' | 'keywords' | 'partial' | 'lowConfidence' | 'singleKeyword';

export interface EmergencyMatch {
  /** The first keyword said (what the follow-up and the journal show). */
  keyword: string;
  certainty: 'clear' | 'uncertain';
  basis: EmergencyBasis;
}

/** Is `text` an emergency, and how sure is that? Null when no keyword is said (negated ones do not count). */
export function classifyEmergency(
  text: string,
  keywords: readonly string[],
  heard: { final: boolean; confidence: number | null },
): EmergencyMatch | null {
  const hits = keywordHits(text, keywords);
  const first = hits[0];
  if (!first) return null;
  const uncertain = (basis: EmergencyBasis): EmergencyMatch => ({ keyword: first.keyword, certainty: 'uncertain', basis });
  if (!heard.final) return uncertain('partial');
  if (heard.confidence !== null && heard.confidence < EMERGENCY_MIN_CONFIDENCE) return uncertain('lowConfidence');
  const phrase = hits.find((h) => h.length > 1);
  if (phrase) return { keyword: phrase.keyword, certainty: 'clear', basis: 'phrase' };
  // Distinct keywords at distinct places: "seizure" and "seizures" said once are one mention.
  const places = new Set(hits.map((h) => `${h.clause}:${h.at}`));
  const distinct = new Set(hits.map((h) => h.keyword));
  if (distinct.size >= 2 && places.size >= 2) return { keyword: first.keyword, certainty: 'clear', basis: 'keywords' };
  return uncertain('singleKeyword');
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

// ── Speech items: the first clause of a reply goes to the synthesizer on its own ─────────────────

/**
 * Words a reply's first clause needs before it is synthesized on its own (shorter: the whole
 * sentence). Three: "Parking is free," goes at once rather than after the ten words that follow it
 * (each streamed word is ~20 ms of the caller's wait); "Of course," and "Yes," wait for more.
 */
export const FIRST_CLAUSE_MIN_WORDS = 3;
/** A finished first sentence is split only when what follows its first clause has at least this many words. */
const CLAUSE_REST_MIN_WORDS = 3;

const wordCount = (text: string) => text.split(/\s+/).filter((w) => /[A-Za-z0-9]/.test(w)).length;

/**
 * Where the first clause of `text` ends (index just after its boundary), or null: the first comma,
 * semicolon, colon or dash followed by a space, or the space before "but" / "because", after at
 * least FIRST_CLAUSE_MIN_WORDS words. `complete`: `text` is a whole sentence, so the rest must be
 * long enough to be worth a second request.
 */
function firstClauseEnd(text: string, complete: boolean): number | null {
  const re = /[,;:\u2014](?=\s)|\s(?=(?:but|because)\s)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const end = m.index + m[0].length;
    if (wordCount(text.slice(0, end)) < FIRST_CLAUSE_MIN_WORDS) continue;
    if (complete && wordCount(text.slice(end)) < CLAUSE_REST_MIN_WORDS) return null;
    return end;
  }
  return null;
}

/**
 * Streamed reply text → items to synthesize now, and the unfinished rest. Items are whole
 * sentences (takeSentences), except the reply's first item (`first`): a long first sentence is cut
 * at its first clause, even before the sentence is finished, so the first audio request does not
 * wait for the whole sentence (docs/design/conversation.md §1.4).
 */
export function takeSpeech(buffer: string, first: boolean): { items: string[]; rest: string } {
  const { sentences, rest } = takeSentences(buffer);
  if (!first) return { items: sentences, rest };
  const head = sentences[0];
  if (head !== undefined) {
    const cut = firstClauseEnd(head, true);
    if (cut === null) return { items: sentences, rest };
    return { items: [head.slice(0, cut).trim(), head.slice(cut).trim(), ...sentences.slice(1)], rest };
  }
  const cut = firstClauseEnd(rest, false);
  if (cut === null) return { items: [], rest };
  return { items: [rest.slice(0, cut).trim()], rest: rest.slice(cut).replace(/^\s+/, '') };
}

// ── End of turn: how the caller's words end decides how long we wait ────────────────────────────

/**
 * `complete`: a question, a punctuated sentence or a short answer; `incomplete`: trailing off on a
 * word no sentence ends with ("and", "um", "my dog is"), or in the middle of a number or a spelling;
 * `open`: anything else (docs/design/conversation.md §1.2).
 */
export type TurnEnd = 'complete' | 'open' | 'incomplete';

const FILLERS = new Set(['um', 'umm', 'uh', 'uhh', 'uhm', 'er', 'erm', 'hmm', 'mm', 'ah', 'eh']);

/** Words no sentence ends on: conjunctions, prepositions, determiners, fillers, "I want…", "it's called…". */
const DANGLING = new Set([
  ...FILLERS,
  'and', 'or', 'but', 'so', 'because', 'cause', "'cause", 'then', 'if', 'when', 'while', 'although', 'though', 'plus', 'than', 'that', 'which', 'who', 'whose', 'where',
  'to', 'for', 'with', 'about', 'of', 'in', 'on', 'at', 'from', 'by', 'into', 'onto', 'like', 'after', 'before', 'until', 'since', 'as', 'per', 'between',
  'a', 'an', 'the', 'my', 'your', 'his', 'her', 'our', 'their', 'its', 'this', 'these', 'those', 'some', 'any', 'every', 'each', 'another',
  "he's", "she's", "it's", "i'm", "we're", "they're", "that's", "there's",
  'i', 'want', 'need', 'wanted', 'needed', 'think', 'mean', 'guess', 'gonna', 'wanna', 'gotta', 'trying', 'going', 'wondering', 'called', 'named',
  'well', 'also', 'just', 'really', 'very', 'maybe', 'actually', 'basically',
]);

/** Verbs a statement does not end on ("my dog is…") but a question may ("what services do you have"). */
const AUXILIARIES = new Set([
  'is', 'are', 'was', 'were', 'am', 'be', 'been', 'being', 'has', 'have', 'had', 'do', 'does', 'did', 'will', 'would', 'can', 'could', 'should',
  'may', 'might', 'must', 'shall',
]);

const NUMBER_WORDS = new Set([
  'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen',
  'sixteen', 'seventeen', 'eighteen', 'nineteen', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety', 'hundred',
  'thousand', 'double', 'triple',
]);

const QUESTION_WORDS = new Set([
  'what', "what's", 'where', "where's", 'when', 'why', 'who', 'which', 'how', "how's", 'do', 'does', 'did', 'can', 'could', 'will', 'would',
  'is', 'are', 'should', 'may', 'have', 'has',
]);

/** Words a short answer or closing is made of ("yes please", "no thank you", "that's all"). */
const ANSWER_WORDS = new Set([
  ...YES, ...NO, 'thanks', 'thank', 'you', 'bye', 'goodbye', 'great', 'perfect', 'right', 'that', "that's", 'all', 'it', 'is', 'good', 'sounds', 'nothing', 'else',
]);

const isNumberish = (w: string) => /^\d+$/.test(w) || NUMBER_WORDS.has(w);
const isLetter = (w: string) => /^[a-z]$/.test(w) && w !== 'a' && w !== 'i';

/** How the caller's words so far end (partial or final transcript, several segments joined). */
export function classifyTurnEnd(text: string): TurnEnd {
  const raw = text.trim();
  if (raw === '') return 'open';
  if (/(\.\.\.|\u2026|[-\u2014])$/.test(raw)) return 'incomplete';
  const said = clauses(raw);
  const last = said.at(-1) ?? [];
  const all = said.flat();
  const lastWord = all.at(-1) ?? '';
  if (DANGLING.has(lastWord) || isNumberish(lastWord)) return 'incomplete';
  if (all.length >= 2 && isLetter(lastWord) && isLetter(all.at(-2) ?? '')) return 'incomplete';
  const question = QUESTION_WORDS.has(last[0] ?? '') && last.length >= 3;
  if (AUXILIARIES.has(lastWord) && !question) return 'incomplete';
  if (question || /[?.!]["')\]]*$/.test(raw)) return 'complete';
  if (all.every((w) => ANSWER_WORDS.has(w))) return 'complete';
  return 'open';
}

export interface EndOfTurnTiming {
  endOfTurnMs: number;
  endOfTurnShortMs: number;
  endOfTurnLongMs: number;
  endOfTurnCompleteMs: number;
}

/**
 * The end-of-turn window, from the end of the caller's speech: long while the words are
 * incomplete; the complete-utterance window after a finished question or answer (the normal one
 * when the receptionist asked for a name, time or number); otherwise what the receptionist's last
 * question expects.
 */
export function endOfTurnWindow(kind: TurnEnd, expect: 'short' | 'normal' | 'long', t: EndOfTurnTiming): number {
  const expected = expect === 'long' ? t.endOfTurnLongMs : expect === 'short' ? t.endOfTurnShortMs : t.endOfTurnMs;
  if (kind === 'incomplete') return Math.max(t.endOfTurnLongMs, expected);
  if (kind === 'complete') return expect === 'long' ? t.endOfTurnMs : Math.min(t.endOfTurnCompleteMs, expected);
  return expected;
}

/** Words that carry meaning: lower-case, no punctuation, no fillers. */
const meaningWords = (text: string) => clauses(text).flat().filter((w) => !FILLERS.has(w));

/**
 * Do two transcripts of the same words mean the same? Equal once case, punctuation and fillers
 * are set aside (so a reply prepared on an interim transcript can stand for the final one).
 */
export function sameMeaning(a: string, b: string): boolean {
  const x = meaningWords(a);
  const y = meaningWords(b);
  return x.length === y.length && x.every((w, i) => w === y[i]);
}
