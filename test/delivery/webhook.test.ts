/** The webhook sender alone, against raw node:http servers on loopback. */
import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { followUpPayload } from '../../src/delivery/payload.js';
import { createWebhookSender } from '../../src/delivery/webhook.js';
import { SECRET, T0, followUp } from './kit.js';

const payload = followUpPayload({ ...followUp(), status: 'new', handledBy: null, notes: [], updatedAt: T0 }, null);
const never = new AbortController().signal;
const closers: (() => Promise<void>)[] = [];

async function serve(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
}

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

describe('webhook sender', () => {
  const sender = createWebhookSender({ version: '1.2.3', timeoutMs: 500 });

  it('refuses URLs it must not call, without a request', async () => {
    for (const url of ['ftp://example.com/x', 'not a url', 'https://user:pw@example.com/hook']) {
      expect(await sender.send({ url, secret: SECRET }, payload, never)).toEqual({
        ok: false,
        permanent: true,
        error: 'webhook url is not an http(s) URL without credentials',
      });
    }
    expect(await sender.send({ url: 'http://127.0.0.1:1/x', secret: '' }, payload, never)).toMatchObject({ permanent: true, error: 'webhook secret is empty' });
  });

  it('does not wait for the body of a 2xx', async () => {
    const url = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('accepted, and this body never ends');
    });
    const started = performance.now();
    expect(await sender.send({ url, secret: SECRET }, payload, never)).toEqual({ ok: true });
    expect(performance.now() - started).toBeLessThan(400);
  });

  it('keeps at most 200 characters of an error body and does not wait for the rest', async () => {
    const url = await serve((req, res) => {
      req.resume();
      res.writeHead(422, { 'Content-Type': 'text/plain' });
      res.write(`rejected: ${'x'.repeat(5_000)}`);
    });
    const started = performance.now();
    const result = await sender.send({ url, secret: SECRET }, payload, never);
    expect(performance.now() - started).toBeLessThan(400);
    expect(result).toMatchObject({ ok: false, permanent: true });
    if (result.ok) return;
    expect(result.error).toMatch(/^HTTP 422: rejected: x+…$/);
    expect(result.error.length).toBe(200);
  });

  it('reports a connection cut mid-request as a network error to retry', async () => {
    const url = await serve((req) => req.socket.destroy());
    expect(await sender.send({ url, secret: SECRET }, payload, never)).toMatchObject({ ok: false, permanent: false, error: expect.stringMatching(/^network [A-Z_]+$/) as unknown });
  });

  it('is cancelled by the caller signal (not a timeout)', async () => {
    const url = await serve(() => {});
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 50);
    expect(await sender.send({ url, secret: SECRET }, payload, ctl.signal)).toEqual({ ok: false, permanent: false, error: 'cancelled' });
  });
});
