/**
 * The phrase grammar of the local STT (./local.ts explains what it does and does not understand).
 *
 * Each rule is a list of JSGF alternatives; an alternative with a plain word missing from the
 * model's dictionary is dropped (and reported). The grammar is factored on shared prefixes
 * because decoding cost grows with the number of words that can start at any point: the flat
 * list of whole sentences first tried, `<utt> = <phrase> [<phrase>]`, decoded 5× slower (~500 ms
 * of CPU per second of speech) and inserted a second phrase into trailing noise ("front desk
 * ten"). Free-standing sequences are allowed only where callers combine things: a lead
 * (yes/no/okay/hi/hello) before a request, details after it, and "please"/"thank you" at the end.
 */
import type { Tenant } from '../../config/tenant.schema.js';

/** Words and phrases a tenant adds to the grammar: staff names, services, emergency keywords. */
export function sttVocabularyFor(tenant: Tenant): string[] {
  const titles = /^(dr|doctor|dvm|vmd|mr|mrs|ms|miss|prof)$/i;
  const out = new Set<string>([tenant.name, ...tenant.emergency.keywords, ...tenant.info.services]);
  for (const person of tenant.info.staff) {
    const words = person.replace(/\(.*?\)/g, ' ').split(/[\s,.]+/).filter((w) => w && !titles.test(w));
    if (words[0]) out.add(words[0]);
    if (/\b(dr|doctor)\b/i.test(person) && words.length > 1) out.add(`doctor ${words[words.length - 1]!}`);
  }
  return [...out];
}

const NAMES = 'bella max luna charlie lucy cooper bailey daisy sadie molly buddy lola stella tucker milo rocky bear ' +
  'duke oliver leo jack toby maggie penny ruby oscar tiger shadow pepper coco simba lucky sarah john mary emily david anna';
const RULES: Record<string, readonly string[]> = {
  lead: ['yes', 'no', 'okay', 'hi', 'hello'],
  polite: ['please', 'thank you', 'thanks'],
  yesno: ['yes [please]', 'yeah', 'yep', 'sure', 'correct', 'no [thanks | thank you]', 'nope', 'not really',
    "that's (right | correct | wrong)"],
  menu: ['one', 'two', 'zero', 'nine', 'star', '[the] front desk', 'operator', 'staff', '[a] [real] person', 'a human',
    'someone', '[the] receptionist'],
  ask: ['[i want to | can i | let me] (talk | speak) to', '(connect | transfer) me to'],
  book: ["[(i want | i need | i'd like) to] (book | make | schedule) an appointment", 'i need an appointment',
    '[an] appointment', '[i need to] see (the | a) vet', 'a checkup', 'vaccinations', 'shots',
    '(reschedule | cancel) my appointment'],
  refill: ['i need a refill', '[a] prescription [refill]', 'refill [a prescription]', '[i need more] medication'],
  hours: ['what are your hours', '[what are your] opening hours', 'hours', 'when are you open',
    'are you open [today | tomorrow]', 'what time do you (open | close)'],
  address: ['where are you [located]', 'what is your address', "what's your address", 'address', 'location',
    'directions', 'how do i get there'],
  services: ['what services do you offer', 'what do you offer', 'services', 'do you do (surgery | dental)',
    'grooming', 'boarding', 'dental cleaning', 'spay', 'neuter'],
  bye: ['[bye] bye', 'goodbye', 'thanks', 'thank you', "that's all", "that's it", 'nothing else', 'have a nice day'],
  back: ['mm-hmm', 'mhm', 'uh-huh', 'okay', 'right', 'alright', 'i see', 'got it'],
  emerg: ['<subject> <condition>', "[it's | this is | it is] [not] an emergency", 'emergency', "[it's] urgent"],
  subject: ['(my | the) <species>', 'he', 'she', 'it', 'my pet'],
  species: ['dog', 'cat', 'puppy', 'kitten', 'rabbit', 'bunny', 'bird', 'parrot', 'hamster', 'guinea pig', 'ferret',
    'horse', 'lizard', 'snake', 'turtle'],
  condition: ['is (bleeding | choking | unconscious | dying | vomiting | limping | sick | (not breathing) | ' +
    '(having a seizure) | (in pain))', 'ate ([rat] poison | chocolate | antifreeze | grapes)', "can't breathe",
    'had a seizure', 'collapsed', 'was hit by a car', "won't eat"],
  names: ["((my name | (his | her | my dog's | my cat's) name) is | this is | it's) <name>", '<name>'],
  name: NAMES.split(' '),
  when: ['<day> [<part>] [<clock>]', '<part> [<clock>]', '<clock>'],
  day: ['today', 'tomorrow', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday',
    'this week', 'next week', 'as soon as possible'],
  part: ['[in the] (morning | afternoon | evening)', '[at] noon'],
  clock: ["at <hour> [<min>] [o'clock | a.m. | p.m.]", "<hour> [<min>] (o'clock | a.m. | p.m.)"],
  hour: 'one two three four five six seven eight nine ten eleven twelve'.split(' '),
  min: ['fifteen', 'thirty', 'forty five'],
};
/** Top rule. `vocab` only when the call has some: a `<VOID>` alternative breaks the whole FSG. */
const top = (vocab: boolean) => `public <utt> = ([<lead>] (<book> | <refill>) [<when> | (for <name>)] [<polite>])
  | (<yesno> [<polite>]) | ([<lead>] (<when> | <emerg> | <hours> | <address> | <services>) [<polite>])
  | (<names> [<polite>]) | ([<ask>] (<menu>${vocab ? ' | <vocab>' : ''}) [<polite>]) | <bye> | <back>;`;

const normalise = (p: string) => p.toLowerCase().replace(/[^a-z'. ]+/g, ' ').replace(/\s+/g, ' ').trim();

/** JSGF for the clinic grammar plus `vocabulary`; alternatives with out-of-dictionary words are dropped. */
export function buildGrammar(vocabulary: readonly string[], inDict: (word: string) => boolean): { jsgf: string; dropped: string[] } {
  const dropped = new Set<string>();
  const keep = (alt: string) => {
    const missing = alt.replace(/<\w+>|[[\]()|]/g, ' ').split(' ').filter((w) => w && !inDict(w));
    missing.forEach((w) => dropped.add(w));
    return missing.length === 0;
  };
  const vocab = [...new Set(vocabulary.map(normalise))].filter((p) => p && keep(p));
  const rules: Record<string, readonly string[]> = vocab.length ? { ...RULES, vocab } : RULES;
  const lines = Object.entries(rules).map(([name, alts]) => {
    const ok = alts.filter(keep);
    if (!ok.length) throw new Error(`local STT grammar: no word of <${name}> is in the dictionary`);
    return `<${name}> = ${ok.map((a) => `(${a})`).join(' | ')};`;
  });
  return { jsgf: ['#JSGF V1.0;', 'grammar vetline;', top(vocab.length > 0), ...lines, ''].join('\n'), dropped: [...dropped] };
}
