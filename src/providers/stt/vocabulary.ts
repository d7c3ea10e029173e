/**
 * The call's vocabulary (clinic name, staff, services, menu and emergency words) in the shape each
 * cloud recognizer takes: a free-text prompt for OpenAI, a short list of keyterms for ElevenLabs Scribe.
 */

/** Prompt length cap: well under whisper-1's 224 prompt tokens. */
const MAX_PROMPT_CHARS = 600;

/** `en-US` → `en`: the transcription API takes ISO-639-1. */
export const isoLanguage = (tag: string): string => tag.split(/[-_]/)[0]!.trim().toLowerCase();

/** Species and the drugs callers name most (refills, reactions), spelled as clinics write them. */
const VET_TERMS = [
  'dog', 'cat', 'puppy', 'kitten', 'rabbit', 'guinea pig', 'ferret', 'parakeet', 'bearded dragon',
  'Apoquel', 'Cytopoint', 'carprofen', 'Rimadyl', 'meloxicam', 'gabapentin', 'trazodone', 'Bravecto',
  'NexGard', 'Simparica', 'Heartgard', 'Revolution', 'Frontline', 'Clavamox', 'cephalexin',
  'metronidazole', 'prednisone', 'Vetmedin', 'insulin', 'spay', 'neuter', 'microchip', 'parvo',
];

/**
 * The call's vocabulary as a transcription prompt: deduplicated, in order, cut at a whole term
 * once MAX_PROMPT_CHARS is reached. Empty vocabulary → empty prompt.
 */
export function vocabularyPrompt(vocabulary: readonly string[]): string {
  const head = 'A phone call to a veterinary clinic. Names and terms: ';
  const seen = new Set<string>();
  let out = '';
  // The clinic's own terms first (they are cut last), then what every vet practice hears.
  for (const raw of vocabulary.length > 0 ? [...vocabulary, ...VET_TERMS] : []) {
    const term = raw.replace(/\s+/g, ' ').trim();
    const key = term.toLowerCase();
    if (!term || seen.has(key)) continue;
    const next = out ? `${out}, ${term}` : term;
    if (head.length + next.length + 1 > MAX_PROMPT_CHARS) break;
    seen.add(key);
    out = next;
  }
  return out ? `${head}${out}.` : '';
}

/** ElevenLabs Scribe's limits on `keyterms`: 50 terms, each at most 20 characters. */
export const MAX_KEYTERMS = 50;
export const MAX_KEYTERM_CHARS = 20;

/**
 * The call's vocabulary as Scribe keyterms: the clinic's terms first, then the common vet terms,
 * deduplicated (case-insensitive), at most 50. A term longer than 20 characters ("Riverside
 * Veterinary Clinic") gives its capitalised words instead (names are what the model misses).
 * Empty vocabulary → no keyterms.
 */
export function vocabularyKeyterms(vocabulary: readonly string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  const add = (term: string) => {
    const key = term.toLowerCase();
    if (!term || term.length > MAX_KEYTERM_CHARS || seen.has(key) || out.length >= MAX_KEYTERMS) return;
    seen.add(key);
    out.push(term);
  };
  for (const raw of vocabulary.length > 0 ? [...vocabulary, ...VET_TERMS] : []) {
    const term = raw.replace(/\s+/g, ' ').trim();
    if (term.length <= MAX_KEYTERM_CHARS) add(term);
    else for (const word of term.split(' ')) if (/^\p{Lu}/u.test(word)) add(word.replace(/[^\p{L}\p{N}'-]+$/u, ''));
  }
  return out;
}
