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

/**
 * Live updates for pages open on other workers: the inspector's relayed messages (sent only while
 * a page is open somewhere: `pages` counts this worker's), and the clinic ids of changed follow-ups.
 */
export type Tell = { live: 'inspector'; message: unknown } | { live: 'desk'; clinicId: string } | { pages: number };

export type ToPrimary =
  | { tag: typeof TAG; kind: 'ask'; id: number; ask: Ask }
  | { tag: typeof TAG; kind: 'served'; id: number; value: unknown }
  | { tag: typeof TAG; kind: 'tell'; tell: Tell };
export type ToWorker =
  | { tag: typeof TAG; kind: 'answer'; id: number; value: unknown; error?: string }
  | { tag: typeof TAG; kind: 'serve'; id: number; serve: Serve }
  | { tag: typeof TAG; kind: 'workers'; alive: number }
  | { tag: typeof TAG; kind: 'live'; live: 'inspector'; message: unknown }
  | { tag: typeof TAG; kind: 'live'; live: 'desk'; clinicId: string }
  /** `pagesElsewhere`: an inspector page is open on another worker (relay to it); `resync`: one just opened. */
  | { tag: typeof TAG; kind: 'pages'; pagesElsewhere: boolean; resync: boolean };

export function isMessage<T extends { tag: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && (m as { tag?: unknown }).tag === TAG;
}

/** How long a worker waits for the primary (and the primary for a worker) before giving up. */
export const ASK_TIMEOUT_MS = 2_000;
