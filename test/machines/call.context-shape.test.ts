/**
 * The call machine's context stays an object with fast properties. XState copies the context on
 * every `assign` with `Object.assign({}, context, update)`; V8 gives an object built that way with
 * 20 or more properties dictionary-mode ("slow") properties, which made every event of a call cost
 * about a third more (docs/performance.md "The call context keeps fast properties"). This asks V8
 * itself, on a context that has been through the assigns of a conversation. (V8's choice also
 * depends on what the process did before: a test worker that already ran other files may keep a
 * 20-field copy fast, so the field count is checked too.)
 */
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { initialContext } from '../../machines/call/call.context.js';
import { createCallHarness, testTenant } from '../support/call-harness.js';

setFlagsFromString('--allow-natives-syntax');
// V8's own answer: %HasFastProperties is only reachable from code compiled after the flag is set.
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- the natives syntax cannot appear in compiled TypeScript
const hasFastProperties = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;

describe('call context shape', () => {
  it('has at most 19 top-level fields: an Object.assign copy with more is dictionary-mode in a fresh V8', () => {
    expect(Object.keys(initialContext({ callSid: 'CA1', tenant: testTenant() })).length).toBeLessThanOrEqual(19);
  });

  it('keeps fast properties through a conversation of assigns', () => {
    const h = createCallHarness({ agent: [{ text: 'We are open nine to five. Anything else?' }] });
    h.start();
    h.send({ type: 'twilio.start', streamSid: 'MZ1' });
    h.advance(2_000);
    h.send({ type: 'twilio.dtmf', digit: '4' });
    h.say('what are your hours');
    h.advance(600);
    expect(h.matches({ reply: 'speaking' })).toBe(true);
    h.send({ type: 'vad.speechStart', atMs: h.clock.now() });
    h.advance(3_000);
    const { context } = h.state();
    expect(context.counts.interruptions).toBe(1);
    expect(hasFastProperties(context)).toBe(true);
  });
});
