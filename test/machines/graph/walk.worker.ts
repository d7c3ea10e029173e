/** Worker thread entry: walks one clinic shape (walk.ts) and posts its result. */
import { parentPort, workerData } from 'node:worker_threads';
import { walk } from './walk.js';

const { name, long } = workerData as { name: string; long: boolean };
parentPort?.postMessage(walk(name, long));
