/**
 * A worker's side of the cluster (protocol.ts): stream-token uses and call take-overs go through the
 * primary, so a token is used once on the whole machine and the worker holding a call waiting for
 * its stream releases it to the worker the stream reached; call listing, metrics and health see
 * every worker. Loaded only in a worker process (src/main.ts).
 */
import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry as PromRegistry } from 'prom-client';
import { applyRelayed, type RelayedCallback } from '../calls/callback-relay.js';
import type { CallHandoff } from '../calls/handoff.js';
import type { CallSeed, Registry } from '../calls/registry.js';
import type { TokenUseStore } from '../calls/stream-token.js';
import type { CallListing } from '../calls/types.js';
import { ASK_TIMEOUT_MS, isMessage, TAG, type Ask, type Tell, type ToPrimary, type ToWorker } from './protocol.js';

/** What the engine sees of the other workers (server.ts). */
export interface ClusterView {
  /** This worker's name in call listings: `worker-<n>`. */
  readonly workerId: string;
  /** Worker processes alive now (the primary's count; /twilio/health). */
  workers(): number;
  /** Live calls of every worker but this one, each naming its worker. */
  otherCalls(): Promise<(CallListing & { instance: string })[]>;
  /** The Prometheus text of every worker's registry, aggregated by the primary. */
  metrics(): Promise<string>;
  /** A Twilio callback for a call this worker does not hold: the primary hands it to every other worker. */
  relay(callback: RelayedCallback): void;
  /** The inspector's live feed across workers (InspectorFeed's `relay`, `onPages`, `remote`, `resync`). */
  inspector: {
    relay(message: unknown): void;
    pages(count: number): void;
    on(remote: (message: unknown) => void, resync: () => void): void;
  };
  /** Desk live updates across workers (DeskEvents' `relay` and `deliver`). */
  desk: { relay(clinicId: string): void; on(deliver: (clinicId: string) => void): void };
}

export interface ClusterWorker {
  tokenUses: TokenUseStore;
  handoff: CallHandoff;
  view: ClusterView;
  /** Answer the primary's questions with this engine's registry, and expose its metrics to the aggregation. */
  serve(registry: Registry, metrics: PromRegistry): void;
}

const send = (m: ToPrimary) => process.send?.(m);

export function clusterWorker(): ClusterWorker {
  const workerId = `worker-${cluster.worker?.id ?? 0}`;
  let alive = 1;
  let next = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let registry: Registry | null = null;
  let pagesElsewhere = false;
  let onInspector: ((message: unknown) => void) | null = null;
  let onResync: (() => void) | null = null;
  let onDesk: ((clinicId: string) => void) | null = null;
  const tell = (t: Tell) => process.send?.({ tag: TAG, kind: 'tell', tell: t } satisfies ToPrimary);

  process.on('message', (m: unknown) => {
    if (!isMessage<ToWorker>(m)) return;
    if (m.kind === 'workers') alive = m.alive;
    else if (m.kind === 'live') {
      if (m.live === 'inspector') onInspector?.(m.message);
      else onDesk?.(m.clinicId);
    } else if (m.kind === 'pages') {
      pagesElsewhere = m.pagesElsewhere;
      if (m.resync) onResync?.();
    }
    else if (m.kind === 'answer') {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(m.error));
      else p?.resolve(m.value);
    } else if (m.kind === 'serve') {
      const s = m.serve;
      const value = !registry ? null : s.op === 'release' ? registry.release(s.callSid) : s.op === 'list' ? registry.list() : applyRelayed(registry, s.callback);
      send({ tag: TAG, kind: 'served', id: m.id, value });
    }
  });

  const ask = <T>(a: Ask): Promise<T> => {
    const id = ++next;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`cluster primary did not answer ${a.op}`));
      }, ASK_TIMEOUT_MS);
      timer.unref();
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      send({ tag: TAG, kind: 'ask', id, ask: a });
    });
  };

  return {
    tokenUses: { claim: (nonce, ttlMs) => ask<boolean>({ op: 'claim', nonce, ttlMs }) },
    handoff: { take: (callSid) => ask<CallSeed | null>({ op: 'take', callSid }) },
    view: {
      workerId,
      workers: () => alive,
      otherCalls: async () => (await ask<(CallListing & { instance: string })[]>({ op: 'calls' })).filter((c) => c.instance !== workerId),
      metrics: () => ask<string>({ op: 'metrics' }),
      relay: (callback) => void ask({ op: 'relay', callback }).catch(() => undefined),
      inspector: {
        relay: (message) => pagesElsewhere && tell({ live: 'inspector', message }),
        pages: (count) => tell({ pages: count }),
        on: (remote, resync) => {
          onInspector = remote;
          onResync = resync;
        },
      },
      desk: {
        relay: (clinicId) => tell({ live: 'desk', clinicId }),
        on: (deliver) => {
          onDesk = deliver;
        },
      },
    },
    serve(r, metrics) {
      registry = r;
      AggregatorRegistry.setRegistries([metrics]);
      // Constructing one installs prom-client's answer to the primary's metrics requests in this worker.
      new AggregatorRegistry();
    },
  };
}
