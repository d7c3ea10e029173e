import { describe, expect, it } from 'vitest';
import {
  classifyEmergency, classifyTurnEnd, EMERGENCY_MIN_CONFIDENCE, endOfTurnWindow, findEmergency, heardText, isRealInterruption, sameMeaning, takeSentences, takeSpeech, yesNo,
} from '../../machines/call/language.js';

const KEYWORDS = ['emergency', 'bleeding', 'poison', "can't breathe", 'seizure'];
const BACKCHANNELS = ['mm-hmm', 'uh-huh', 'yeah', 'okay', 'right'];

describe('call language rules', () => {
  it.each([
    ['my dog is bleeding', 'bleeding'],
    ['He CANNOT breathe!', "can't breathe"],
    ['she cant breathe', "can't breathe"],
    ['I think it is an emergency', 'emergency'],
    ['no, it is bleeding a lot', 'bleeding'],
    ['my cat ate poison', 'poison'],
  ])('"%s" is an emergency (%s)', (text, keyword) => {
    expect(findEmergency(text, KEYWORDS)).toBe(keyword);
  });

  it.each(["it's not an emergency", 'he is not bleeding anymore', "it isn't really an emergency", 'what are your hours'])(
    '"%s" is not',
    (text) => expect(findEmergency(text, KEYWORDS)).toBeNull(),
  );

  it.each([
    // [text, final, confidence, certainty, basis]
    ["he can't breathe", true, 0.9, 'clear', 'phrase'],
    ["he can't breathe", true, null, 'clear', 'phrase'],
    ['my dog is bleeding, it is an emergency', true, 0.9, 'clear', 'keywords'],
    ['my rabbit had a seizure', true, 0.88, 'uncertain', 'singleKeyword'],
    ['bleeding, bleeding everywhere, so much bleeding', true, 0.9, 'uncertain', 'singleKeyword'],
    ["he can't breathe", false, null, 'uncertain', 'partial'],
    ['bleeding and poison', false, null, 'uncertain', 'partial'],
    ["he can't breathe", true, EMERGENCY_MIN_CONFIDENCE - 0.01, 'uncertain', 'lowConfidence'],
    ["he can't breathe", true, EMERGENCY_MIN_CONFIDENCE, 'clear', 'phrase'],
    // A negated keyword does not count towards two.
    ["it's not an emergency but he is bleeding", true, 0.9, 'uncertain', 'singleKeyword'],
  ] as const)('"%s" (final %s, confidence %s) is %s: %s', (text, final, confidence, certainty, basis) => {
    expect(classifyEmergency(text, KEYWORDS, { final, confidence })).toMatchObject({ certainty, basis });
  });

  it('one word matching two overlapping keywords is one mention; nothing said is null', () => {
    expect(classifyEmergency('she had seizures', ['seizure', 'seizures'], { final: true, confidence: 0.9 })).toEqual({
      keyword: 'seizure', certainty: 'uncertain', basis: 'singleKeyword',
    });
    expect(classifyEmergency("it's not an emergency", KEYWORDS, { final: true, confidence: 0.9 })).toBeNull();
  });

  it('classifies yes and no, no winning when both appear', () => {
    expect(yesNo('yes that is fine')).toBe('yes');
    expect(yesNo('yeah sure')).toBe('yes');
    expect(yesNo('nope')).toBe('no');
    expect(yesNo("yes, I mean no, I don't want that")).toBe('no');
    expect(yesNo('what')).toBeNull();
  });

  it('backchannels and noise are not interruptions; real words and stop words are', () => {
    expect(isRealInterruption('mm-hmm', BACKCHANNELS)).toBe(false);
    expect(isRealInterruption('okay yeah', BACKCHANNELS)).toBe(false);
    expect(isRealInterruption('', BACKCHANNELS)).toBe(false);
    expect(isRealInterruption('wait', BACKCHANNELS)).toBe(true);
    expect(isRealInterruption('how much is it', BACKCHANNELS)).toBe(true);
  });

  it('splits streamed text into finished sentences and a remainder', () => {
    expect(takeSentences('Hello there. How are')).toEqual({ sentences: ['Hello there.'], rest: 'How are' });
    expect(takeSentences('Open 9 to 5! Really? ')).toEqual({ sentences: ['Open 9 to 5!', 'Really?'], rest: '' });
    expect(takeSentences('Dr. Lee')).toEqual({ sentences: [], rest: 'Dr. Lee' });
  });

  it('cuts a reply to what was heard, on whole words', () => {
    const segments = [
      { text: 'We are open today.', endMs: 1000 },
      { text: 'Anything else I can help with?', endMs: 2000.875 },
    ];
    expect(heardText(segments, 0)).toBe('');
    expect(heardText(segments, 1000)).toBe('We are open today.');
    expect(heardText(segments, 1520)).toBe('We are open today. Anything else I…');
    expect(heardText(segments, 1490)).toBe('We are open today. Anything else…');
    // Marks carry whole ms: the last fraction of a millisecond still counts as heard.
    expect(heardText(segments, 2000)).toBe('We are open today. Anything else I can help with?');
  });

  it('sends a long first sentence to the synthesizer from its first clause, later ones whole', () => {
    // Streaming: the first clause goes as soon as its comma is followed by a space.
    expect(takeSpeech('We are open Monday to Friday, from eight', true)).toEqual({ items: ['We are open Monday to Friday,'], rest: 'from eight' });
    expect(takeSpeech('We are open Monday to Friday,', true)).toEqual({ items: [], rest: 'We are open Monday to Friday,' });
    // Three words are a clause of their own; fewer wait for the sentence.
    expect(takeSpeech('Parking is free, right by the front door', true)).toEqual({ items: ['Parking is free,'], rest: 'right by the front door' });
    expect(takeSpeech('Of course, Bella can come in', true)).toEqual({ items: [], rest: 'Of course, Bella can come in' });
    expect(takeSpeech('Yes, our vets see cats', true)).toEqual({ items: [], rest: 'Yes, our vets see cats' });
    expect(takeSpeech('Yes, our vets see cats. And', true)).toEqual({ items: ['Yes, our vets see cats.'], rest: 'And' });
    // A whole first sentence is cut only when enough follows its first clause.
    expect(takeSpeech('A checkup costs sixty dollars, plus tax. ', true)).toEqual({ items: ['A checkup costs sixty dollars, plus tax.'], rest: '' });
    expect(takeSpeech('A checkup costs about sixty dollars; vaccinations are extra. Ok', true)).toEqual({
      items: ['A checkup costs about sixty dollars;', 'vaccinations are extra.'],
      rest: 'Ok',
    });
    expect(takeSpeech('We see cats and dogs every day but not on Sundays', true).items).toEqual(['We see cats and dogs every day']);
    // "1,000": a comma without a space is not a boundary; later items are whole sentences only.
    expect(takeSpeech('It costs about 1,000 dollars in total', true).items).toEqual([]);
    expect(takeSpeech('We are open Monday to Friday, from eight', false)).toEqual({ items: [], rest: 'We are open Monday to Friday, from eight' });
  });

  it.each([
    ['what are your hours', 'complete'],
    ['What services do you have', 'complete'],
    ['I need to book an appointment for my dog.', 'complete'],
    ['Is the doctor in today?', 'complete'],
    ['yes please', 'complete'],
    ['no thank you', 'complete'],
    ["that's all", 'complete'],
    ['my dog is', 'incomplete'],
    ['my dog is…', 'incomplete'],
    ["I'd like to book an appointment and", 'incomplete'],
    ['so um', 'incomplete'],
    ['I was wondering if', 'incomplete'],
    ['my number is 555 0134', 'incomplete'],
    ['my number is five five five', 'incomplete'],
    ["it's spelled B E L", 'incomplete'],
    ['B-E-L-L', 'incomplete'],
    ['what is', 'incomplete'],
    ['my dog has been limping', 'open'],
    ['Bella', 'open'],
    ['', 'open'],
  ])('"%s" reads as %s', (text, kind) => {
    expect(classifyTurnEnd(text)).toBe(kind);
  });

  it('chooses the window from how the words end and what the receptionist asked', () => {
    const t = { endOfTurnMs: 500, endOfTurnShortMs: 400, endOfTurnLongMs: 1800, endOfTurnCompleteMs: 250 };
    expect(endOfTurnWindow('complete', 'normal', t)).toBe(250);
    expect(endOfTurnWindow('complete', 'short', t)).toBe(250);
    // Asked for a name, time or number: finished-looking words still get the normal window.
    expect(endOfTurnWindow('complete', 'long', t)).toBe(500);
    expect(endOfTurnWindow('open', 'normal', t)).toBe(500);
    expect(endOfTurnWindow('open', 'short', t)).toBe(400);
    expect(endOfTurnWindow('open', 'long', t)).toBe(1800);
    expect(endOfTurnWindow('incomplete', 'short', t)).toBe(1800);
    // A clinic whose complete window is longer than its yes/no window keeps the shorter one.
    expect(endOfTurnWindow('complete', 'short', { ...t, endOfTurnCompleteMs: 450 })).toBe(400);
  });

  it('two transcripts mean the same when only case, punctuation and fillers differ', () => {
    expect(sameMeaning('what are your hours', 'What are your hours?')).toBe(true);
    expect(sameMeaning('um what are your hours', 'What are, uh, your hours?')).toBe(true);
    expect(sameMeaning('what are your hours', 'what are your hours today')).toBe(false);
    expect(sameMeaning('my dog is sick', 'my cat is sick')).toBe(false);
    expect(sameMeaning('', 'hello')).toBe(false);
  });
});
