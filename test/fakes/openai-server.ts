/**
 * One OpenAI origin for a whole engine (it has a single OPENAI_BASE_URL): a small front server that
 * routes `/v1/chat/*` to the fake chat server and everything else (batch transcription, the
 * Realtime WebSocket) to the fake transcription server. Disconnects and resets travel both ways, so
 * each fake still sees a client abort and the client still sees a planned drop.
 */
import { createServer, request, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { startOpenAiChatServer, type ChatResponder, type FakeOpenAiChat } from './openai-chat-server.js';
import { startFakeOpenAiTranscription, type FakeOpenAiTranscription, type FakeOpenAiTranscriptionOptions } from './openai-transcription-server.js';

export interface FakeOpenAi {
  /** `http://127.0.0.1:PORT/v1`: OPENAI_BASE_URL. */
  readonly url: string;
  readonly chat: FakeOpenAiChat;
  readonly transcription: FakeOpenAiTranscription;
  close(): Promise<void>;
}

const portOf = (url: string) => Number(new URL(url).port);

export async function startFakeOpenAi(opts: { apiKey?: string; responder?: ChatResponder; transcription?: FakeOpenAiTranscriptionOptions } = {}): Promise<FakeOpenAi> {
  const chat = await startOpenAiChatServer({ ...(opts.apiKey ? { apiKey: opts.apiKey } : {}), ...(opts.responder ? { responder: opts.responder } : {}) });
  const transcription = await startFakeOpenAiTranscription({ ...opts.transcription, ...(opts.apiKey ? { apiKey: opts.apiKey } : {}) });
  const target = (req: IncomingMessage) => (req.url?.startsWith('/v1/chat/') ? portOf(chat.url) : portOf(transcription.httpUrl));

  const server = createServer((req, res) => {
    const upstream = request({ host: '127.0.0.1', port: target(req), path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
      answer.on('aborted', () => res.destroy());
      answer.on('error', () => res.destroy());
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const upstream = connect(target(req), '127.0.0.1', () => {
      const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : (v ?? '')}`);
      upstream.write(`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`);
      upstream.write(head);
      socket.pipe(upstream).pipe(socket);
    });
    upstream.on('error', () => socket.destroy());
    socket.on('error', () => upstream.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    chat,
    transcription,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([chat.close(), transcription.close()]);
    },
  };
}
