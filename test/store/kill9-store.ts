/**
 * Child process for sqlite.test.ts's kill -9 test: opens the SQLite store at the path given as the
 * only argument and records follow-ups (each with a held delivery) one after another, printing
 * `committed <id>` as soon as each recordFollowUp has resolved, until it is killed.
 */
import { openStore } from '../../src/store/index.js';
import { deliveryInput, followUpInput } from './store.contract.js';

const path = process.argv[2];
if (!path) throw new Error('usage: kill9-store.ts <database file>');
const store = await openStore(`sqlite:${path}`, {});
for (let i = 0; ; i++) {
  const f = followUpInput({ createdAt: Date.now(), reason: `record ${i}` });
  const d = deliveryInput({ subjectId: f.id, callSid: f.callSid, holdUntil: f.createdAt + 60_000 });
  await store.recordFollowUp(f, [d]);
  process.stdout.write(`committed ${f.id} ${d.id}\n`);
  // Yield so stdout is flushed and the parent can kill us between (and during) writes.
  await new Promise((resolve) => setImmediate(resolve));
}
