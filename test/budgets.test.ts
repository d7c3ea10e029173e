/**
 * The timing budgets (machines/call/budgets.ts, docs/timing.md) keep their relations: every inner
 * deadline strictly below the outer one it has to beat, and every place that enforces one reads it
 * from the module instead of its own literal.
 */
import { describe, expect, it } from 'vitest';
import { BUDGETS } from '../machines/call/budgets.js';
import { callMachine } from '../machines/call/call.machine.js';
import { HANDOFF_STOP_WAIT_MS } from '../src/calls/registry.js';
import { Timing } from '../src/config/tenant.schema.js';
import { SERVER_TIMEOUTS } from '../src/http/edge.js';
import { DEFAULT_BUDGETS } from '../src/providers/fallback.js';
import { TWILIO_REST_TIMEOUT_MS } from '../src/twilio/rest.js';

const B = BUDGETS;

/** [inner, outer, why]: inner < outer. */
const RELATIONS: [string, number, string, number, string][] = [
  ['REST request (session)', B.restRequestMs, 'machine restTimeout', B.restTimeoutMs, 'the session aborts the request before the machine gives up on it'],
  ['REST request (session)', B.restRequestMs, 'REST client default', B.restClientMs, "a transfer's bound is the session's, not the client's 5 s"],
  ['STT fallback final', B.sttFallbackFinalMs, 'machine sttFinalTimeout', B.sttFinalTimeoutMs, 'the embedded recognizer gets the replayed utterance with time left to decode'],
  ['machine sttFinalTimeout', B.sttFinalTimeoutMs, 'silence rule', B.silenceRuleMs, '"say that again" comes within the silence rule'],
  ['filler', B.fillerAfterMs, 'agent first output', B.agentFirstOutputMs, 'the filler covers the wait before a cloud agent is given up on'],
  ['filler', B.fillerAfterMs, 'silence rule', B.silenceRuleMs, 'rung 1 is heard within the silence rule'],
  ['agent first output + TTS first audio', B.agentFirstOutputMs + B.ttsFirstAudioMs, 'machine thinkingTimeout', B.thinkingTimeoutMs, 'both cloud budgets can miss in one turn and the embedded reply still beats the apology'],
  ['drain hand-off stop wait', B.handoffStopWaitMs, 'machine handoffTimeout', B.handoffTimeoutMs, 'the registry closes a stream Twilio did not stop before the machine gives up on it'],
  [
    'hand-off REST (client bound) + stop wait + close wait + journal uploads',
    B.restClientMs + B.handoffStopWaitMs + B.handoffCloseWaitMs + B.journalShipWaitMs,
    'hard exit after the drain deadline',
    B.hardExitAfterDrainMs,
    'the drain hand-off and the last journal uploads finish before the hard exit',
  ],
  ['machine sttFinalTimeout', B.sttFinalTimeoutMs, 'emergency answer window', B.emergencyAnswerMs, 'a yes or no said right after "Is your pet in danger?" is transcribed before silence counts as yes'],
  ['emergency answer window', B.emergencyAnswerMs, 'emergency check ceiling', B.emergencyCheckMaxMs, 'the ceiling leaves the question (≤ 160 characters, ~10 s) its answer window'],
  ['/twilio/voice handler', SERVER_TIMEOUTS.voiceHandlerTimeoutMs, 'request timeout (Twilio gives up at 15 s)', SERVER_TIMEOUTS.requestTimeoutMs, 'the fallback TwiML is sent before Twilio or Node gives up'],
];

describe('timing budgets', () => {
  it.each(RELATIONS)('%s (%i ms) < %s (%i ms): %s', (_inner, inner, _outer, outer) => {
    expect(inner).toBeLessThan(outer);
  });

  it('machine restTimeout ≤ the silence rule: a hung transfer is apologised for within it', () => {
    expect(B.restTimeoutMs).toBeLessThanOrEqual(B.silenceRuleMs);
  });

  it('Node: headersTimeout ≤ requestTimeout', () => {
    expect(SERVER_TIMEOUTS.headersTimeoutMs).toBeLessThanOrEqual(SERVER_TIMEOUTS.requestTimeoutMs);
  });

  it('every enforcer reads its budget from the module', () => {
    const delays = callMachine.implementations.delays;
    expect(delays.restTimeout).toBe(B.restTimeoutMs);
    expect(delays.sttFinalTimeout).toBe(B.sttFinalTimeoutMs);
    expect(delays.thinkingTimeout).toBe(B.thinkingTimeoutMs);
    expect(delays.handoffTimeout).toBe(B.handoffTimeoutMs);
    expect(delays.emergencyAnswer).toBe(B.emergencyAnswerMs);
    expect(delays.emergencyCheckMax).toBe(B.emergencyCheckMaxMs);
    expect(DEFAULT_BUDGETS).toEqual({
      agent: { firstMs: B.agentFirstOutputMs, idleMs: B.agentIdleMs },
      tts: { firstMs: B.ttsFirstAudioMs, idleMs: B.ttsIdleMs },
      sttFinalMs: B.sttFallbackFinalMs,
    });
    expect(Timing.parse({}).fillerAfterMs).toBe(B.fillerAfterMs);
    expect(TWILIO_REST_TIMEOUT_MS).toBe(B.restClientMs);
    expect(HANDOFF_STOP_WAIT_MS).toBe(B.handoffStopWaitMs);
  });
});
