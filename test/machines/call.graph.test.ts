/**
 * Model-based tests: a breadth-first walk (as @xstate/graph's) explores the call machine over an
 * abstraction of its context (test/machines/graph/model.ts), then the edges of that graph are
 * replayed on a live actor (simulated clock, inert children) while inspection records which
 * transitions fired, until every transition and state the walk took has been seen live
 * (VETLINE_LONG=1: one edge per state, event and next abstract state). Each replayed edge must land where the walk predicted (same
 * state value, same abstract state) without an actor error. Asserts 100 % state and transition
 * coverage, that every state ends the call by its own timers alone, and the call's safety
 * invariants over every generated state.
 *
 * Each clinic shape is walked in a worker thread of its own, one per core at a time
 * (test/machines/graph/walk.ts): the walk is the suite's longest computation, and in one thread
 * the rest of the compute group finished beside it and then left a core idle (in the full suite
 * the file went from 162 to 104–117 s; alone it takes as long either way on this VM's two vCPUs).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { AnyStateNode } from 'xstate';
import { beforeAll, describe, expect, it } from 'vitest';
import { callMachine } from '../../machines/call/call.machine.js';
import { LONG } from '../support/long.js';
import { allStateNodes, allTransitions, tenants, transitionKey } from './graph/model.js';
import type { WalkResult } from './graph/walk.js';

const WORKER = new URL('./graph/walk.worker.ts', import.meta.url).href;

/** One shape in a worker thread; Node 20 gives a worker neither the parent's tsx hooks nor a .ts entry, so it registers tsx first. */
function walkInWorker(name: string): Promise<WalkResult> {
  const source = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(WORKER)}); })`;
  return new Promise((resolve, reject) => {
    const worker = new Worker(source, { eval: true, workerData: { name, long: LONG }, execArgv: [] });
    let result: WalkResult | null = null;
    worker.on('message', (m: WalkResult) => (result = m));
    worker.on('error', reject);
    worker.on('exit', (code) => (result ? resolve(result) : reject(new Error(`graph walk of ${name} exited ${code} without a result`))));
  });
}

async function walkAll(): Promise<WalkResult[]> {
  const queue = Object.keys(tenants);
  const results: WalkResult[] = [];
  const lane = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) results.push(await walkInWorker(name));
  };
  await Promise.all(Array.from({ length: Math.min(availableParallelism(), queue.length) }, lane));
  return results;
}

describe('call machine graph', () => {
  // In a hook, not the describe body: vitest then counts the walk in the file's duration, which
  // orders its files (longest first) and is what its reporters show.
  let walks: WalkResult[] = [];
  beforeAll(async () => {
    walks = await walkAll();
    for (const w of walks) {
      console.info(`graph ${w.name}: ${w.vertices} states, ${w.edges} edges walked in ${Math.round(w.walkMs)} ms; ${w.replayed} replayed in ${Math.round(w.replayMs)} ms`);
    }
  }, 600_000); // ~85 s on this 2-vCPU VM alone; far more when the machine is shared

  it('replaying the graph edges covers every state and every transition', () => {
    expect(walks.map((w) => w.name).sort()).toEqual(Object.keys(tenants).sort());
    for (const w of walks) {
      expect(w.mismatches, w.name).toEqual([]);
      // What the walk took, the live actor took too.
      expect(w.unreplayed, w.name).toEqual([]);
    }
    // What the machine defines, from its definition (it changes as the machine does).
    const nodes = allStateNodes(callMachine.root as AnyStateNode);
    const statesSeen = new Set(walks.flatMap((w) => w.statesSeen));
    const transitionsSeen = new Set(walks.flatMap((w) => w.transitionsSeen));
    expect(nodes.map((n) => n.id).filter((id) => !statesSeen.has(id))).toEqual([]);
    expect(nodes.flatMap(allTransitions).map(transitionKey).filter((t) => !transitionsSeen.has(t))).toEqual([]);
  });

  /**
   * Liveness over the whole graph: a call nobody talks to (no caller, no hang-up, no engine
   * command, no REST answer, no synthesizer) still ends, by its own timers. Hang-up events reach
   * `ended` from every state in one step, so they would make this hold for any machine.
   */
  it('ended is reachable from every state by timers alone', () => {
    for (const w of walks) expect(w.stuck, `${w.name}: states that never end without a hang-up`).toEqual([]);
  });

  // The emergency script itself, not merely the emergency state: while "Is your pet in danger?" is
  // being asked (and after a no) the emergency key still starts the script in one event.
  it('the emergency script is one event away from every live state until an emergency has been handled', () => {
    for (const w of walks) expect(w.noScript, w.name).toEqual([]);
    expect(walks.reduce((n, w) => n + w.checking, 0)).toBeGreaterThan(0);
  });

  it('with consent required, no reply before the answer and no recording without a yes', () => {
    expect(walks.filter((w) => w.name.startsWith('consent'))).toHaveLength(2);
    for (const w of walks) expect(w.consent, w.name).toEqual([]);
  });

  it('every waiting state has a timeout or leaves at once', () => {
    const atomic = allStateNodes(callMachine.root as AnyStateNode).filter((n) => n.type === 'atomic');
    for (const node of atomic) {
      const transient = (node.always ?? []).some((t) => !t.guard);
      let timed = false;
      for (let n: AnyStateNode | undefined = node; n && !timed; n = n.parent) {
        timed = n.after.some((t) => t.target !== undefined && !t.guard) || (n !== node && n.after.some((t) => t.target !== undefined));
      }
      expect(transient || timed, node.id).toBe(true);
    }
  });
});
