/** Small network helpers for tests that start servers or probe the stream upgrade. */
import WebSocket from 'ws';

export { freePort } from '../../scripts/free-port.js';

/** The HTTP status a WebSocket upgrade to `url` gets: 101 when accepted (the socket is then dropped). */
export function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  const ws = new WebSocket(url, { headers });
  return new Promise((resolve, reject) => {
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => {
      resolve(101);
      ws.terminate();
    });
    ws.once('error', reject);
  });
}
