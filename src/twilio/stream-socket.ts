/**
 * Socket-level handling of one Twilio Media Stream (docs/design/twilio.md §3.6, docs/design/reliability.md F2–F5, F13).
 * Listeners go on synchronously, so `connected`/`start` cannot be lost to an `await`. Frames are
 * parsed by the codec; nothing a peer sends, and nothing a handler throws, escapes a listener.
 *
 * Terminal path: exactly one of `onStop` (Twilio's `stop` after an accepted `start`) or `onClose`
 * (any close first, including our own policy closes, delivered at once with our code) is called,
 * once; after it no handler runs. After `stop` the socket is closed with 1000.
 */
import type { RawData, ServerOptions, WebSocket } from 'ws';
import { INVALID_REASONS, parseInbound } from './media-codec.js';
import type {
  DtmfMessage, InvalidReason, MarkMessage, MediaMessage, StartMessage, StopMessage,
} from './media-codec.js';

/**
 * For `@fastify/websocket`'s `options` (passed verbatim to `new WebSocket.Server`, except `server`
 * and `noServer`). `maxFragments` exists in ws 8.23 (lib/websocket-server.js, @types/ws 8.18) though
 * its README does not list it; default 16,384. Over-limit closes: maxPayload → 1009,
 * maxFragments → 1008, bad UTF-8 → 1007.
 */
export const MEDIA_STREAM_WS_OPTIONS = {
  maxPayload: 64 * 1024,
  maxFragments: 64,
  perMessageDeflate: false,
  skipUTF8Validation: false,
} as const satisfies ServerOptions;

export const CLOSE = { normal: 1000, unsupported: 1003, policy: 1008, internal: 1011, tryAgainLater: 1013 } as const;


export type StartDecision = 'accept' | { reject: string };
export type SendDropReason = 'notStarted' | 'closed' | 'backpressure';

export interface MediaStreamHandlers {
  /** Synchronous: decide on the stream (token, callSid). Reject → 1008, nothing else is called but onClose. */
  onStart(start: StartMessage): StartDecision;
  onMedia?(media: MediaMessage): void;
  onDtmf?(dtmf: DtmfMessage): void;
  onMark?(mark: MarkMessage): void;
  onStop?(stop: StopMessage): void;
  onClose?(code: number, reason: string): void;
  onHandlerError?(err: unknown): void;
  onSendDropped?(reason: SendDropReason, bufferedAmount: number): void;
}

export interface MediaStreamOptions {
  /** A valid `start` must arrive within this, else 1008 (docs/design/reliability.md F5). */
  startTimeoutMs?: number;
  /** No inbound frame for this long after `start` → 1008 (Twilio streams silence). 0 = off. */
  idleTimeoutMs?: number;
  /** The socket is closed 1008 at this many invalid frames. */
  maxInvalidFrames?: number;
  /** `send` drops (and reports) while `socket.bufferedAmount` exceeds this (F13). */
  maxBufferedBytes?: number;
  /** Still over `maxBufferedBytes` this long after the first dropped send → close 1013 (the peer stopped reading). */
  backpressureCloseMs?: number;
  /** Upgraded sockets awaiting `start` in the process (read by the route; default the process's call capacity). */
  maxPendingStreams?: number;
  /** After we close, a peer that does not finish the handshake is terminated after this. */
  closeGraceMs?: number;
  counters?: StreamCounters;
  now?: () => number;
  /**
   * The TCP socket under the WebSocket (the upgrade request's socket). `batch` corks it, so the
   * frames sent inside go out in one write: a `media` message and its mark are two frames, and two
   * `writev` system calls each 100 ms per call were the largest cost of playback.
   */
  transport?: { cork(): void; uncork(): void };
}

/** Fresh counters; all plain numbers so /metrics can read them without locking or copying. */
export const createStreamCounters = () => ({
  sockets: 0, framesIn: 0, bytesIn: 0, mediaFrames: 0, invalidTotal: 0,
  invalid: Object.fromEntries(INVALID_REASONS.map((r) => [r, 0])) as Record<InvalidReason, number>,
  /** Unknown events (ignored by protocol rule), frames before an accepted start, frames after we closed. */
  ignoredEvents: 0, ignoredBeforeStart: 0, ignoredAfterClose: 0,
  accepted: 0, rejected: 0, duplicateStarts: 0, startTimeouts: 0, idleTimeouts: 0,
  binaryCloses: 0, invalidCloses: 0, handlerErrors: 0, socketErrors: 0, backpressureCloses: 0,
  /** Upgrades answered 503 because too many sockets awaited `start` in the process. */
  upgradesRefused: { total: 0 },
  sendsOk: 0, sendsDropped: { notStarted: 0, closed: 0, backpressure: 0 } as Record<SendDropReason, number>,
});
export type StreamCounters = ReturnType<typeof createStreamCounters>;

/** Process-wide totals for /metrics (used unless `opts.counters` is given). */
export const streamCounters: StreamCounters = createStreamCounters();

export type StreamState = 'awaitingStart' | 'started' | 'stopped' | 'closed';

export interface MediaStreamHandle {
  /** Send a JSON text frame (codec builders). False if dropped: not started, closed or backpressure. */
  send(json: string): boolean;
  /** Runs `sends` with the frames it sends held back and written together at its end (no delay). */
  batch(sends: () => void): void;
  /** Close the socket; delivers onClose(code, reason) unless the stream already ended. */
  close(code?: number, reason?: string): void;
  readonly state: StreamState;
  readonly streamSid: string | null;
  readonly callSid: string | null;
}

const toText = (data: RawData): Buffer =>
  Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);

/** Attach to a freshly upgraded socket. Call synchronously in the route handler, before any await. */
export function attachMediaStream(
  socket: WebSocket,
  handlers: MediaStreamHandlers,
  opts: MediaStreamOptions = {},
): MediaStreamHandle {
  const c = opts.counters ?? streamCounters;
  const now = opts.now ?? (() => performance.now());
  const maxInvalid = opts.maxInvalidFrames ?? 10;
  const maxBuffered = opts.maxBufferedBytes ?? 1024 * 1024;
  const idleMs = opts.idleTimeoutMs ?? 10_000;
  const graceMs = opts.closeGraceMs ?? 1_000;
  const stallMs = opts.backpressureCloseMs ?? 5_000;

  let state: StreamState = 'awaitingStart';
  let closing = false; // we called socket.close(): ignore further frames
  let ended = false; // the terminal callback has run
  let invalidCount = 0;
  let streamSid: string | null = null;
  let callSid: string | null = null;
  let lastFrameAt = now();
  let startTimer: ReturnType<typeof setTimeout> | null = null;
  let idleTimer: ReturnType<typeof setTimeout> | null = null;
  let killTimer: ReturnType<typeof setTimeout> | null = null;
  let stallTimer: ReturnType<typeof setTimeout> | null = null; // armed by the first send dropped for backpressure
  c.sockets++;

  const report = (err: unknown): void => {
    c.handlerErrors++;
    try {
      handlers.onHandlerError?.(err);
    } catch {
      // The error reporter itself threw: nothing sensible is left to tell.
    }
  };
  const clearTimers = (): void => {
    if (startTimer) clearTimeout(startTimer);
    if (idleTimer) clearTimeout(idleTimer);
    if (stallTimer) clearTimeout(stallTimer);
    startTimer = idleTimer = stallTimer = null;
  };

  const endWithClose = (code: number, reason: string): void => {
    if (ended) return;
    ended = true;
    state = 'closed';
    try {
      handlers.onClose?.(code, reason);
    } catch (err) {
      report(err);
    }
  };

  const closeWith = (code: number, reason: string): void => {
    clearTimers();
    if (!closing) {
      closing = true;
      // A close reason is capped at 123 UTF-8 bytes (ws throws beyond); handler-chosen ones may be long.
      const safe = Buffer.byteLength(reason) <= 123 ? reason : reason.slice(0, 60).replace(/[^\x20-\x7e]/g, '?');
      try {
        socket.close(code, safe);
      } catch (err) {
        report(err);
        socket.terminate();
      }
      killTimer = setTimeout(() => socket.terminate(), graceMs);
      killTimer.unref();
    }
    endWithClose(code, reason);
  };

  startTimer = setTimeout(() => {
    if (state !== 'awaitingStart' || closing) return;
    c.startTimeouts++;
    closeWith(CLOSE.policy, 'start timeout');
  }, opts.startTimeoutMs ?? 5_000);
  startTimer.unref();

  const checkIdle = (): void => {
    idleTimer = null;
    if (state !== 'started' || closing) return;
    const quietMs = now() - lastFrameAt;
    if (quietMs >= idleMs) {
      c.idleTimeouts++;
      closeWith(CLOSE.policy, 'idle timeout');
      return;
    }
    idleTimer = setTimeout(checkIdle, idleMs - quietMs);
    idleTimer.unref();
  };

  const onStart = (start: StartMessage): void => {
    if (state !== 'awaitingStart') {
      c.duplicateStarts++;
      closeWith(CLOSE.policy, 'duplicate start');
      return;
    }
    let decision: StartDecision;
    try {
      decision = handlers.onStart(start);
    } catch (err) {
      report(err);
      c.rejected++;
      closeWith(CLOSE.internal, 'start handler failed');
      return;
    }
    if (decision !== 'accept') {
      c.rejected++;
      // Defensive against a JS caller returning neither shape: still a rejection, never a throw.
      const code: unknown = (decision as { reject?: unknown } | null)?.reject;
      closeWith(CLOSE.policy, typeof code === 'string' ? code : 'rejected');
      return;
    }
    if (closing) return; // the handler closed the stream itself
    c.accepted++;
    clearTimers();
    state = 'started';
    streamSid = start.streamSid;
    callSid = start.callSid;
    if (idleMs > 0) {
      idleTimer = setTimeout(checkIdle, idleMs);
      idleTimer.unref();
    }
  };

  const onMessage = (data: RawData, isBinary: boolean): void => {
    c.framesIn++;
    if (closing) {
      c.ignoredAfterClose++; // includes a second `stop`: after the first we have closed
      return;
    }
    if (isBinary) {
      c.invalidTotal++;
      c.invalid.binary++;
      c.binaryCloses++;
      closeWith(CLOSE.unsupported, 'binary frame');
      return;
    }
    const raw = toText(data);
    c.bytesIn += raw.length;
    lastFrameAt = now();
    const msg = parseInbound(raw, false);
    if (msg.kind === 'invalid') {
      c.invalidTotal++;
      c.invalid[msg.reason]++;
      // A start we cannot decode can never become a working call: fail now, not at the timeout.
      if (msg.reason === 'mediaFormat') return closeWith(CLOSE.policy, 'unsupported media format');
      if (++invalidCount >= maxInvalid) {
        c.invalidCloses++;
        closeWith(CLOSE.policy, 'too many invalid frames');
      }
      return;
    }
    if (msg.kind === 'ignored') {
      c.ignoredEvents++;
      return;
    }
    if (msg.kind === 'connected') return;
    if (msg.kind === 'start') return onStart(msg);
    if (state !== 'started') {
      c.ignoredBeforeStart++;
      return;
    }
    // A handler that throws is caught by the listener below and reported; the socket lives on.
    switch (msg.kind) {
      case 'media':
        c.mediaFrames++;
        return handlers.onMedia?.(msg);
      case 'dtmf':
        return handlers.onDtmf?.(msg);
      case 'mark':
        return handlers.onMark?.(msg);
      case 'stop':
        state = 'stopped';
        ended = true; // onStop is the terminal callback: no onClose follows
        closeWith(CLOSE.normal, 'stop'); // first, so a throwing onStop cannot skip it
        return handlers.onStop?.(msg);
    }
  };

  /**
   * A peer that stops reading fills the kernel's buffers, then ours: `send` drops from then on, and
   * if the socket is still over the cap `stallMs` later the stream ends 1013 (F13) instead of
   * playing into the void. A send that gets through disarms it.
   */
  const onStall = (): void => {
    stallTimer = null;
    if (closing || socket.bufferedAmount <= maxBuffered) return;
    c.backpressureCloses++;
    closeWith(CLOSE.tryAgainLater, 'peer not reading');
  };
  const noteStall = (stalled: boolean): void => {
    if (!stalled) {
      if (stallTimer) clearTimeout(stallTimer);
      stallTimer = null;
    } else if (!stallTimer) {
      stallTimer = setTimeout(onStall, stallMs);
      stallTimer.unref();
    }
  };

  socket.on('message', (data: RawData, isBinary: boolean) => {
    try {
      onMessage(data, isBinary);
    } catch (err) {
      report(err); // a handler's throw (or a bug here) costs one frame, not the process
    }
  });
  socket.on('error', () => {
    c.socketErrors++; // ws closes the socket after 'error'; 'close' follows
  });
  socket.on('close', (code: number, reason: Buffer) => {
    clearTimers();
    if (killTimer) clearTimeout(killTimer);
    closing = true;
    endWithClose(code, reason.toString('utf8'));
  });

  return {
    send(json: string): boolean {
      const drop = (why: SendDropReason): false => {
        c.sendsDropped[why]++;
        try {
          handlers.onSendDropped?.(why, socket.bufferedAmount);
        } catch (err) {
          report(err);
        }
        return false;
      };
      if (state !== 'started') return drop(state === 'awaitingStart' ? 'notStarted' : 'closed');
      if (closing || socket.readyState !== socket.OPEN) return drop('closed');
      if (socket.bufferedAmount > maxBuffered) {
        noteStall(true);
        return drop('backpressure');
      }
      try {
        socket.send(json);
      } catch {
        return drop('closed');
      }
      noteStall(false);
      c.sendsOk++;
      return true;
    },
    batch(sends: () => void): void {
      const transport = opts.transport;
      if (!transport) return sends();
      transport.cork();
      try {
        sends();
      } finally {
        transport.uncork();
      }
    },
    close(code = CLOSE.normal, reason = 'closed') {
      closeWith(code, reason);
    },
    get state() { return state; },
    get streamSid() { return streamSid; },
    get callSid() { return callSid; },
  };
}
