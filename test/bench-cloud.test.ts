/**
 * The cloud bench's turn arithmetic (scripts/bench-cloud.ts, docs/performance.md "Cloud
 * providers"): what the caller's latency is, less the vendors and the chosen window, and the
 * scripted caller and agent words it relies on to follow turns without tagging them.
 */
import { describe, expect, it } from 'vitest';
import { classifyTurnEnd, takeSpeech } from '../machines/call/language.js';
import { breakdown, SCRIPT, type CallerTurn, type ProviderTurn } from '../scripts/bench-cloud.js';

// A turn on the bench clock: speech ends at 1000, the VAD reports the pause at 1100 and closes the segment at 1200.
const caller = (over: Partial<CallerTurn> = {}): CallerTurn => ({ call: 3, endAt: 1000, pauseAt: 1100, decisionAt: 1200, firstAudioAt: 0, windowMs: 250, ...over });
const provider = (over: Partial<ProviderTurn> = {}): ProviderTurn => ({
  ref: 7, call: 3, question: 'what are your hours', ambiguous: false, commitRx: 1202, wordsTx: 1050, finalTx: 1502,
  chatRequests: 1, firstChatRx: 1105, chatRx: 1105, clauseTx: 1485, ttsRx: 1490, ttsFirstTx: 1692, ...over,
});

describe('cloud bench breakdown', () => {
  it('a prepared reply: the ideal starts at the VAD\'s pause, so the engine is charged its gaps on the path only', () => {
    // ideal = 1100 + (1485 − 1105) + (1692 − 1490) = 1682; the media reached the caller at 1700.
    const b = breakdown(caller({ firstAudioAt: 1700 }), provider())!;
    expect(b.prepared).toBe(true);
    expect(b.boundBy).toBe('reply');
    expect(b.callerLatencyMs).toBe(700);
    expect(b.engineAddedMs).toBe(18);
    expect(b.segments).toEqual({ vadToCommit: 2, toAgentRequest: 5, clauseToTtsRequest: 5, release: 8 });
  });

  it('a prepared reply whose last word the recognizer sent after the VAD decision starts from that word', () => {
    // words 1260 > D 1200: ideal = 1260 + 380 + 202 = 1842; the chat request left 5 ms after the word.
    const p = provider({ wordsTx: 1260, firstChatRx: 1265, chatRx: 1265, clauseTx: 1645, ttsRx: 1650, ttsFirstTx: 1852 });
    const b = breakdown(caller({ firstAudioAt: 1860 }), p)!;
    expect(b.prepared).toBe(true);
    expect(b.engineAddedMs).toBe(18);
    expect(b.segments.toAgentRequest).toBe(5);
  });

  it('a prepared reply on words sent before the speech ended starts at the close: the engine\'s rule waits for it', () => {
    // words 950 < end 1000: ideal = D 1200 + 380 + 202 = 1782.
    const p = provider({ wordsTx: 950, firstChatRx: 1205, chatRx: 1205, clauseTx: 1585, ttsRx: 1590, ttsFirstTx: 1792 });
    const b = breakdown(caller({ firstAudioAt: 1800 }), p)!;
    expect(b.engineAddedMs).toBe(18);
    expect(b.segments.toAgentRequest).toBe(5);
  });

  it('a reply asked after the final starts at max(final, window end), with the window the engine chose', () => {
    // Window 1800 ms (the caller trailed off): window end 2800 > final 1500; ideal 2800 + 380 + 202.
    const p = provider({ firstChatRx: 2810, chatRx: 2810, clauseTx: 3190, ttsRx: 3195, ttsFirstTx: 3397 });
    const b = breakdown(caller({ windowMs: 1800, firstAudioAt: 3400 }), p)!;
    expect(b.prepared).toBe(false);
    expect(b.engineAddedMs).toBe(18);
    expect(b.segments.toAgentRequest).toBe(10);
    expect(b.windows).toEqual({ vadSilence: 200, endOfTurn: 1800 });
  });

  it('a prepared reply ready before the window closes waits for it: the wait is not the engine\'s', () => {
    const b = breakdown(caller({ windowMs: 1000, firstAudioAt: 2004 }), provider())!;
    expect(b.boundBy).toBe('window');
    expect(b.engineAddedMs).toBe(4);
  });

  it('counts the requests thrown away, and leaves out turns it cannot attribute or time', () => {
    expect(breakdown(caller({ firstAudioAt: 1800 }), provider({ chatRequests: 3 }))!.discarded).toBe(2);
    expect(breakdown(caller({ firstAudioAt: 1800 }), provider({ ambiguous: true }))).toBeNull();
    expect(breakdown(caller({ firstAudioAt: 1800, windowMs: null }), provider())).toBeNull();
    expect(breakdown(caller({ firstAudioAt: 1800 }), provider({ ttsFirstTx: null }))).toBeNull();
  });
});

describe('cloud bench script', () => {
  it('every question is four words that read as finished, so the engine may prepare on them', () => {
    for (const { question } of SCRIPT) {
      expect(question.split(' ')).toHaveLength(4);
      expect(classifyTurnEnd(question)).toBe('complete');
    }
    expect(new Set(SCRIPT.map((s) => s.question)).size).toBe(SCRIPT.length);
  });

  it('every piece the engine synthesizes belongs to one answer only, so a synthesis request names its turn', () => {
    const said = (t: string) => t.toLowerCase().replace(/[^a-z0-9' ]+/g, ' ').replace(/\s+/g, ' ').trim();
    for (const { answer } of SCRIPT) {
      for (const item of takeSpeech(`${answer} `, true).items) {
        expect(SCRIPT.filter((s) => said(s.answer).includes(said(item))).map((s) => s.answer)).toEqual([answer]);
      }
    }
  });
});
