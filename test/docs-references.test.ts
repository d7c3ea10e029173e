/**
 * Every reference to a Markdown file resolves inside the repository, and every § / F anchor or
 * quoted section name after it is defined there (convention: docs/design/README.md). Scans src,
 * machines, scripts, test, docs and README.md for `*.md` names (relative links, `docs/…` paths,
 * bare names), then the anchors that follow each one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SCANNED = ['src', 'machines', 'scripts', 'test', 'docs', 'README.md'];
const TEXT = /\.(ts|js|mjs|cjs|md|html|css|sh)$/;
const SKIP_DIRS = new Set(['node_modules', '.git', 'fixtures', 'data', 'coverage', 'dist']);

/**
 * Pages the code already cites whose authors are writing them. References to them are checked once
 * the file exists; until then they are tolerated. Delete an entry when its page lands.
 */
const PENDING_PAGES = new Set<string>();

// ---------- files ----------

function walk(path: string, out: string[]): string[] {
  const abs = join(ROOT, path);
  if (!existsSync(abs)) return out;
  if (statSync(abs).isDirectory()) {
    for (const name of readdirSync(abs).sort()) if (!SKIP_DIRS.has(name)) walk(join(path, name), out);
  } else if (TEXT.test(path)) out.push(path);
  return out;
}

const allMarkdown = () => walk('.', []).filter((p) => p.endsWith('.md')).map((p) => relative(ROOT, join(ROOT, p)));

// ---------- anchors a Markdown file defines ----------

type Anchors = { sections: Set<string>; labels: Set<string>; names: Set<string>; slugs: Set<string> };

const normalizeName = (s: string) => s.toLowerCase().replace(/[`*_]/g, '').replace(/[.:;,]+$/, '').trim();
const slugOf = (heading: string) => heading.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').trim().replace(/\s/g, '-');

const anchorCache = new Map<string, Anchors>();
function anchorsOf(file: string): Anchors {
  const cached = anchorCache.get(file);
  if (cached) return cached;
  const a: Anchors = { sections: new Set(), labels: new Set(), names: new Set(), slugs: new Set() };
  let fenced = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    if (fenced) continue;
    const h = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (h) {
      const text = h[1]!;
      a.slugs.add(slugOf(text));
      const num = /^(\d+(?:\.\d+)*[a-z]?)\.?\s/.exec(text);
      if (num) a.sections.add(num[1]!);
      const label = /^([A-Z]\d+)\b/.exec(text);
      if (label) a.labels.add(label[1]!);
      a.names.add(normalizeName(text.replace(/^\d+(?:\.\d+)*[a-z]?\.?\s+/, '')));
    }
    for (const m of line.matchAll(/\*\*([^*]+)\*\*/g)) {
      const text = normalizeName(m[1]!);
      a.names.add(text);
      if (/^[a-z]\d+$/.test(text)) a.labels.add(text.toUpperCase());
      const sec = /^§\s?(\d+(?:\.\d+)*)$/.exec(text);
      if (sec) a.sections.add(sec[1]!);
    }
  }
  anchorCache.set(file, a);
  return a;
}

/** A quoted name is a heading or label, or whole words of one: "Retries" finds "Retries and failure". */
function namesSection(defined: Anchors, name: string): boolean {
  const wanted = normalizeName(name);
  if (defined.names.has(wanted)) return true;
  return [...defined.names].some((n) => ` ${n.replace(/[^\p{L}\p{N}]+/gu, ' ')} `.includes(` ${wanted.replace(/[^\p{L}\p{N}]+/gu, ' ')} `));
}

// ---------- references ----------

export interface Reference { file: string; line: number; target: string; fragment: string | null; anchors: string[]; names: string[] }

const REF = /(?<![\w./-])((?:\.{1,2}\/)*(?:[\w-]+\/)*[\w.-]*[\w-]\.md)\b(#[\w-]+)?/g;
const SEPARATOR = /^(?:\s|,|;|\/|–|-|&|\band\b|\)|\]\([^)\s]*\))+/;
const SECTION = /^§\s?(\d+(?:\.\d+)*[a-z]?)(?:\s?[–-]\s?§?\s?(\d+(?:\.\d+)*))?/;
const LABEL = /^(F)(\d+)\b(?:\s?[–-]\s?F?(\d+)\b)?/;
const SUB_ITEM = /^(?:rungs?|recipes?|steps?)\s+\d+(?:\s?[–-]\s?\d+)?/;
const QUOTED = /^(?:"([^"\n]{1,80})"|“([^”\n]{1,80})”)/;

/** The anchors and quoted names right after a reference: `§3.2, §3.3`, `F2–F5`, `"Retries"`. */
function tailOf(rest: string): { anchors: string[]; names: string[] } {
  const anchors: string[] = [];
  const names: string[] = [];
  let s = rest;
  for (;;) {
    const sep = SEPARATOR.exec(s);
    const body = sep ? s.slice(sep[0].length) : s;
    let m: RegExpExecArray | null;
    if ((m = SECTION.exec(body))) {
      anchors.push(`§${m[1]}`);
      if (m[2]) anchors.push(`§${m[2]}`);
    } else if ((m = LABEL.exec(body))) {
      const from = Number(m[2]);
      const to = m[3] ? Number(m[3]) : from;
      for (let n = from; n <= Math.max(from, to); n++) anchors.push(`${m[1]}${n}`);
    } else if ((m = SUB_ITEM.exec(body))) {
      // a numbered item inside the section just named: not an anchor of its own
    } else if ((m = QUOTED.exec(body))) {
      names.push(m[1] ?? m[2]!);
    } else return { anchors, names };
    s = body.slice(m[0].length);
  }
}

export function referencesIn(file: string, text: string): Reference[] {
  const refs: Reference[] = [];
  text.split('\n').forEach((content, i) => {
    for (const m of content.matchAll(REF)) {
      const { anchors, names } = tailOf(content.slice(m.index + m[0].length));
      refs.push({ file, line: i + 1, target: m[1]!, fragment: m[2]?.slice(1) ?? null, anchors, names });
    }
  });
  return refs;
}

// ---------- resolution ----------

export function problemsOf(ref: Reference, markdownFiles: readonly string[]): string[] {
  const from = dirname(join(ROOT, ref.file));
  let abs: string;
  if (/^\.{1,2}\//.test(ref.target)) abs = resolve(from, ref.target);
  else if (ref.target.includes('/')) {
    const fromRoot = resolve(ROOT, ref.target);
    abs = existsSync(fromRoot) || !ref.file.endsWith('.md') ? fromRoot : resolve(from, ref.target);
  } else if (ref.file.endsWith('.md')) abs = resolve(from, ref.target);
  else {
    const same = markdownFiles.filter((p) => basename(p) === ref.target);
    if (same.length > 1) return [`ambiguous: ${same.join(', ')} — cite it by path`];
    abs = same.length === 1 ? join(ROOT, same[0]!) : resolve(ROOT, ref.target);
  }
  if (!abs.startsWith(ROOT + sep)) return ['outside the repository'];
  if (!existsSync(abs)) return PENDING_PAGES.has(relative(ROOT, abs)) ? [] : [`no such file: ${relative(ROOT, abs)}`];
  const defined = anchorsOf(abs);
  const where = relative(ROOT, abs);
  const problems: string[] = [];
  for (const anchor of ref.anchors) {
    const ok = anchor.startsWith('§') ? defined.sections.has(anchor.slice(1)) : defined.labels.has(anchor);
    if (!ok) problems.push(`${anchor} is not defined in ${where}`);
  }
  for (const name of ref.names) {
    if (!namesSection(defined, name)) problems.push(`"${name}" is not a heading or label of ${where}`);
  }
  if (ref.fragment && !defined.slugs.has(ref.fragment)) problems.push(`#${ref.fragment} is not a heading of ${where}`);
  return problems;
}

function scan(): { broken: Map<string, string>; count: number } {
  const markdown = allMarkdown();
  const broken = new Map<string, string>();
  let count = 0;
  for (const root of SCANNED) {
    for (const file of walk(root, [])) {
      if (file === relative(ROOT, fileURLToPath(import.meta.url))) continue; // this file quotes broken examples
      for (const ref of referencesIn(file, readFileSync(join(ROOT, file), 'utf8'))) {
        count++;
        const problems = problemsOf(ref, markdown);
        if (problems.length === 0) continue;
        const key = `${file}: ${ref.target}${ref.anchors.length ? ` ${ref.anchors.join(', ')}` : ''}`;
        broken.set(key, `${file}:${ref.line}: ${ref.target} — ${problems.join('; ')}`);
      }
    }
  }
  return { broken, count };
}

describe('references to Markdown files', () => {
  const { broken, count } = scan();

  it('finds the references it checks', () => {
    expect(count).toBeGreaterThan(100);
  });

  it('every referenced file exists and defines the cited § / F anchors', () => {
    const messages = [...broken.values()];
    expect(messages, `broken references:\n${messages.join('\n')}`).toEqual([]);
  });

  it('catches a reference to a missing file, section, label or heading', () => {
    const md = allMarkdown();
    const check = (file: string, text: string) => referencesIn(file, text).flatMap((r) => problemsOf(r, md));
    expect(check('src/x.ts', '// see docs/design/nowhere.md')).toEqual(['no such file: docs/design/nowhere.md']);
    expect(check('src/x.ts', '// (docs/design/reliability.md F99)')).toEqual(['F99 is not defined in docs/design/reliability.md']);
    expect(check('src/x.ts', '// docs/design/twilio.md §3.2, §9.9')).toEqual(['§9.9 is not defined in docs/design/twilio.md']);
    expect(check('src/x.ts', '// docs/design/reliability.md F16–F18')).toEqual(['F18 is not defined in docs/design/reliability.md']);
    expect(check('src/x.ts', '// docs/delivery.md "No such heading"')).toEqual(['"No such heading" is not a heading or label of docs/delivery.md']);
    expect(check('src/x.ts', '// reliability.md F9')[0]).toMatch(/^ambiguous: /);
    expect(check('docs/x.md', 'see [store](store.md#no-such-heading)')).toEqual(['#no-such-heading is not a heading of docs/store.md']);
    expect(check('src/x.ts', '// docs/design/reliability.md F9, §3 step 4; docs/design/conversation.md §2 "Generation IDs"')).toEqual([]);
  });
});
