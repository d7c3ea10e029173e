import { describe, expect, it } from 'vitest';
import { findEmergency, heardText, isRealInterruption, takeSentences, yesNo } from '../../machines/call/language.js';

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
});
