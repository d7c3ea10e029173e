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
 * Each clinic shape is walked in a child process at the lowest CPU priority, started with the run
 * by the `graph` project's global setup (test/machines/graph/background.ts): the walk is the suite's
 * longest computation, and it runs in the CPU the real-time groups leave idle. This file runs in
 * the last group and collects the results.
 */
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import type { AnyStateNode } from 'xstate';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { callMachine } from '../../machines/call/call.machine.js';
import { LONG } from '../support/long.js';
import { allStateNodes, allTransitions, tenants, transitionKey } from './graph/model.js';
import { SHAPES } from './graph/shapes.js';
import type { WalkResult } from './graph/walk.js';

/** How often the results directory is looked at while the walks finish. */
const POLL_MS = 250;

/** Every shape's result, as background.ts's walks write them; a failed walk fails the file with its stderr. */
async function collectWalks(): Promise<WalkResult[]> {
  const dir = inject('graphWalkDir');
  if (!dir) throw new Error('no graph walks were started: run this file with vitest.config.ts (its `graph` project starts them)');
  const results: WalkResult[] = [];
  for (const name of SHAPES) {
    const file = join(dir, `${name}.json`);
    const error = join(dir, `${name}.error`);
    while (!existsSync(file)) {
      if (existsSync(error)) throw new Error(readFileSync(error, 'utf8'));
      await sleep(POLL_MS);
    }
    results.push(JSON.parse(readFileSync(file, 'utf8')) as WalkResult);
  }
  return results;
}

describe('call machine graph', () => {
  // In a hook, not the describe body: the wait counts in the file's duration, as reporters show it.
  let walks: WalkResult[] = [];
  beforeAll(async () => {
    walks = await collectWalks();
    for (const w of walks) {
      console.info(`graph ${w.name}: ${w.vertices} states, ${w.edges} edges walked in ${Math.round(w.walkMs)} ms; ${w.replayed} replayed in ${Math.round(w.replayMs)} ms`);
    }
  }, 600_000); // ~85 s of one core on this 2-vCPU VM; the walks usually end before this file starts

  it('replaying the graph edges covers every state and every transition', () => {
    expect(walks.map((w) => w.name).sort()).toEqual(Object.keys(tenants).sort());
    // The walks inherit the run's size (VETLINE_LONG) from the process that started them.
    expect(walks.map((w) => w.long)).toEqual(walks.map(() => LONG));
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
