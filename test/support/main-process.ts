/**
 * The engine as its own process, exactly as `npm start` runs it, for tests of what only the entry
 * point (src/main.ts) wires: start-up, the store, the outbox, journal shipping, signals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort } from './net.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface EngineProcess {
  child: ChildProcess;
  url: string;
  /** performance.now() at spawn. */
  spawnedAt: number;
  /** From spawn to the 'vetline ready' line. */
  readyAfterMs: number;
  /** Every JSON log line so far (all of them once `exited` has resolved). */
  lines: Record<string, unknown>[];
  /** Resolves with the first log line `ok` accepts. */
  line(ok: (l: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<Record<string, unknown>>;
  /** Resolves once the process has exited and its output has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `node --import tsx src/main.ts` (as `npm start` runs it) with `env` on a free port; resolves once it
 * logged 'vetline ready'. `onCleanup` receives what kills it (SIGKILL) if the test left it running.
 */
export async function startMainProcess(env: NodeJS.ProcessEnv, onCleanup: (fn: () => void) => void): Promise<EngineProcess> {
  const port = await freePort();
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  // 'close', not 'exit': by then its stdout has ended, so every line it wrote is in `lines`.
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      return; // not a log line
    }
    for (const wake of waiters) wake();
  });
  const line: EngineProcess['line'] = (ok, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const found = lines.find(ok);
        if (!found) return;
        done();
        resolve(found);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`engine: no ${what} within ${timeoutMs} ms\n${stderr}\n${lines.map((l) => JSON.stringify(l)).join('\n').slice(-4_000)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      void exited.then(() => {
        if (!waiters.has(check)) return;
        done();
        reject(new Error(`engine exited before ${what}:\n${stderr}`));
      });
      check();
    });
  await line((l) => l.msg === 'vetline ready', 30_000, "'vetline ready'");
  const readyAfterMs = performance.now() - spawnedAt;
  return { child, url: `http://127.0.0.1:${port}`, spawnedAt, readyAfterMs, lines, line, exited };
}
