/**
 * Global setup of the `graph` project (vitest.config.ts): the machine graph walk starts with the
 * run, not when its test file's turn comes, in child processes at the lowest CPU priority (`nice
 * -n 19`), one per core at a time. The suite's real-time groups leave about half of two cores idle
 * while they wait on audio played in real time; the walk (~85 s of one core, the suite's longest
 * computation) runs in that idle time instead of holding up the CPU-bound group, and a process
 * that wants the CPU always gets it first. call.graph.test.ts, in the last group, waits for the
 * results (docs/testing.md "How the suite is organised").
 *
 * Each shape's result lands in `<dir>/<shape>.json`; a walk that fails leaves `<dir>/<shape>.error`
 * with its exit status and the end of its stderr instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { SHAPES } from './shapes.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where the background walks write their results (test/machines/graph/background.ts). */
    graphWalkDir: string;
  }
}

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = fileURLToPath(new URL('./walk.cli.ts', import.meta.url));
/** What an error file keeps of a failed walk's stderr. */
const STDERR_TAIL = 4_000;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), 'vetline-graph-'));
  project.provide('graphWalkDir', dir);
  let walks = startWalks(dir);
  // Watch mode: a rerun may follow a change to the machine, so its walks start again from nothing.
  project.onTestsRerun(async () => {
    await walks.stop();
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    walks = startWalks(dir);
  });
  return async () => {
    await walks.stop();
    await rm(dir, { recursive: true, force: true });
  };
}

/** Every shape walked into `dir`, one child per core at a time; `stop` kills what still runs. */
function startWalks(dir: string): { stop: () => Promise<void> } {
  const queue = [...SHAPES];
  const running = new Set<ChildProcess>();
  let stopped = false;

  const walkOne = (name: string) =>
    new Promise<void>((resolve) => {
      // `nice` before exec, so every thread of the child (V8's GC helpers too) runs at priority 19.
      const child = spawn('nice', ['-n', '19', process.execPath, '--import', 'tsx', CLI, name, dir], {
        cwd: ROOT,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      running.add(child);
      let stderr = '';
      child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_TAIL)));
      const fail = (why: string) => void writeFile(join(dir, `${name}.error`), `${why}\n${stderr}`).catch(() => undefined).finally(resolve);
      child.on('error', (err) => {
        running.delete(child);
        fail(`could not start the walk of ${name}: ${err.message}`);
      });
      child.on('exit', (code, signal) => {
        running.delete(child);
        if (code === 0 || stopped) resolve();
        else fail(`the walk of ${name} exited with ${signal ?? `code ${String(code)}`}`);
      });
    });
  const lane = async () => {
    for (let name = queue.shift(); name !== undefined && !stopped; name = queue.shift()) await walkOne(name);
  };
  const lanes = Promise.all(Array.from({ length: Math.min(availableParallelism(), queue.length) }, lane));
  return {
    async stop() {
      stopped = true;
      queue.length = 0;
      for (const child of running) child.kill('SIGKILL');
      await lanes;
    },
  };
}
