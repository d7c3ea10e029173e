/**
 * The cluster primary (`WORKERS` > 1): forks the workers, which share one listening port
 * (node:cluster hands connections round-robin), and serves what must be one for the whole machine:
 * stream-token single use, the take-over of a call whose webhook and stream reached different
 * workers, and the aggregation of call listings and metrics (prom-client's AggregatorRegistry).
 * It answers no HTTP itself. A worker that dies is replaced at once; its calls' streams closed with
 * it, so Twilio ran the clinic's fallback key menu (the TwiML after `</Connect>`). SIGTERM or SIGINT
 * drains every worker (each exits 0 when its calls are done); a second signal hands calls off at once.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { MemoryTokenUseStore } from '../calls/stream-token.js';
import type { CallListing } from '../calls/types.js';
import { ASK_TIMEOUT_MS, isMessage, TAG, type Ask, type Serve, type Tell, type ToPrimary, type ToWorker } from './protocol.js';

/** A worker that keeps dying is restarted at most this often (a crash loop must not spin the CPU). */
const RESTART_BACKOFF_MS = 1_000;

export interface PrimaryOptions {
  workers: number;
  logger: Logger;
  /** The environment the workers start with (secrets the primary generated added). */
  env: NodeJS.ProcessEnv;
}

/**
 * Secrets every worker must share: outside production an unset STREAM_TOKEN_SECRET (and
 * CALLER_KEY_SECRET) is generated once here, so a token minted by one worker verifies at another.
 */
export function workerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const name of ['STREAM_TOKEN_SECRET', 'CALLER_KEY_SECRET']) {
    if (out[name] === undefined || out[name] === '') out[name] = randomBytes(32).toString('hex');
  }
  return out;
}

export function runPrimary(opts: PrimaryOptions): void {
  const { logger } = opts;
  const uses = new MemoryTokenUseStore();
  const aggregator = new AggregatorRegistry();
  const names = new Map<Worker, string>();
  /** Inspector pages open on each worker: the others relay their live updates only while one is. */
  const pages = new Map<Worker, number>();
  const asks = new Map<number, { resolve: (v: unknown) => void }>();
  let nextAsk = 0;
  let stopping = 0;
  let exitCode = 0;
  let lastRestart = 0;

  const alive = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  const tellCount = () => {
    const n = alive().length;
    for (const w of alive()) w.send({ tag: TAG, kind: 'workers', alive: n } satisfies ToWorker);
    tellPages(null);
  };
  /** Each worker: is a page open on another? `opened`: a worker whose first page just opened (the others resync it). */
  const tellPages = (opened: Worker | null) => {
    for (const w of alive()) {
      const elsewhere = alive().some((o) => o !== w && (pages.get(o) ?? 0) > 0);
      w.send({ tag: TAG, kind: 'pages', pagesElsewhere: elsewhere, resync: opened !== null && opened !== w } satisfies ToWorker);
    }
  };
  const others = (w: Worker) => alive().filter((o) => o !== w);
  const told = (from: Worker, t: Tell) => {
    if ('pages' in t) {
      const before = pages.get(from) ?? 0;
      pages.set(from, t.pages);
      if ((before > 0) !== (t.pages > 0)) tellPages(t.pages > 0 ? from : null);
    } else if (t.live === 'inspector') {
      for (const o of others(from)) if ((pages.get(o) ?? 0) > 0) o.send({ tag: TAG, kind: 'live', live: 'inspector', message: t.message } satisfies ToWorker);
    } else {
      for (const o of others(from)) o.send({ tag: TAG, kind: 'live', live: 'desk', clinicId: t.clinicId } satisfies ToWorker);
    }
  };

  /** Ask one worker; null when it does not answer in time (it may be dying). */
  const serve = (w: Worker, s: Serve): Promise<unknown> => {
    const id = ++nextAsk;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        asks.delete(id);
        resolve(null);
      }, ASK_TIMEOUT_MS);
      asks.set(id, { resolve: (v) => (clearTimeout(timer), resolve(v)) });
      w.send({ tag: TAG, kind: 'serve', id, serve: s } satisfies ToWorker);
    });
  };

  const answer = async (from: Worker, a: Ask): Promise<unknown> => {
    switch (a.op) {
      case 'claim':
        return uses.claim(a.nonce, a.ttlMs);
      case 'take': {
        const seeds = await Promise.all(alive().filter((w) => w !== from).map((w) => serve(w, { op: 'release', callSid: a.callSid })));
        return seeds.find((s) => s !== null && s !== undefined) ?? null;
      }
      case 'calls': {
        const lists = await Promise.all(alive().map(async (w) => ((await serve(w, { op: 'list' })) as CallListing[] | null ?? []).map((c) => ({ ...c, instance: names.get(w) }))));
        return lists.flat();
      }
      case 'metrics':
        return aggregator.clusterMetrics();
      case 'relay': {
        const known = await Promise.all(alive().filter((w) => w !== from).map((w) => serve(w, { op: 'callback', callback: a.callback })));
        return known.some((k) => k === true);
      }
    }
  };

  const fork = (): void => {
    const w = cluster.fork(opts.env);
    names.set(w, `worker-${w.id}`);
    w.on('message', (m: unknown) => {
      if (!isMessage<ToPrimary>(m)) return;
      if (m.kind === 'served') {
        asks.get(m.id)?.resolve(m.value);
        asks.delete(m.id);
        return;
      }
      if (m.kind === 'tell') return told(w, m.tell);
      answer(w, m.ask).then(
        (value) => !w.isDead() && w.send({ tag: TAG, kind: 'answer', id: m.id, value } satisfies ToWorker),
        (err: unknown) => !w.isDead() && w.send({ tag: TAG, kind: 'answer', id: m.id, value: null, error: err instanceof Error ? err.message : String(err) } satisfies ToWorker),
      );
    });
    // Once it listens its engine is built, so its message handler is there to hear the count.
    w.on('listening', tellCount);
  };

  cluster.on('exit', (w, code, signal) => {
    const name = names.get(w);
    names.delete(w);
    pages.delete(w);
    if (stopping > 0) {
      if (code !== 0) exitCode = 1;
      logger.info({ worker: name, exitCode: code, signal }, 'worker stopped');
      if (alive().length === 0) {
        logger.info({ exitCode }, 'all workers stopped');
        process.exit(exitCode);
      }
      return;
    }
    logger.error({ worker: name, exitCode: code, signal, code: 'VET_E_INTERNAL' }, 'worker died; its calls went to the fallback menu; starting another');
    tellCount();
    const wait = Math.max(0, lastRestart + RESTART_BACKOFF_MS - Date.now());
    lastRestart = Date.now() + wait;
    setTimeout(fork, wait);
  });

  const shutdown = (signal: string) => {
    stopping++;
    logger.info({ signal, workers: alive().length, second: stopping > 1 }, stopping > 1 ? 'second signal: workers hand calls off now' : 'draining every worker');
    if (alive().length === 0) process.exit(exitCode);
    // Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): the primary speaks for it.
    for (const w of alive()) w.process.kill('SIGTERM');
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  logger.info({ workers: opts.workers }, 'starting workers');
  for (let i = 0; i < opts.workers; i++) fork();
}
