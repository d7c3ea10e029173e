/** State ids as the inspector's diagram names them (`call.listening.waiting`, the SVG's data-state). */
import type { StateValue } from 'xstate';

/** Active state ids of a state value, root first, in document order. */
export function activeIds(value: StateValue, root = 'call'): string[] {
  const out = [root];
  const walk = (v: StateValue, prefix: string) => {
    if (typeof v === 'string') {
      out.push(`${prefix}.${v}`);
      return;
    }
    for (const [key, child] of Object.entries(v)) {
      out.push(`${prefix}.${key}`);
      if (child !== undefined) walk(child, `${prefix}.${key}`);
    }
  };
  walk(value, root);
  return out;
}

/** Leaf ids (active ids with no active child). */
export const leafIds = (active: readonly string[]): string[] => active.filter((id) => !active.some((o) => o.startsWith(`${id}.`)));
