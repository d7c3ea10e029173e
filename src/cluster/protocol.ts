/**
 * The messages between the cluster primary and its workers (`WORKERS` > 1, node:cluster). Workers
 * ask the primary (`ask` → `answer`); the primary asks workers in turn (`serve` → `served`) and tells
 * them how many are alive (`workers`). Every message carries TAG, so prom-client's own cluster
 * messages (its AggregatorRegistry) pass by untouched.
 */
import type { RelayedCallback } from '../calls/callback-relay.js';

export const TAG = 'vetline.cluster';

/** What a worker asks the primary. */
export type Ask =
  | { op: 'claim'; nonce: string; ttlMs: number }
  | { op: 'take'; callSid: string }
  | { op: 'calls' }
  | { op: 'metrics' }
  | { op: 'relay'; callback: RelayedCallback };

/** What the primary asks a worker. */
export type Serve = { op: 'release'; callSid: string } | { op: 'list' } | { op: 'callback'; callback: RelayedCallback };

export type ToPrimary = { tag: typeof TAG; kind: 'ask'; id: number; ask: Ask } | { tag: typeof TAG; kind: 'served'; id: number; value: unknown };
export type ToWorker =
  | { tag: typeof TAG; kind: 'answer'; id: number; value: unknown; error?: string }
  | { tag: typeof TAG; kind: 'serve'; id: number; serve: Serve }
  | { tag: typeof TAG; kind: 'workers'; alive: number };

export function isMessage<T extends { tag: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && (m as { tag?: unknown }).tag === TAG;
}

/** How long a worker waits for the primary (and the primary for a worker) before giving up. */
export const ASK_TIMEOUT_MS = 2_000;
