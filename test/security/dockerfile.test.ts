/**
 * The image runs as a non-root user: the runtime stage of the Dockerfile switches to one before
 * its CMD and never back to root. The data directories it prepares (journals, the SQLite file) are
 * that user's alone: 0700.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

type Instruction = { op: string; args: string };

/** Dockerfile instructions with comments dropped and `\` continuations joined. */
function instructions(text: string): Instruction[] {
  const joined = text.replace(/\\\r?\n/g, ' ');
  return joined
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [op = '', ...rest] = line.split(/\s+/);
      return { op: op.toUpperCase(), args: rest.join(' ') };
    });
}

/** The instructions of the last stage (the image that runs). */
function finalStage(all: Instruction[]): Instruction[] {
  const from = all.map((i) => i.op).lastIndexOf('FROM');
  return all.slice(from);
}

const isRoot = (user: string) => {
  const name = user.split(':')[0]?.trim() ?? '';
  return name === '' || name === 'root' || name === '0';
};

describe('Dockerfile', () => {
  const stage = finalStage(instructions(readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8')));

  it('runs CMD as a non-root user', () => {
    const cmd = stage.findIndex((i) => i.op === 'CMD' || i.op === 'ENTRYPOINT');
    expect(cmd).toBeGreaterThan(0);
    const users = stage.slice(0, cmd).filter((i) => i.op === 'USER');
    expect(users.length).toBeGreaterThan(0);
    expect(isRoot(users.at(-1)?.args ?? '')).toBe(false);
    expect(stage.slice(cmd).some((i) => i.op === 'USER')).toBe(false);
  });

  it('prepares /app/data and /app/data/journals 0700, owned by the engine user', () => {
    const runs = stage.filter((i) => i.op === 'RUN').map((i) => i.args);
    const prepare = runs.find((r) => r.includes('/app/data/journals'));
    expect(prepare).toBeDefined();
    expect(prepare).toMatch(/chown -R node:node \/app\/data/);
    expect(prepare).toMatch(/chmod (0)?700 \/app\/data \/app\/data\/journals/);
  });

  it('the parser sees a root USER when there is one', () => {
    const stageOf = (text: string) => finalStage(instructions(text));
    expect(stageOf('FROM a\nUSER node\nFROM b\nUSER 0:0\nCMD ["x"]').filter((i) => i.op === 'USER').map((i) => isRoot(i.args))).toEqual([true]);
    expect(stageOf('FROM b\nRUN a \\\n  USER node\nCMD ["x"]').some((i) => i.op === 'USER')).toBe(false);
  });
});
