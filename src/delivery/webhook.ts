/**
 * Webhook channel: one signed JSON POST per attempt (docs/delivery.md "Webhook").
 *
 *   2xx                        → delivered
 *   408, 429, 5xx              → retry (the receiver is busy or down)
 *   network error, timeout     → retry
 *   3xx                        → permanent: redirects are not followed (a signed body must not be
 *                                re-sent to wherever a Location points); configure the final URL
 *   any other 4xx              → permanent: the receiver refused this payload, resending won't help
 *
 * Uses Node's global fetch (undici). The whole exchange, headers and the ≤ 200 characters of an
 * error body we keep, is bounded by `timeoutMs`; a 2xx body is never read.
 */
import type { DeliveryPayload } from './payload.js';
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, signVetlineBody } from './signature.js';
import { MAX_ERROR_CHARS, safeErrorText, type SendResult, type WebhookSender } from './types.js';

export const WEBHOOK_TIMEOUT_MS = 10_000;

export interface WebhookSenderOptions {
  /** Engine version for `User-Agent: Vetline/<version>`. */
  version: string;
  /** Bound on one attempt. Default 10 000. */
  timeoutMs?: number;
  /** Wall clock for the signature's `t`, epoch ms. Default Date.now (receivers check it against theirs). */
  now?: () => number;
}

export function createWebhookSender(opts: WebhookSenderOptions): WebhookSender {
  const timeoutMs = opts.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
  const now = opts.now ?? Date.now;
  const userAgent = `Vetline/${opts.version}`;

  return {
    async send(target, payload: DeliveryPayload, signal): Promise<SendResult> {
      const url = webhookUrl(target.url);
      if (url === null) return { ok: false, permanent: true, error: 'webhook url is not an http(s) URL without credentials' };
      if (target.secret === '') return { ok: false, permanent: true, error: 'webhook secret is empty' };
      const body = JSON.stringify(payload);
      const deadline = AbortSignal.timeout(timeoutMs);
      const attempt = AbortSignal.any([signal, deadline]);
      const retry = (error: string): SendResult => ({ ok: false, permanent: false, error: safeErrorText(error, [target.secret]) });
      const lost = () => retry(deadline.aborted ? `timeout after ${timeoutMs} ms` : 'cancelled');

      let res: Response;
      try {
        res = await fetch(url, {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            'User-Agent': userAgent,
            [SIGNATURE_HEADER]: signVetlineBody(target.secret, body, now()),
            [IDEMPOTENCY_HEADER]: payload.id,
          },
          body,
          redirect: 'manual',
          signal: attempt,
        });
      } catch (err) {
        if (attempt.aborted) return lost();
        return retry(`network ${networkCode(err)}`);
      }

      const status = res.status;
      if (status >= 200 && status < 300) {
        await res.body?.cancel().catch(() => {});
        return { ok: true };
      }
      const reason = status >= 300 && status < 400 ? 'redirect not followed (configure the final URL)' : await bodySnippet(res);
      const error = safeErrorText(`HTTP ${status}${reason ? `: ${reason}` : ''}`, [target.secret]);
      const permanent = status < 500 && status !== 408 && status !== 429;
      if (status >= 300 && status < 400) await res.body?.cancel().catch(() => {});
      return { ok: false, permanent, error };
    },
  };
}

/** http(s) only, no credentials (fetch refuses them, and they would end up in logs). */
function webhookUrl(raw: string): URL | null {
  try {
    const u = new URL(raw);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.username === '' && u.password === '' ? u : null;
  } catch {
    return null;
  }
}

/** undici wraps the socket error: `TypeError: fetch failed` with `cause.code` (ECONNREFUSED, …). */
function networkCode(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: unknown } | undefined) : undefined;
  const code = cause?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]{1,40}$/.test(code) ? code : 'error';
}

/** The first ≤ 200 characters of an error response, read no further (the rest is cancelled). */
async function bodySnippet(res: Response): Promise<string> {
  const reader = res.body?.getReader() as ReadableStreamDefaultReader<Uint8Array> | undefined;
  if (!reader) return '';
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (text.length < MAX_ERROR_CHARS) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // A body cut off or timed out: what arrived is enough.
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text.slice(0, MAX_ERROR_CHARS).trim();
}
