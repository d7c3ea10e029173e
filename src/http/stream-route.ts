/**
 * WS /twilio/ws: the Twilio Media Stream. The upgrade is signature-checked before the handshake;
 * the socket's listeners are attached synchronously (connected/start arrive at once); the `start`
 * message must carry the one-time token /twilio/voice minted for this CallSid.
 */
import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { Registry } from '../calls/registry.js';
import type { CallSession } from '../calls/session.js';
import { upgradeSignatureHook, type SignatureConfig } from '../twilio/signature.js';
import { attachMediaStream, MEDIA_STREAM_WS_OPTIONS, type MediaStreamOptions } from '../twilio/stream-socket.js';

export const STREAM_PATH = '/twilio/ws';

export async function registerStreamRoute(
  app: FastifyInstance,
  deps: { signature: SignatureConfig; registry: Registry; streamOptions?: MediaStreamOptions },
): Promise<void> {
  await app.register(websocket, { options: { ...MEDIA_STREAM_WS_OPTIONS } });
  app.get(STREAM_PATH, { websocket: true, preValidation: upgradeSignatureHook(deps.signature), config: { rateLimit: false } }, (socket, request) => {
    let session: CallSession | undefined;
    const log = request.log;
    const handle = attachMediaStream(
      socket,
      {
        onStart: (start) => {
          const decision = deps.registry.acceptStream(start, handle);
          if (decision === 'accept') session = deps.registry.session(start.callSid);
          else log.warn({ code: 'VET_E_STREAM_TOKEN', reason: decision.reject }, 'media stream refused');
          return decision;
        },
        onMedia: (media) => session?.onMedia(media),
        onDtmf: (dtmf) => session?.onDtmf(dtmf),
        onMark: (mark) => session?.onMark(mark),
        onStop: () => session?.onStop(),
        onClose: (code, reason) => {
          if (!session) {
            log.info({ code, reason }, 'media stream closed before start');
            return;
          }
          session.onClose();
        },
        onHandlerError: (err) => (session?.log ?? log).error({ err }, 'media stream handler failed'),
        onSendDropped: (reason, bufferedAmount) => (session?.log ?? log).warn({ reason, bufferedAmount }, 'outbound frame dropped'),
      },
      deps.streamOptions,
    );
  });
}
