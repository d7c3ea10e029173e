/**
 * The real TwilioRest through the real twilio package, against the fake REST server on loopback.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VetError } from '../../src/errors.js';
import { createTwilioRest, TWILIO_REST_BREAKER } from '../../src/twilio/rest.js';
import type { TwilioRest } from '../../src/twilio/rest-types.js';
import { start } from '../fakes/twilio-rest-server.js';
import type { FakeTwilioRest } from '../fakes/twilio-rest-server.js';

const CALL = 'CA8d2f1b4e6a3c5d7e9f0a1b2c3d4e5f60';
const DESK = '+15550100199';
const TWIML =
  `<Response><Dial callerId="+15550100100" timeout="20" action="https://voice.test/twilio/dial?x=1&amp;y=2">` +
  `<Number>${DESK}</Number></Dial></Response>`;
const CALLBACK = 'https://voice.test/twilio/recording?tenant=a&n=1';

let fake: FakeTwilioRest;
let rest: TwilioRest;
const never = () => new AbortController().signal;

const make = (over: { authToken?: string; timeoutMs?: number } = {}) =>
  createTwilioRest({
    accountSid: fake.accountSid,
    authToken: over.authToken ?? fake.authToken,
    baseUrl: fake.url,
    ...(over.timeoutMs === undefined ? {} : { timeoutMs: over.timeoutMs }),
  });

/** The rejection, checked to be a clean VET_E_TWILIO_REST. */
async function failure(p: Promise<unknown>): Promise<VetError> {
  const err = await p.then(
    () => expect.fail('expected a rejection'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VetError);
  const v = err as VetError;
  expect(v.code).toBe('VET_E_TWILIO_REST');
  for (const secret of [fake.authToken, fake.accountSid, DESK, '+15550100100']) {
    expect(v.message).not.toContain(secret);
  }
  expect(v.message).not.toMatch(/\+\d{7,}/);
  return v;
}

beforeEach(async () => {
  fake = await start();
  rest = make();
});
afterEach(async () => {
  vi.useRealTimers();
  await fake.close();
});

describe('requests as Twilio receives them', () => {
  it('updateCallTwiml posts exactly the TwiML to the call resource', async () => {
    await rest.updateCallTwiml(CALL, TWIML, never());
    expect(fake.requests).toHaveLength(1);
    const [req] = fake.requests;
    expect(req).toMatchObject({
      method: 'POST',
      path: `/2010-04-01/Accounts/${fake.accountSid}/Calls/${CALL}.json`,
      route: 'call.update',
      callSid: CALL,
      authorized: true,
      status: 200,
    });
    expect(req?.form).toEqual({ Twiml: TWIML });
  });

  it('hangup posts Status=completed and nothing else', async () => {
    await rest.hangup(CALL, never());
    expect(fake.requests.map((r) => [r.route, r.form])).toEqual([['call.update', { Status: 'completed' }]]);
  });

  it('startRecording asks for dual channels, the callback and the completed event only', async () => {
    const { recordingSid } = await rest.startRecording(CALL, CALLBACK, never());
    expect(recordingSid).toMatch(/^RE[0-9a-f]{32}$/);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({
      path: `/2010-04-01/Accounts/${fake.accountSid}/Calls/${CALL}/Recordings.json`,
      route: 'recording.create',
      status: 201,
    });
    expect(fake.requests[0]?.form).toEqual({
      RecordingChannels: 'dual',
      RecordingStatusCallback: CALLBACK,
      RecordingStatusCallbackEvent: 'completed',
    });
  });

  it('a malformed CallSid is refused before any request', async () => {
    const v = await failure(rest.hangup('CA../../Accounts', never()));
    expect(v.message).toBe('hangup failed: invalid CallSid');
    expect(fake.requests).toHaveLength(0);
  });

  it('a response without a Recording SID is a failure', async () => {
    fake.script({ route: 'recording.create', status: 201, body: { status: 'in-progress' } });
    const v = await failure(rest.startRecording(CALL, CALLBACK, never()));
    expect(v.message).toBe('startRecording failed: response without a Recording SID');
  });
});

describe('failures become VET_E_TWILIO_REST', () => {
  it('401 (wrong token): status and Twilio code only, no credentials', async () => {
    const wrong = make({ authToken: 'wrong-token-canary-0000' });
    const v = await failure(wrong.updateCallTwiml(CALL, TWIML, never()));
    expect(v.message).toBe('updateCallTwiml failed: HTTP 401 20003');
    expect(v.message).not.toContain('wrong-token-canary');
    expect(v.cause).toMatchObject({ status: 401, code: 20003 });
    expect(fake.requests[0]?.authorized).toBe(false);
  });

  it('404 (call not found): HTTP 404 20404', async () => {
    fake.script({ status: 404 });
    const v = await failure(rest.updateCallTwiml(CALL, TWIML, never()));
    expect(v.message).toBe('updateCallTwiml failed: HTTP 404 20404');
    expect(v.cause).toMatchObject({ status: 404, code: 20404 });
  });

  it('500: not retried by the SDK', async () => {
    fake.script({ status: 500 });
    const v = await failure(rest.hangup(CALL, never()));
    expect(v.message).toBe('hangup failed: HTTP 500 20500');
    expect(fake.requests).toHaveLength(1);
  });

  it('a body that is not JSON', async () => {
    fake.script({ status: 200, body: '<html>proxy error</html>' });
    const v = await failure(rest.hangup(CALL, never()));
    expect(v.message).toBe('hangup failed: unexpected SyntaxError');
  });

  it('connection refused: network code only, and the cause holds no request config', async () => {
    await fake.close();
    const v = await failure(rest.hangup(CALL, never()));
    expect(v.message).toBe('hangup failed: network ECONNREFUSED');
    expect(JSON.stringify(v.cause)).not.toContain('Basic');
    expect(Object.keys(v.cause as object)).toEqual(['code']);
    fake = await start(); // for afterEach
  });

  it('429 then success: the SDK retries', async () => {
    fake.script({ status: 429 });
    await rest.updateCallTwiml(CALL, TWIML, never());
    expect(fake.requests.map((r) => r.status)).toEqual([429, 200]);
    expect(fake.requests[1]?.form).toEqual({ Twiml: TWIML });
  });

  it('429 four times: 1 + 3 retries, then HTTP 429 20429', async () => {
    fake.script({ status: 429, times: 4 });
    const v = await failure(rest.hangup(CALL, never()));
    expect(v.message).toBe('hangup failed: HTTP 429 20429');
    expect(fake.requests.map((r) => r.status)).toEqual([429, 429, 429, 429]);
  });
});

describe('deadline and cancellation', () => {
  it('a hung request rejects within timeoutMs and its socket is closed', async () => {
    rest = make({ timeoutMs: 300 });
    fake.script({ hang: true });
    const t0 = performance.now();
    const v = await failure(rest.updateCallTwiml(CALL, TWIML, never()));
    const elapsed = performance.now() - t0;
    expect(v.message).toBe('updateCallTwiml failed: timeout after 300 ms');
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(300 + 200);
    await vi.waitFor(() => expect(fake.requests[0]?.abandoned).toBe(true));
  });

  it('the deadline covers the SDK 429 retries too', async () => {
    rest = make({ timeoutMs: 300 });
    fake.script({ status: 429, delayMs: 120, times: 10 });
    const t0 = performance.now();
    const v = await failure(rest.hangup(CALL, never()));
    expect(v.message).toBe('hangup failed: timeout after 300 ms');
    expect(performance.now() - t0).toBeLessThan(300 + 200);
  });

  it('abort rejects promptly, closes the socket, and is not a timeout', async () => {
    fake.script({ hang: true });
    const ac = new AbortController();
    const pending = rest.updateCallTwiml(CALL, TWIML, ac.signal);
    await fake.waitForRequests(1);
    const t0 = performance.now();
    ac.abort(new Error('caller hung up'));
    const v = await failure(pending);
    expect(performance.now() - t0).toBeLessThan(100);
    expect(v.message).toBe('updateCallTwiml cancelled');
    expect((v.cause as Error).message).toBe('caller hung up');
    await vi.waitFor(() => expect(fake.requests[0]?.abandoned).toBe(true));
  });

  it('an already aborted signal sends nothing', async () => {
    const v = await failure(rest.startRecording(CALL, CALLBACK, AbortSignal.abort()));
    expect(v.message).toBe('startRecording cancelled');
    expect(fake.requests).toHaveLength(0);
  });
});

describe('circuit breaker', () => {
  const { consecutiveFailures, openMs } = TWILIO_REST_BREAKER;

  it('opens after 5 consecutive outages, fails fast, half-opens after 30 s', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    fake.script({ status: 500, times: consecutiveFailures });
    for (let i = 0; i < consecutiveFailures; i++) {
      expect((await failure(rest.hangup(CALL, never()))).message).toBe('hangup failed: HTTP 500 20500');
    }
    const t0 = performance.now();
    expect((await failure(rest.hangup(CALL, never()))).message).toBe('hangup failed: circuit open');
    expect(performance.now() - t0).toBeLessThan(100);
    expect(fake.requests).toHaveLength(consecutiveFailures);

    vi.setSystemTime(Date.now() + openMs - 1_000);
    await failure(rest.hangup(CALL, never()));
    expect(fake.requests).toHaveLength(consecutiveFailures);

    vi.setSystemTime(Date.now() + 1_001);
    await rest.hangup(CALL, never()); // the half-open probe succeeds: closed again
    await rest.updateCallTwiml(CALL, TWIML, never());
    expect(fake.requests).toHaveLength(consecutiveFailures + 2);
  });

  it('a failed half-open probe opens it again', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    fake.script({ status: 503, times: consecutiveFailures + 1 });
    for (let i = 0; i < consecutiveFailures; i++) await failure(rest.hangup(CALL, never()));
    vi.setSystemTime(Date.now() + openMs + 1);
    expect((await failure(rest.hangup(CALL, never()))).message).toBe('hangup failed: HTTP 503 20503');
    expect((await failure(rest.hangup(CALL, never()))).message).toBe('hangup failed: circuit open');
    expect(fake.requests).toHaveLength(consecutiveFailures + 1);
  });

  it('timeouts count as outages', async () => {
    rest = make({ timeoutMs: 100 });
    fake.script({ hang: true, times: consecutiveFailures });
    for (let i = 0; i < consecutiveFailures; i++) await failure(rest.hangup(CALL, never()));
    expect((await failure(rest.hangup(CALL, never()))).message).toBe('hangup failed: circuit open');
  });

  it('4xx answers and cancellations do not open it', async () => {
    fake.script({ status: 404, times: consecutiveFailures * 2 });
    for (let i = 0; i < consecutiveFailures * 2; i++) await failure(rest.hangup(CALL, never()));
    for (let i = 0; i < consecutiveFailures * 2; i++) await failure(rest.hangup(CALL, AbortSignal.abort()));
    await rest.hangup(CALL, never());
    expect(fake.requests.at(-1)?.status).toBe(200);
  });

  it('a 4xx answer resets the count of consecutive outages', async () => {
    fake.script(
      { status: 500, times: consecutiveFailures - 1 },
      { status: 404 },
      { status: 500, times: consecutiveFailures - 1 },
    );
    for (let i = 0; i < 2 * consecutiveFailures - 1; i++) await failure(rest.hangup(CALL, never()));
    await rest.hangup(CALL, never());
    expect(fake.requests).toHaveLength(2 * consecutiveFailures);
  });

  it('each client has its own breaker', async () => {
    fake.script({ status: 500, times: consecutiveFailures });
    for (let i = 0; i < consecutiveFailures; i++) await failure(rest.hangup(CALL, never()));
    await make().hangup(CALL, never());
  });
});

describe('configuration', () => {
  it('rejects a bad account SID, empty token, bad timeout or base URL at construction', () => {
    const base = { accountSid: fake.accountSid, authToken: fake.authToken };
    expect(() => createTwilioRest({ ...base, accountSid: 'SK123' })).toThrow(VetError);
    expect(() => createTwilioRest({ ...base, authToken: '' })).toThrow(VetError);
    expect(() => createTwilioRest({ ...base, timeoutMs: 0 })).toThrow(VetError);
    expect(() => createTwilioRest({ ...base, baseUrl: 'ftp://x' })).toThrow(VetError);
  });

  it('a base URL with a path prefix keeps it', async () => {
    const prefixed = createTwilioRest({
      accountSid: fake.accountSid,
      authToken: fake.authToken,
      baseUrl: `${fake.url}/proxy/`,
    });
    await failure(prefixed.hangup(CALL, never()));
    expect(fake.requests[0]?.path).toBe(`/proxy/2010-04-01/Accounts/${fake.accountSid}/Calls/${CALL}.json`);
  });
});
