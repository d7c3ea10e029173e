/**
 * Delivery test kit: a real webhook receiver on loopback that checks every request's signature
 * with the recipe docs/delivery.md gives receivers (written out here with node:crypto, not through
 * src/delivery/signature.ts), store rows for a finished call, a hand-driven clock and a logger
 * whose lines can be read back.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/observability/logger.js';
import type { CallSummaryInput, DeliveryChannel, DeliveryInput, DeliveryKind, FollowUpInput, FollowUpStore } from '../../src/store/types.js';

export const T0 = Date.UTC(2026, 2, 14, 15, 9, 26, 535);
export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;
export const SECRET = 'whsec_canary-7d1f0e9a2b3c4d5e';
export const CALLER = '+15550100123';
export const CLINIC_SMS_FROM = '+15550100100';

/** docs/delivery.md, "Verifying a delivery" (Node): the same steps a clinic's receiver runs. */
export function receiverVerifies(secret: string, header: string | undefined, rawBody: Buffer, nowMs = Date.now()): boolean {
  if (!header) return false;
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowMs / 1000 - t) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  const given = Buffer.from(parts.v1 ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

export interface Received {
  headers: IncomingMessage['headers'];
  rawBody: Buffer;
  body: Record<string, unknown>;
  /** Signature valid per the documented recipe. */
  verified: boolean;
  idempotencyKey: string | undefined;
}

export interface Reply {
  status?: number;
  body?: string;
  headers?: Record<string, string>;
  /** Answer after this long. */
  delayMs?: number;
  /** Never answer. */
  hang?: boolean;
}

export interface Receiver {
  readonly url: string;
  readonly port: number;
  readonly received: Received[];
  /** Replies for the next requests, in order; afterwards 200 `ok`. */
  script(...replies: Reply[]): void;
  /** Stop listening (connections are refused) until up(). */
  down(): Promise<void>;
  /** Listen again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startReceiver(secret = SECRET): Promise<Receiver> {
  const received: Received[] = [];
  const queue: Reply[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks);
      const header = req.headers['x-vetline-signature'];
      const idem = req.headers['idempotency-key'];
      received.push({
        headers: req.headers,
        rawBody,
        body: JSON.parse(rawBody.toString('utf8')) as Record<string, unknown>,
        verified: receiverVerifies(secret, typeof header === 'string' ? header : undefined, rawBody),
        idempotencyKey: typeof idem === 'string' ? idem : undefined,
      });
      const reply = queue.shift() ?? {};
      if (reply.hang) return;
      const answer = () => {
        if (!res.destroyed) res.writeHead(reply.status ?? 200, { 'Content-Type': 'text/plain', ...reply.headers }).end(reply.body ?? 'ok');
      };
      if (!reply.delayMs) return answer();
      const timer = setTimeout(() => {
        timers.delete(timer);
        answer();
      }, reply.delayMs);
      timers.add(timer);
    });
  };

  let server: Server = createServer(handle);
  const listen = (s: Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      s.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve((s.address() as AddressInfo).port));
    });
  const stop = async () => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  const port = await listen(server, 0);

  return {
    url: `http://127.0.0.1:${port}/hooks/vetline`,
    port,
    received,
    script: (...replies) => void queue.push(...replies),
    down: stop,
    async up() {
      server = createServer(handle);
      await listen(server, port);
    },
    close: () => (server.listening ? stop() : Promise.resolve()),
  };
}

/** A clock the test moves by hand. */
export function manualClock(start = T0) {
  let t = start;
  return {
    now: () => t,
    set(ms: number) {
      t = ms;
    },
    advance(ms: number) {
      t += ms;
    },
  };
}

/** A logger (the engine's, with its redaction) whose JSON lines the test reads back. */
export function capturedLogger(): { logger: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''));
      done();
    },
  });
  const logger = createLogger({ level: 'debug', destination });
  return {
    logger,
    get lines() {
      return raw.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text: () => raw.join('\n'),
  };
}

export const newCallSid = () => `CA${randomUUID().replaceAll('-', '')}`;

export function followUp(over: Partial<FollowUpInput> = {}): FollowUpInput {
  return {
    id: randomUUID(),
    clinicId: 'riverside',
    callSid: newCallSid(),
    type: 'appointment_request',
    createdAt: T0,
    callerNumber: CALLER,
    callerName: 'Ana García',
    petName: 'Bella',
    petSpecies: 'dog',
    reason: 'limping since Tuesday',
    preferredTime: 'Thursday morning',
    message: null,
    recipient: null,
    urgency: 'soon',
    emergency: null,
    ...over,
  };
}

export function summaryOf(f: Pick<FollowUpInput, 'callSid' | 'clinicId' | 'callerNumber'>, over: Partial<CallSummaryInput> = {}): CallSummaryInput {
  return {
    callSid: f.callSid,
    clinicId: f.clinicId,
    startedAt: T0 - 2 * MINUTE,
    endedAt: T0 + 30 * SECOND,
    outcome: 'completed',
    summary: 'Ana called about Bella, who has been limping since Tuesday; wants Thursday morning.',
    summarySource: 'template',
    transcript: [
      { role: 'agent', text: 'Riverside Vet, how can I help?' },
      { role: 'caller', text: 'My dog Bella is limping.' },
    ],
    callerNumber: f.callerNumber,
    recordings: [],
    ...over,
  };
}

export function delivery(subject: { id: string; clinicId: string; callSid: string }, channel: DeliveryChannel, kind: DeliveryKind, over: Partial<DeliveryInput> = {}): DeliveryInput {
  const createdAt = over.createdAt ?? T0;
  return {
    id: randomUUID(),
    clinicId: subject.clinicId,
    callSid: subject.callSid,
    channel,
    kind,
    subjectId: subject.id,
    createdAt,
    holdUntil: createdAt + 10 * MINUTE,
    expiresAt: createdAt + DAY,
    ...over,
  };
}

/**
 * A call that left one follow-up: the follow-up with its (held) deliveries on `channels`, then the
 * call's end (summary written, deliveries released, due at `endAt`). Returns the rows' ids.
 */
export async function finishedCall(
  store: FollowUpStore,
  channels: readonly DeliveryChannel[] = ['webhook'],
  over: { followUp?: Partial<FollowUpInput>; summary?: Partial<CallSummaryInput> | null; endAt?: number } = {},
) {
  const f = followUp(over.followUp);
  const deliveries = channels.map((c) => delivery(f, c, f.type));
  await store.recordFollowUp(f, deliveries);
  if (over.summary !== null) await store.finishCall(summaryOf(f, over.summary), [], over.endAt ?? T0 + 30 * SECOND);
  return { followUp: f, deliveries };
}
