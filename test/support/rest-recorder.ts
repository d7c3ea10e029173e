/** A TwilioRest that records what the engine asked for and succeeds (or fails on request). */
import type { TwilioRest } from '../../src/twilio/rest-types.js';

export interface RestCall {
  op: 'update' | 'hangup' | 'record';
  callSid: string;
  twiml?: string;
  callbackUrl?: string;
}

export function restRecorder(opts: { fail?: (op: RestCall['op']) => boolean } = {}) {
  const calls: RestCall[] = [];
  const run = (call: RestCall) => {
    calls.push(call);
    return opts.fail?.(call.op) ? Promise.reject(new Error(`${call.op} refused by the test`)) : Promise.resolve();
  };
  const rest: TwilioRest = {
    updateCallTwiml: (callSid, twiml) => run({ op: 'update', callSid, twiml }),
    hangup: (callSid) => run({ op: 'hangup', callSid }),
    startRecording: async (callSid, callbackUrl) => {
      await run({ op: 'record', callSid, callbackUrl });
      return { recordingSid: `RE${'0'.repeat(32)}` };
    },
  };
  return { rest, calls };
}
