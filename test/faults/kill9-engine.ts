/**
 * Child process for kill9.test.ts: the fault rig's engine (fake providers, no Twilio REST)
 * journaling into the directory given as the only argument. Prints `{"url": …}` once listening,
 * then runs until killed.
 */
import { faultRig } from './fault-kit.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: kill9-engine.ts <journal dir>');
// No test context here: the process is killed, never closed.
const rig = await faultRig({ onTestFinished: () => {} }, { journalDir: dir });
process.stdout.write(`${JSON.stringify({ url: rig.engine.url })}\n`);
