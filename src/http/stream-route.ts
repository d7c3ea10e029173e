/**
 * WS /twilio/ws/<token>: the Twilio Media Stream. Before the handshake the upgrade's signature is
 * checked, then the path's stream token (HMAC, expiry, account, clinic, first use: calls/stream-token.ts),
 * and only then is a waiting-socket slot taken. The socket's listeners are attached synchronously
 * (connected/start arrive at once); `start` must name the call and account the token was minted for.
 */
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from '../calls/registry.js';
import type { CallSession } from '../calls/session.js';
import type { CallHandoff } from '../calls/handoff.js';
import type { StreamTokenClaims } from '../calls/stream-token.js';
import { upgradeSignatureHook, type SignatureConfig } from '../twilio/signature.js';
import { createDevGate, type DevGate } from './dev-gate.js';
import {
  attachMediaStream, CLOSE, MEDIA_STREAM_WS_OPTIONS, streamCounters, type MediaStreamOptions,
} from '../twilio/stream-socket.js';

export const STREAM_PATH = '/twilio/ws';
/** The route as registered: the token is the last path segment (Twilio forbids a query string). */
export const STREAM_ROUTE = `${STREAM_PATH}/:token`;

type Release = () => void;

/**
 * Slots for sockets upgraded but not yet started (docs/design/reliability.md F5): a socket that never sends
 * `start` holds one until the start timeout. A slot is taken before the handshake, only after the
 * upgrade's signature and its single-use stream token were checked, and given back at an accepted
 * `start` or at close, whichever comes first. So every waiting socket is a call some worker
 * answered: there are as many slots as the process holds calls (MAX_CALLS), and none per client
 * address, since Twilio's media servers share addresses (F16). Smaller caps (32 per process, 4 per
 * address) refused genuine calls whenever a burst of them waited on a busy event loop.
 */
export class PendingStreams {
  private total = 0;

  constructor(private readonly limits: { total: number }) {}

  /** A release function (idempotent), or 'total' when the process's slots are all taken. */
  reserve(): Release | 'total' {
    if (this.total >= this.limits.total) return 'total';
    this.total++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.total--;
    };
  }

  get size(): number {
    return this.total;
  }
}

export async function registerStreamRoute(
  app: FastifyInstance,
  deps: { signature: SignatureConfig; registry: Registry; streamOptions?: MediaStreamOptions; devGate?: DevGate; handoff?: CallHandoff },
): Promise<void> {
  const counters = deps.streamOptions?.counters ?? streamCounters;
  const pending = new PendingStreams({
    total: deps.streamOptions?.maxPendingStreams ?? deps.registry.capacity,
  });
  const slots = new WeakMap<FastifyRequest, Release>();
  const claimsOf = new WeakMap<FastifyRequest, StreamTokenClaims>();

  // After the signature check and before a slot: a forged, expired, foreign or replayed token is
  // refused 403 (like a bad signature; Twilio then runs the verbs after </Connect>) and holds nothing.
  const checkToken = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!req.ws) return undefined; // a plain GET: the route answers 404
    const { token } = req.params as { token: string };
    let result: Awaited<ReturnType<Registry['streamTokens']['verify']>>;
    try {
      result = await deps.registry.streamTokens.verify(token);
    } catch (err) {
      // The shared single-use store (REDIS_URL) did not answer: fail closed, before the handshake,
      // so Twilio runs the verbs after </Connect> (the clinic's key menu), never silence.
      req.log.error({ code: 'VET_E_REDIS', err: { message: (err as Error).message } }, 'stream upgrade refused: the stream token could not be checked');
      return reply.code(503).send();
    }
    if (result.ok) {
      claimsOf.set(req, result.claims);
      // Answered by another worker or instance: take the call over before the handshake (calls/handoff.ts).
      const { callSid } = result.claims;
      if (deps.handoff && !deps.registry.session(callSid) && deps.registry.acceptsStreamUpgrades()) {
        const seed = await deps.handoff.take(callSid).catch((err: unknown) => {
          req.log.warn({ err }, 'call handoff failed');
          return null;
        });
        if (seed && !deps.registry.adopt(result.claims, seed)) req.log.warn('call released by another worker could not be taken over here');
      }
      return undefined;
    }
    req.log.warn({ code: 'VET_E_STREAM_TOKEN', reason: result.reason }, 'stream upgrade refused: bad stream token');
    return reply.code(403).send();
  };

  // After the signature check, so only signed upgrades take (or are refused) a slot. 503 before the
  // handshake, like the drain's refusal in server.ts: Twilio then runs the verbs after </Connect>.
  const reserveSlot = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!req.ws) return undefined; // a plain GET: the route answers 404
    const slot = pending.reserve();
    if (typeof slot === 'function') {
      slots.set(req, slot);
      req.raw.socket.once('close', slot); // a handshake that fails never reaches the handler
      return undefined;
    }
    counters.upgradesRefused[slot]++;
    req.log.warn({ code: 'VET_E_STREAM_CAPACITY', limit: slot, awaitingStart: pending.size }, 'stream upgrade refused: too many sockets awaiting start');
    return reply.code(503).send();
  };

  // With signatures off (development bypass), an unsigned upgrade only from where the mode allows
  // (src/http/dev-gate.ts; default: this machine only); refused like a bad signature.
  const devGate = deps.devGate ?? createDevGate({ mode: 'local', publicBaseUrl: deps.signature.publicBaseUrl });
  const bypassAllowed = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (deps.signature.validation !== 'off-development') return undefined;
    const why = devGate.check(req);
    if (why === null) return undefined;
    req.log.warn({ code: 'VET_E_SIGNATURE', reason: `development bypass refused (${why})` }, 'stream upgrade refused');
    return reply.code(403).send();
  };

  await app.register(websocket, { options: { ...MEDIA_STREAM_WS_OPTIONS } });
  const preValidation = [bypassAllowed, upgradeSignatureHook(deps.signature), checkToken, reserveSlot];
  app.get(STREAM_ROUTE, { websocket: true, preValidation, config: { rateLimit: false } }, (socket, request) => {
    let session: CallSession | undefined;
    let backpressureDrops = 0;
    const log = request.log;
    const release = slots.get(request) ?? (() => undefined);
    const claims = claimsOf.get(request);
    const handle = attachMediaStream(
      socket,
      {
        onStart: (start) => {
          const decision: ReturnType<Registry['acceptStream']> = claims ? deps.registry.acceptStream(start, handle, claims) : { reject: 'no stream token' };
          if (decision === 'accept') {
            session = deps.registry.session(start.callSid);
            release();
          } else log.warn({ code: 'VET_E_STREAM_TOKEN', reason: decision.reject }, 'media stream refused');
          return decision;
        },
        onMedia: (media) => session?.onMedia(media),
        onDtmf: (dtmf) => session?.onDtmf(dtmf),
        onMark: (mark) => session?.onMark(mark),
        onStop: () => session?.onStop(),
        onClose: (code, reason) => {
          release();
          if (code === CLOSE.tryAgainLater) {
            (session?.log ?? log).warn({ code: 'VET_E_STREAM_BACKPRESSURE', droppedSends: backpressureDrops }, 'media stream closed: Twilio stopped reading');
          }
          if (!session) {
            log.info({ code, reason }, 'media stream closed before start');
            return;
          }
          session.onClose();
        },
        onHandlerError: (err) => (session?.log ?? log).error({ err }, 'media stream handler failed'),
        onSendDropped: (reason, bufferedAmount) => {
          // A stalled peer drops every frame (~100/s): log the first, count the rest (closed with 1013).
          if (reason === 'backpressure' && backpressureDrops++ > 0) return;
          (session?.log ?? log).warn({ reason, bufferedAmount }, 'outbound frame dropped');
        },
      },
      { ...deps.streamOptions, transport: request.raw.socket },
    );
  });
}
