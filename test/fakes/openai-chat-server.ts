/**
 * A fake OpenAI Chat Completions API on 127.0.0.1, port 0, for the real `openai` SDK (point its
 * `baseURL` at `url`, which ends in /v1):
 *
 *   POST /v1/chat/completions   with `stream: true` → SSE, chunk for chunk in OpenAI's shapes
 *
 * The stream is what OpenAI sends: a role chunk, one chunk per word of text (`delta.content`),
 * tool calls as fragments (`delta.tool_calls[{index, id, type, function: {name, arguments}}]`, the
 * arguments split into small pieces), a chunk with `finish_reason`, with `stream_options.include_usage`
 * a usage chunk with empty `choices`, then `data: [DONE]`. Generation stops at `max_completion_tokens`
 * (finish_reason `length`), each word or tool-call fragment counting as one token.
 *
 * Scriptable: a responder turns each request body into a reply (text and/or tool calls); each
 * request takes the next FaultPlan from `faults` (delays, stall, drop, HTTP status with an
 * OpenAI-shaped error body, malformed chunk). Chunk counts in plans count SSE events, the role
 * chunk included. Observable: every request is recorded with its body, the chunks sent, the usage
 * reported and whether the client disconnected first (proof that an abort cancelled the request).
 * No test-framework imports: `npm run simulate` can use it too.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type OpenAI from 'openai';
import { Arrivals, FaultScript, listenOnLoopback, readBody, type FaultPlan } from './fault-plan.js';

export interface FakeToolCall {
  name: string;
  /** An object is sent as JSON; a string is sent as is (broken-arguments cases). */
  arguments: object | string;
}

export interface FakeChatReply {
  /** Spoken text, streamed one word per chunk. */
  text?: string;
  toolCalls?: readonly FakeToolCall[];
}

/** The request body as the client sent it (parsed JSON, not validated). */
export type FakeChatBody = OpenAI.ChatCompletionCreateParams;

export type ChatResponder = (body: FakeChatBody) => FakeChatReply;

export interface FakeChatRequest {
  body: FakeChatBody;
  /** The bearer token the client sent, or null. */
  apiKey: string | null;
  /** The client's port: requests with the same one came over the same connection. */
  clientPort: number | undefined;
  plan: FaultPlan;
  /** SSE events written (malformed one included). */
  chunksSent: number;
  /** The usage chunk's figures, once sent. */
  usage: { prompt_tokens: number; completion_tokens: number } | null;
  /** The whole stream, `[DONE]` included, was written. */
  completed: boolean;
  /** The fake reset the connection as planned (`dropAfterChunks`). */
  dropped: boolean;
  /** The client closed the connection before the response ended (abort, timeout); a planned drop does not count. */
  clientDisconnected: boolean;
  /** Resolves once the response is over, whichever way. */
  readonly ended: Promise<void>;
}

export interface FakeOpenAiChat {
  /** `http://127.0.0.1:PORT/v1`, the SDK's baseURL. */
  readonly url: string;
  readonly faults: FaultScript;
  /** Every request so far, in arrival order (a live array). */
  readonly requests: readonly FakeChatRequest[];
  /** Replaces the responder for the following requests. */
  respondWith(responder: ChatResponder): void;
  /** Resolves once at least `count` requests have arrived. */
  waitForRequests(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;
/** Tool-call arguments arrive in fragments this long, as OpenAI's do (a few characters each). */
const ARG_FRAGMENT = 7;

const ERRORS: Record<NonNullable<FaultPlan['status']>, { message: string; type: string; code: string | null }> = {
  400: { message: "Invalid value for 'messages'.", type: 'invalid_request_error', code: null },
  401: { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' },
  403: { message: 'Country, region, or territory not supported', type: 'request_forbidden', code: 'unsupported_country_region_territory' },
  404: { message: 'The model does not exist or you do not have access to it.', type: 'invalid_request_error', code: 'model_not_found' },
  429: { message: 'Rate limit reached for requests. Please try again later.', type: 'requests', code: 'rate_limit_exceeded' },
  500: { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', code: null },
  502: { message: 'Bad gateway.', type: 'server_error', code: null },
  503: { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', code: null },
};

/** OpenAI's 401 text quotes the key, masked: the adapter must not pass server messages on. */
const badKeyMessage = (key: string | null) =>
  `Incorrect API key provided: ${key ? `${key.slice(0, 3)}${'*'.repeat(Math.max(0, key.length - 7))}${key.slice(-4)}` : 'none'}. ` +
  'You can find your API key at https://platform.openai.com/account/api-keys.';

/** "Hello there." → ["Hello", " there."], the way OpenAI's tokens carry their leading space. */
const words = (text: string) => text.split(/(?= )/).filter(Boolean);

function fragments(s: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.length; i += ARG_FRAGMENT) out.push(s.slice(i, i + ARG_FRAGMENT));
  return out;
}

/** Tokens the whole reply takes in this fake: one per word, tool call name and argument fragment. */
const replyTokens = (reply: FakeChatReply) =>
  words(reply.text ?? '').length +
  (reply.toolCalls ?? []).reduce((n, c) => n + 1 + fragments(typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments)).length, 0);

/** The SSE events of one streamed reply, `[DONE]` last. */
function replyEvents(body: FakeChatBody, reply: FakeChatReply, rec: FakeChatRequest): string[] {
  const id = `chatcmpl-${randomBytes(12).toString('hex')}`;
  const created = Math.floor(Date.now() / 1000);
  const withUsage = body.stream_options?.include_usage === true;
  const chunk = (choices: unknown[], usage?: unknown) => JSON.stringify({
    id, object: 'chat.completion.chunk', created, model: body.model, service_tier: 'default', system_fingerprint: 'fp_fake0001',
    choices, ...(withUsage ? { usage: usage ?? null } : {}),
  });
  const choice = (delta: object, finish: string | null = null) => ({ index: 0, delta, logprobs: null, finish_reason: finish });

  const events = [chunk([choice({ role: 'assistant', content: reply.toolCalls?.length && !reply.text ? null : '', refusal: null })])];
  // Like OpenAI, generation stops at max_completion_tokens (max_tokens, its deprecated name) with
  // finish_reason "length", mid-word or mid-arguments; here every content or tool fragment is one token.
  const limit = body.max_completion_tokens ?? body.max_tokens ?? Infinity;
  let tokens = 0;
  const push = (delta: object) => {
    if (tokens >= limit) return;
    tokens++;
    events.push(chunk([choice(delta)]));
  };
  for (const w of words(reply.text ?? '')) push({ content: w });
  (reply.toolCalls ?? []).forEach((call, index) => {
    const args = typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments);
    push({ tool_calls: [{ index, id: `call_${randomBytes(12).toString('hex')}`, type: 'function', function: { name: call.name, arguments: '' } }] });
    for (const piece of fragments(args)) push({ tool_calls: [{ index, function: { arguments: piece } }] });
  });
  const cut = tokens >= limit && tokens < replyTokens(reply);
  events.push(chunk([choice({}, cut ? 'length' : reply.toolCalls?.length ? 'tool_calls' : 'stop')]));
  if (withUsage) {
    const usage = {
      prompt_tokens: Math.ceil(JSON.stringify(body.messages).length / 4),
      completion_tokens: events.length - 2, // every content or tool fragment counts as one token
    };
    events.push(chunk([], { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0 } }));
    rec.usage = usage;
  }
  return [...events.map((e) => `data: ${e}\n\n`), 'data: [DONE]\n\n'];
}

export async function startOpenAiChatServer(opts: { responder?: ChatResponder; apiKey?: string } = {}): Promise<FakeOpenAiChat> {
  let responder: ChatResponder = opts.responder ?? (() => ({ text: 'Okay.' }));
  const faults = new FaultScript();
  const requests: FakeChatRequest[] = [];
  const sockets = new Set<Socket>();
  const arrivals = new Arrivals();
  const closing = new AbortController();

  /** Resolves after `ms`, or at once when the response closes or the server shuts down. */
  const wait = (ms: number, res: ServerResponse) => new Promise<void>((resolve) => {
    if (res.destroyed || closing.signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      res.off('close', done);
      closing.signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.once('close', done);
    closing.signal.addEventListener('abort', done, { once: true });
  });
  /** Writes and waits until the bytes reached the socket, so a planned drop loses none of them. */
  const flushed = (res: ServerResponse, data: string) => new Promise<void>((resolve) => res.write(data, () => resolve()));
  const gone = (res: ServerResponse) => res.destroyed || closing.signal.aborted;

  const sendError = (res: ServerResponse, status: keyof typeof ERRORS, plan: FaultPlan, message?: string) => {
    const e = ERRORS[status];
    if (res.destroyed) return;
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'x-request-id': `req_${randomBytes(16).toString('hex')}` };
    if (status === 429 && plan.retryAfterS !== undefined) headers['Retry-After'] = String(plan.retryAfterS);
    if (status === 429) headers['x-should-retry'] = 'true';
    res.writeHead(status, headers).end(JSON.stringify({ error: { message: message ?? e.message, type: e.type, param: null, code: e.code } }));
  };

  const stream = async (res: ServerResponse, rec: FakeChatRequest, events: string[]) => {
    const { plan } = rec;
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      'x-request-id': `req_${randomBytes(16).toString('hex')}`,
      'openai-processing-ms': '42',
    });
    for (let i = 0; i < events.length; i++) {
      if (i > 0 && plan.chunkDelayMs) await wait(plan.chunkDelayMs, res);
      if (gone(res)) return;
      if (plan.dropAfterChunks === i) {
        rec.dropped = true;
        res.socket?.destroy(); // a reset mid-stream: no terminating chunk
        return;
      }
      if (plan.stallAfterChunks === i) return; // keep the connection open, send nothing more
      if (plan.malformedAfterChunks === i) {
        await flushed(res, 'data: {"id":"chatcmpl-broken","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\n\n');
        rec.chunksSent += 1;
        res.end();
        return;
      }
      await flushed(res, events[i]!);
      rec.chunksSent += 1;
    }
    res.end();
    rec.completed = true;
  };

  const answer = async (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const plan = faults.next();
    let body: FakeChatBody | null = null;
    try {
      body = JSON.parse(raw) as FakeChatBody; // not validated: tests assert on what the client sent
    } catch {
      // answered below, after the planned delay, like any other request
    }
    const auth = req.headers.authorization ?? '';
    const rec = body && recordRequest(res, body, auth.startsWith('Bearer ') ? auth.slice(7) : null, plan);
    if (plan.firstByteMs) await wait(plan.firstByteMs, res);
    if (gone(res)) return;
    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      return sendError(res, 404, plan, `Unknown request URL: ${req.method ?? ''} ${path}.`);
    }
    if (!body || !rec) return sendError(res, 400, plan, 'We could not parse the JSON body of your request.');
    if (opts.apiKey !== undefined && rec.apiKey !== opts.apiKey) return sendError(res, 401, plan, badKeyMessage(rec.apiKey));
    if (plan.status) return sendError(res, plan.status, plan, plan.status === 401 ? badKeyMessage(rec.apiKey) : undefined);
    if (body.stream !== true) return sendError(res, 400, plan, 'The fake only streams: set stream: true.');
    let events: string[];
    try {
      events = replyEvents(body, responder(body), rec);
    } catch {
      return sendError(res, 500, plan);
    }
    await stream(res, rec, events);
  };

  const recordRequest = (res: ServerResponse, body: FakeChatBody, apiKey: string | null, plan: FaultPlan) => {
    let markEnded = () => {};
    const rec: FakeChatRequest = {
      body, apiKey, clientPort: res.req.socket.remotePort, plan, chunksSent: 0, usage: null, completed: false, dropped: false, clientDisconnected: false,
      ended: new Promise<void>((resolve) => (markEnded = resolve)),
    };
    requests.push(rec);
    res.once('close', () => {
      if (!res.writableFinished && !rec.dropped) rec.clientDisconnected = true;
      markEnded();
    });
    arrivals.changed();
    return rec;
  };

  const server = createServer((req, res) => readBody(req, MAX_BODY, (body) => void answer(req, res, body)));
  // No idle limit and no `Keep-Alive: timeout=` hint (Node's default would say 5 s): how long an idle
  // connection lasts is then the client's choice, which is what the keep-alive test checks.
  server.keepAliveTimeout = 0;
  const port = await listenOnLoopback(server, sockets);

  return {
    url: `http://127.0.0.1:${port}/v1`,
    faults,
    requests,
    respondWith(next) {
      responder = next;
    },
    waitForRequests(count, timeoutMs = 2_000) {
      return arrivals.until(() => (requests.length >= count ? true : undefined), timeoutMs, () => `fake OpenAI chat: ${requests.length} of ${count} requests after ${timeoutMs} ms`).then(() => undefined);
    },
    async close() {
      closing.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
