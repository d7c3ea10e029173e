/**
 * The import graph of src/ and machines/ has no cycle (issue 16 §3). Edges are every relative
 * `import … from`, `export … from`, side-effect `import '…'` and `import('…')`, type-only imports
 * included: a type cycle is still two layers that cannot be understood apart. The layer fences
 * themselves (which directory may import which) are eslint `no-restricted-imports` rules in
 * eslint.config.js.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ROOTS = ['src', 'machines'];

const STATIC = /^\s*(?:import|export)\s[^'";]*?\sfrom\s*['"]([^'"]+)['"]/gm;
const SIDE_EFFECT = /^\s*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

type Graph = Map<string, string[]>;

function tsFiles(dir: string, out: string[] = []): string[] {
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) tsFiles(path, out);
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative specifiers of one file, resolved to repository paths of files that exist. */
function importsOf(file: string, source: string): string[] {
  const specs = [STATIC, SIDE_EFFECT, DYNAMIC].flatMap((re) => [...source.matchAll(re)].map((m) => m[1]!));
  const deps = new Set<string>();
  for (const spec of specs) {
    if (!spec.startsWith('.')) continue;
    const target = resolve(ROOT, dirname(file), spec).replace(/\.js$/, '.ts');
    if (existsSync(target)) deps.add(relative(ROOT, target));
  }
  return [...deps].sort();
}

function buildGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of ROOTS.flatMap((r) => tsFiles(r)).sort()) graph.set(file, importsOf(file, readFileSync(join(ROOT, file), 'utf8')));
  return graph;
}

/** Every cycle's strongly connected component, each shown as one concrete loop `a → b → … → a`. */
function cyclesOf(graph: Graph): string[] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(component);
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);

  // One loop per component: breadth-first from its first file back to itself, inside the component.
  return components.map((component) => {
    const members = new Set(component);
    const start = [...members].sort()[0]!;
    const from = new Map<string, string>();
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      const v = queue[i]!;
      for (const w of graph.get(v) ?? []) {
        if (!members.has(w)) continue;
        if (w === start) {
          const path = [v];
          while (path[0] !== start) path.unshift(from.get(path[0]!)!);
          const rest = members.size > path.length ? `  (one loop of ${members.size} files: ${[...members].sort().join(', ')})` : '';
          return [...path, start].join(' → ') + rest;
        }
        if (!from.has(w)) {
          from.set(w, v);
          queue.push(w);
        }
      }
    }
    return [...members].sort().join(' ⇄ ');
  });
}

describe('the import graph of src/ and machines/', () => {
  const graph = buildGraph();

  it('is read from every file (the import regexes still match)', () => {
    const edges = [...graph.values()].reduce((n, deps) => n + deps.length, 0);
    expect(graph.size).toBeGreaterThan(80);
    expect(edges).toBeGreaterThan(200);
    expect(graph.get('src/server.ts')).toContain('src/calls/registry.ts');
    expect(graph.get('src/calls/session-deps.ts')).toContain('src/providers/types.ts'); // a type-only import
  });

  it('has no cycle', () => {
    expect(cyclesOf(graph), 'import cycles (break each by moving the shared piece to the lower layer)').toEqual([]);
  });

  it('finds a cycle when there is one, and lists it', () => {
    const looped: Graph = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts', 'd.ts']],
      ['d.ts', []],
      ['e.ts', ['e.ts']],
    ]);
    expect(cyclesOf(looped).sort()).toEqual(['a.ts → b.ts → c.ts → a.ts', 'e.ts → e.ts']);
  });

  it('reads multi-line, type-only, re-export, side-effect and dynamic imports', () => {
    const source = [
      "import {\n  a,\n  b,\n} from './agent/types.js';",
      "import type { T } from '../config/tenant.schema.js';",
      "export { x } from './errors.js';",
      "import './fallback.js';",
      "const m = await import('./resilience.js');",
      " * import { notCode } from './index.js'; (a comment line is not an import)",
      "import pino from 'pino';",
    ].join('\n');
    expect(importsOf('src/providers/x.ts', source)).toEqual([
      'src/config/tenant.schema.ts',
      'src/providers/agent/types.ts',
      'src/providers/errors.ts',
      'src/providers/fallback.ts',
      'src/providers/resilience.ts',
    ]);
  });
});
