/**
 * Log canary for the receptionist's emergency `reason`: free text the model writes from what the
 * caller said (a name, a number, symptoms). A whole call at LOG_LEVEL=trace in which the agent
 * reports an emergency with a canary reason: the call takes the emergency path and no log line
 * carries the reason; the log says how the emergency was raised (`via: agent`), not the text.
 */
import { describe, expect, it } from 'vitest';
import { FakeAgentProvider, deltas } from '../../src/providers/agent/fake.js';
import { QUICK_VET, rigFor, tone, untilState } from '../e2e/conversation-kit.js';

const CANARY = 'Biscuit-canary-7f3e ate rat poison, owner Emily 555 0142';

describe('the agent\'s emergency reason', () => {
  it('is never written to the log verbatim', async (ctx) => {
    const agent = new FakeAgentProvider({
      script: [[...deltas('Oh no. '), { type: 'action', action: { type: 'emergency', reason: CANARY } }]],
    });
    const r = await rigFor(ctx, { agent, stt: ['my dog ate something bad'], engine: { env: { LOG_LEVEL: 'trace' } } });
    const call = await r.dial(QUICK_VET);
    await untilState(r, call, 'listening.waiting', 10_000);
    await call.say(tone(400));
    await untilState(r, call, (s) => s === 'emergency' || s.startsWith('transferring') || s === 'ended', 8_000);
    expect(r.engine.registry.session(call.callSid)?.context.emergency).toMatchObject({ via: 'agent' });
    const detected = r.logs(call.callSid, 'emergency detected');
    expect(detected).toHaveLength(1);
    expect(detected[0]).toMatchObject({ emergency: { via: 'agent' } });
    await call.hangUp();
    await untilState(r, call, 'ended', 5_000);
    // The reason did reach the engine: the inspector's timeline shows the agent's action with it.
    const detail = await r.engine.app.inject({ url: `/inspector/api/calls/${call.callSid}` });
    expect(detail.body).toContain('canary-7f3e');
    const all = r.engine.logs.join('');
    for (const piece of ['canary-7f3e', 'rat poison', 'Emily', '555 0142']) expect(all).not.toContain(piece);
  });
});
