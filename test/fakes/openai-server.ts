/**
 * One OpenAI origin for a whole engine (it has a single OPENAI_BASE_URL): a front (./front.ts) that
 * routes `/v1/chat/*` to the fake chat server and everything else (batch transcription, the
 * Realtime WebSocket) to the fake transcription server.
 */
import { portOf, startFront } from './front.js';
import { startOpenAiChatServer, type ChatResponder, type FakeOpenAiChat } from './openai-chat-server.js';
import { startFakeOpenAiTranscription, type FakeOpenAiTranscription, type FakeOpenAiTranscriptionOptions } from './openai-transcription-server.js';

export interface FakeOpenAi {
  /** `http://127.0.0.1:PORT/v1`: OPENAI_BASE_URL. */
  readonly url: string;
  readonly chat: FakeOpenAiChat;
  readonly transcription: FakeOpenAiTranscription;
  close(): Promise<void>;
}

export async function startFakeOpenAi(opts: { apiKey?: string; responder?: ChatResponder; transcription?: FakeOpenAiTranscriptionOptions } = {}): Promise<FakeOpenAi> {
  const chat = await startOpenAiChatServer({ ...(opts.apiKey ? { apiKey: opts.apiKey } : {}), ...(opts.responder ? { responder: opts.responder } : {}) });
  const transcription = await startFakeOpenAiTranscription({ ...opts.transcription, ...(opts.apiKey ? { apiKey: opts.apiKey } : {}) });
  const front = await startFront((path) => (path.startsWith('/v1/chat/') ? portOf(chat.url) : portOf(transcription.httpUrl)));
  return {
    url: `${front.origin}/v1`,
    chat,
    transcription,
    async close() {
      await front.close();
      await Promise.all([chat.close(), transcription.close()]);
    },
  };
}
