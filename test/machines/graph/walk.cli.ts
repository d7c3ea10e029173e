/**
 * Child process entry: walks one clinic shape (walk.ts) and writes its result as
 * `<dir>/<shape>.json` (written aside, then renamed, so a reader never sees half a file).
 * Started at the lowest CPU priority by background.ts; `npx tsx test/machines/graph/walk.cli.ts
 * <shape> <dir>` runs one by hand.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LONG } from '../../support/long.js';
import { walk } from './walk.js';

const [name, dir] = process.argv.slice(2);
if (!name || !dir) throw new Error('usage: walk.cli.ts <shape> <output directory>');
const file = join(dir, `${name}.json`);
writeFileSync(`${file}.part`, JSON.stringify(walk(name, LONG)));
renameSync(`${file}.part`, file);
