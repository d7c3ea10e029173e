/**
 * The HTTP connection pool for the vendors' HTTP APIs (OpenAI chat, summaries and recording
 * transcription; ElevenLabs speech over HTTP), handed to their SDKs as their `fetch`.
 *
 * Why not the global fetch: Node's fetch (its bundled undici) closes a connection after 4 s idle,
 * shorter than the gap between two turns of a call (the caller hears the reply, then speaks), so
 * most turns would open a new TCP and TLS connection before their first token: one to three round
 * trips to the vendor, 50–150 ms on the caller's wait. This pool keeps idle connections for
 * `VENDOR_KEEP_ALIVE_MS`, or less when the server says so in its `Keep-Alive` header (undici honours
 * it), and is shared by every call of the process. A POST on a connection the server closed at
 * that very moment fails like any network error: the resilience layer retries or falls back.
 */
import { Agent, fetch as undiciFetch } from 'undici';

/** How long an idle vendor connection is kept (at most; a server's own shorter limit wins). */
export const VENDOR_KEEP_ALIVE_MS = 60_000;

const pool = new Agent({ keepAliveTimeout: VENDOR_KEEP_ALIVE_MS, keepAliveMaxTimeout: VENDOR_KEEP_ALIVE_MS });

/**
 * `fetch` over the shared pool. The cast: undici's fetch is the same WHATWG fetch as the global one
 * (Node's is this library, bundled), but its own type declarations name their Request/Response
 * classes, which TypeScript does not unify with the DOM lib's.
 */
export const vendorFetch = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
  undiciFetch(input as Parameters<typeof undiciFetch>[0], { ...(init as Parameters<typeof undiciFetch>[1]), dispatcher: pool })) as unknown as typeof fetch;
