/**
 * A database server the tests start themselves (test/support/postgres.ts, test/support/redis.ts):
 * its output drained into a bounded log (a full pipe would block the server), killed if the test
 * process exits first, and stopped with the server's own shutdown signal, then SIGKILL after
 * `killAfterMs`; its temporary directory is removed once it is gone.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { rmSync } from 'node:fs';

/** Keeps the last ~16 kB of a process's output (for the error when it does not start). */
export function tail(buffer: string[], chunk: string): void {
  buffer.push(chunk);
  while (buffer.join('').length > 16_000 && buffer.length > 1) buffer.shift();
}

export interface ChildServer {
  child: ChildProcess;
  /** The last of its stdout and stderr. */
  log: string[];
  /** True once it has exited (during start-up: it failed). */
  exited(): boolean;
  /** Shut it down (`stopSignal`, SIGKILL after `killAfterMs`) and remove `dir`. */
  stop(): Promise<void>;
}

export function spawnServer(
  binary: string,
  args: string[],
  o: { dir: string; stopSignal: NodeJS.Signals; killAfterMs: number; spawn?: Pick<SpawnOptions, 'env' | 'uid' | 'gid'> },
): ChildServer {
  const log: string[] = [];
  const child = spawn(binary, args, { ...o.spawn, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => tail(log, d.toString()));
  child.stderr?.on('data', (d: Buffer) => tail(log, d.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  return {
    child,
    log,
    exited: () => exited,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (!exited) {
        child.kill(o.stopSignal);
        const timer = setTimeout(() => child.kill('SIGKILL'), o.killAfterMs);
        await exit;
        clearTimeout(timer);
      }
      rmSync(o.dir, { recursive: true, force: true });
    },
  };
}
