/**
 * A fake Twilio REST API on 127.0.0.1, port 0: the subset the engine uses, answered in Twilio's
 * JSON shapes so the real twilio package parses it. Point `createTwilioRest({ baseUrl: fake.url })`
 * at it.
 *
 *   POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json             (Twiml, or Status=completed)
 *   POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json  (RecordingChannels, ...)
 *   POST /2010-04-01/Accounts/{AccountSid}/Messages.json                    (To, From, Body: an SMS)
 *
 * Basic auth must be accountSid:authToken and the path must name the same account, else 401 with
 * Twilio's 20003 body. Scriptable: queue replies (status, Twilio code, body, delay, hang, answer
 * after something else happened) consumed in order by matching requests; unscripted requests
 * succeed. Observable: every request is recorded (method, path, decoded form, status sent, whether
 * the client gave up first).
 */
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Arrivals, listenOnLoopback, readBody } from './fault-plan.js';

export const FAKE_ACCOUNT_SID = 'ACfa4e0000000000000000000000000001';
/** A canary: tests assert it appears in no error message. */
export const FAKE_AUTH_TOKEN = 'canary-auth-token-9f8e7d6c5b4a3210';

export type FakeRoute = 'call.update' | 'recording.create' | 'message.create' | 'unknown';

export interface FakeRestRequest {
  method: string;
  /** Path without query string. */
  path: string;
  route: FakeRoute;
  accountSid: string | null;
  callSid: string | null;
  /** Decoded form body; a repeated field becomes an array in arrival order. */
  form: Record<string, string | string[]>;
  authorized: boolean;
  /** Status sent, or null while none was (delayed, hanging, or the client left first). */
  status: number | null;
  /** The client closed the connection before an answer was sent (abort or timeout). */
  abandoned: boolean;
}

export interface FakeReply {
  /** Requests this reply may serve; any by default. */
  route?: FakeRoute;
  /** HTTP status; 2xx answers with the resource, anything else with a Twilio error body. */
  status?: number;
  /** Twilio error code in the error body; defaults by status (404 → 20404, 429 → 20429, 500 → 20500, ...). */
  twilioCode?: number;
  /** Replaces the JSON body entirely; a string is sent as is (malformed-response cases). */
  body?: unknown;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Never answer: the client must give up (or close() ends the connection). */
  hang?: boolean;
  /**
   * Answer only once this settles, run when the request arrives: e.g. stop the call's Media Stream
   * first, as Twilio does when it runs the new TwiML before its REST response is back.
   */
  answerAfter?: () => Promise<unknown>;
  /** How many requests this reply serves: default 1, `Infinity` for all that follow. */
  times?: number;
}

export interface FakeTwilioRest {
  /** `http://127.0.0.1:PORT`, the baseUrl for createTwilioRest. */
  readonly url: string;
  readonly accountSid: string;
  readonly authToken: string;
  /** Every request so far, in arrival order (a live array). */
  readonly requests: readonly FakeRestRequest[];
  /** Queue replies; each request takes the first queued reply whose route matches. */
  script(...replies: FakeReply[]): void;
  /** Resolves once at least `count` requests have arrived (body read). */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_CODES: Record<number, { code: number; message: string }> = {
  400: { code: 21220, message: 'Call is not in-progress. Cannot redirect.' },
  401: { code: 20003, message: 'Authenticate' },
  404: { code: 20404, message: 'The requested resource was not found' },
  405: { code: 20004, message: 'Method not allowed' },
  429: { code: 20429, message: 'Too Many Requests' },
  500: { code: 20500, message: 'Internal Server Error' },
  503: { code: 20503, message: 'Service Unavailable' },
};

const CALL_PATH = /^\/2010-04-01\/Accounts\/([^/]+)\/Calls\/([^/]+?)(\/Recordings)?\.json$/;
const MESSAGES_PATH = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/;
const MAX_BODY = 64 * 1024;

export async function start(opts: { accountSid?: string; authToken?: string } = {}): Promise<FakeTwilioRest> {
  const accountSid = opts.accountSid ?? FAKE_ACCOUNT_SID;
  const authToken = opts.authToken ?? FAKE_AUTH_TOKEN;
  const expectedAuth = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;
  const requests: FakeRestRequest[] = [];
  const queue: FakeReply[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  const arrivals = new Arrivals();
  let recordings = 0;
  let messages = 0;

  const take = (route: FakeRoute): FakeReply | null => {
    const i = queue.findIndex((r) => r.route === undefined || r.route === route);
    if (i < 0) return null;
    const reply = queue[i]!;
    const left = (reply.times ?? 1) - 1;
    if (left <= 0) queue.splice(i, 1);
    else queue[i] = { ...reply, times: left };
    return reply;
  };

  const send = (res: ServerResponse, rec: FakeRestRequest, status: number, body: unknown) => {
    if (res.destroyed || res.writableEnded) return;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string> = {
      'Content-Type': 'application/json; charset=utf-8',
      'Twilio-Request-Id': `RQ${String(requests.indexOf(rec)).padStart(32, '0')}`,
    };
    if (status === 401) headers['WWW-Authenticate'] = 'Basic realm="Twilio API"';
    res.writeHead(status, headers).end(text);
    rec.status = status;
  };

  const errorBody = (status: number, path: string, twilioCode?: number) => {
    const known = DEFAULT_CODES[status];
    const code = twilioCode ?? known?.code;
    const message = status === 404 ? `The requested resource ${path} was not found` : (known?.message ?? 'Error');
    return {
      ...(code === undefined ? {} : { code, more_info: `https://www.twilio.com/docs/errors/${code}` }),
      message,
      status,
    };
  };

  const resource = (rec: FakeRestRequest): { status: number; body: unknown } => {
    const now = new Date().toUTCString().replace('GMT', '+0000');
    if (rec.route === 'message.create') {
      messages += 1;
      const sid = `SM${messages.toString(16).padStart(32, '0')}`;
      const body = typeof rec.form.Body === 'string' ? rec.form.Body : '';
      return {
        status: 201,
        body: {
          account_sid: accountSid,
          api_version: '2010-04-01',
          body,
          date_created: now,
          date_sent: null,
          date_updated: now,
          direction: 'outbound-api',
          error_code: null,
          error_message: null,
          // Real resources carry the numbers; the fake keeps them out of test output (as for calls).
          from: null,
          to: null,
          messaging_service_sid: null,
          num_media: '0',
          num_segments: '1',
          price: null,
          price_unit: 'USD',
          sid,
          status: 'queued',
          subresource_uris: { media: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}/Media.json` },
          uri: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}.json`,
        },
      };
    }
    const base = `/2010-04-01/Accounts/${accountSid}/Calls/${rec.callSid}`;
    if (rec.route === 'recording.create') {
      recordings += 1;
      const sid = `RE${recordings.toString(16).padStart(32, '0')}`;
      return {
        status: 201,
        body: {
          account_sid: accountSid,
          api_version: '2010-04-01',
          call_sid: rec.callSid,
          conference_sid: null,
          date_created: now,
          date_updated: now,
          start_time: now,
          duration: '-1',
          sid,
          price: null,
          price_unit: null,
          status: 'in-progress',
          channels: rec.form.RecordingChannels === 'dual' ? 2 : 1,
          source: 'StartCallRecordingAPI',
          error_code: null,
          track: 'both',
          encryption_details: null,
          uri: `${base}/Recordings/${sid}.json`,
        },
      };
    }
    return {
      status: 200,
      body: {
        sid: rec.callSid,
        account_sid: accountSid,
        parent_call_sid: null,
        date_created: now,
        date_updated: now,
        // Real resources carry to/from numbers; the fake keeps phone numbers out of test output.
        to: null,
        to_formatted: null,
        from: null,
        from_formatted: null,
        phone_number_sid: null,
        status: rec.form.Status === 'completed' ? 'completed' : 'in-progress',
        start_time: now,
        end_time: rec.form.Status === 'completed' ? now : null,
        duration: null,
        price: null,
        price_unit: 'USD',
        direction: 'inbound',
        answered_by: null,
        api_version: '2010-04-01',
        forwarded_from: null,
        group_sid: null,
        caller_name: null,
        queue_time: '0',
        trunk_sid: null,
        uri: `${base}.json`,
        subresource_uris: { recordings: `${base}/Recordings.json` },
      },
    };
  };

  const answer = (res: ServerResponse, rec: FakeRestRequest) => {
    if (!rec.authorized) return send(res, rec, 401, errorBody(401, rec.path));
    if (rec.route === 'unknown') return send(res, rec, 404, errorBody(404, rec.path));
    if (rec.method !== 'POST') return send(res, rec, 405, errorBody(405, rec.path));
    const reply = take(rec.route) ?? {};
    if (reply.hang) return;
    const respond = () => {
      const status = reply.status ?? 0;
      if (status !== 0 && (status < 200 || status >= 300)) {
        return send(res, rec, status, reply.body ?? errorBody(status, rec.path, reply.twilioCode));
      }
      const ok = resource(rec);
      send(res, rec, reply.status ?? ok.status, reply.body ?? ok.body);
    };
    const later = () => {
      if (!reply.delayMs) return respond();
      const timer = setTimeout(() => {
        timers.delete(timer);
        respond();
      }, reply.delayMs);
      timers.add(timer);
    };
    if (reply.answerAfter) void reply.answerAfter().then(later, later);
    else later();
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    readBody(req, MAX_BODY, (body) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const m = CALL_PATH.exec(path);
      const sms = m ? null : MESSAGES_PATH.exec(path);
      const form: Record<string, string | string[]> = {};
      for (const [key, value] of new URLSearchParams(body)) {
        const prev = form[key];
        form[key] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
      }
      const rec: FakeRestRequest = {
        method: req.method ?? '',
        path,
        route: m ? (m[3] ? 'recording.create' : 'call.update') : sms ? 'message.create' : 'unknown',
        accountSid: m?.[1] ?? sms?.[1] ?? null,
        callSid: m?.[2] ?? null,
        form,
        authorized: req.headers.authorization === expectedAuth && (m?.[1] ?? sms?.[1] ?? accountSid) === accountSid,
        status: null,
        abandoned: false,
      };
      requests.push(rec);
      res.on('close', () => {
        if (!res.writableFinished) rec.abandoned = true;
      });
      arrivals.changed();
      answer(res, rec);
    });
  };

  const server = createServer(handle);
  const port = await listenOnLoopback(server, sockets);

  return {
    url: `http://127.0.0.1:${port}`,
    accountSid,
    authToken,
    requests,
    script(...replies) {
      queue.push(...replies);
    },
    waitForRequests(count, timeoutMs = 2_000) {
      return arrivals.until(() => (requests.length >= count ? true : undefined), timeoutMs, () => `fake Twilio REST: ${requests.length} of ${count} requests after ${timeoutMs} ms`).then(() => undefined);
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
