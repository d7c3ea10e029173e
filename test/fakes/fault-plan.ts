/**
 * A scriptable fault plan shared by the fake provider servers (OpenAI, ElevenLabs). Each request
 * (or WebSocket session) takes the next plan from the script; when the script is empty the default
 * plan applies. All delays are real milliseconds (the fakes run real HTTP/WebSocket servers).
 */
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface FaultPlan {
  /** Delay before the response headers / first message. */
  firstByteMs?: number;
  /** Delay between streamed chunks (SSE events, audio chunks, realtime events). */
  chunkDelayMs?: number;
  /** After this many chunks, stop sending but keep the connection open (a stall). */
  stallAfterChunks?: number;
  /** After this many chunks, destroy the connection (socket reset mid-stream). */
  dropAfterChunks?: number;
  /** Answer with this HTTP status and a vendor-shaped JSON error body instead of the normal response. */
  status?: 400 | 401 | 403 | 404 | 429 | 500 | 502 | 503;
  /** With status 429: the Retry-After header, seconds. */
  retryAfterS?: number;
  /** Send a malformed chunk (broken JSON / SSE line / realtime event) after this many good chunks. */
  malformedAfterChunks?: number;
}

export class FaultScript {
  private readonly queue: FaultPlan[] = [];
  constructor(private fallback: FaultPlan = {}) {}

  /** Plans for the next requests, in order. */
  push(...plans: FaultPlan[]): this {
    this.queue.push(...plans);
    return this;
  }

  /** The plan for requests once the queue is empty. */
  setDefault(plan: FaultPlan): this {
    this.fallback = plan;
    return this;
  }

  /** Called by a fake server once per request/session. */
  next(): FaultPlan {
    return this.queue.shift() ?? this.fallback;
  }

  clear(): void {
    this.queue.length = 0;
    this.fallback = {};
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Lets tests wait until a fake has seen what they expect: the fake calls `changed()` whenever its
 * record changes; `until(ready)` resolves with ready's value once it is not undefined.
 */
export class Arrivals {
  private readonly waiters = new Set<() => void>();

  changed(): void {
    for (const wake of [...this.waiters]) wake();
  }

  until<T>(ready: () => T | undefined, timeoutMs: number, what: () => string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const value = ready();
        if (value === undefined) return;
        done();
        resolve(value);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(what()));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }
}

/**
 * Starts a fake's server on a free loopback port, tracking its sockets in `sockets` (so `close()`
 * can destroy connections a fault left hanging). Resolves with the port.
 */
export async function listenOnLoopback(server: Server, sockets: Set<Socket | Duplex>): Promise<number> {
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** Reads a request body as UTF-8, destroying the request past `maxBytes`; calls `done` at its end. */
export function readBody(req: IncomingMessage, maxBytes: number, done: (body: string) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBytes) req.destroy();
    else chunks.push(chunk);
  });
  req.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
}

/**
 * Paces, counts and sabotages the chunks of one response or session, as its FaultPlan says:
 * `chunkDelayMs` between chunks, `stallAfterChunks` stops sending, `dropAfterChunks` destroys the
 * connection, `malformedAfterChunks` writes `malformed` (cut JSON) once after that many good chunks.
 */
export class ChunkGate {
  private sent = 0;
  private chain = Promise.resolve();
  stopped = false;

  constructor(
    private readonly plan: FaultPlan,
    private readonly out: { write(s: string): void; destroy(): void },
    private readonly malformed = '{"type":"conversation.item.inp',
  ) {}

  /** Queues a chunk; chunks go out in order. */
  push(chunk: string): void {
    this.chain = this.chain.then(() => this.emit(chunk));
  }

  done(): Promise<void> {
    return this.chain;
  }

  private async emit(chunk: string): Promise<void> {
    const p = this.plan;
    if (this.stopped) return;
    if (this.sent > 0 && p.chunkDelayMs) await sleep(p.chunkDelayMs);
    if (this.stopped) return;
    if (p.dropAfterChunks !== undefined && this.sent >= p.dropAfterChunks) {
      this.stopped = true;
      return this.out.destroy();
    }
    if (p.stallAfterChunks !== undefined && this.sent >= p.stallAfterChunks) {
      this.stopped = true;
      return;
    }
    if (p.malformedAfterChunks !== undefined && this.sent === p.malformedAfterChunks) this.out.write(this.malformed);
    this.out.write(chunk);
    this.sent++;
  }
}
