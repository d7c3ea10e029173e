/**
 * `npm run simulate -- --scenario <name|file> [--url http://127.0.0.1:3000 --base-url https://… --token …]`
 * `npm run simulate -- --interactive [--to +1555…]`
 * `npm run simulate -- --corpus [--seeds 10] [--parallel 2] [--json]`
 *
 * Plays one scripted caller over the real Twilio protocol (test/support/fake-twilio.ts, real time)
 * and prints the conversation and its timings. Without --url it starts an engine in this process
 * on the embedded providers (energy VAD, offline recognizer, rule-based receptionist, flite), the
 * short fixture clinics and a recording stand-in for Twilio REST, as test/e2e/local-call.test.ts
 * does. With --url it calls a running server, signing with --base-url (its PUBLIC_BASE_URL) and
 * --token (its TWILIO_AUTH_TOKEN); states then come from GET /twilio/sessions (with the server's
 * INSPECTOR_TOKEN, if it has one, taken from this process's environment), and expectations that
 * need the engine's memory (`heard`, `outcome`) are reported as skipped.
 *
 * A scenario (scenarios/*.json) is `{ "to": "+1555…", "steps": [...] }`; steps run in order:
 *   {"wait": "quiet"}            engine audio since the last step, then `quietMs` (800) of silence
 *   {"wait": "audio"}            the first engine audio after the last caller action
 *   {"wait": 500}                milliseconds
 *   {"wait": {"state": "listening.waiting"}}
 *   {"say": "what are your hours"}   synthesized with the local voice, silence trimmed; returns
 *                                    when its last frame is sent (`"async": true`: at once)
 *   {"dtmf": "0"}                one key (or several, 100 ms apart)
 *   {"hangup": true}             `stop` and close, as Twilio does when the caller hangs up
 *   {"expect": {...}}            all given fields must hold:
 *     "state": "emergency"       visited (or current), prefix match on the dotted path
 *     "audio": true              engine audio reached the caller
 *     "withinMs": 1500           …for `state` / `audio`: within this of the last caller action's
 *                                end (the end of the last speech frame, the key, the hang-up)
 *     "heard": "Monday"          an agent line committed since that action contains this (in-process)
 *     "heardMs": 1500            at least this much engine audio played since that action
 *     "maxSilenceMs": 2000       no gap longer than this from that action to the end of the last audio
 *     "outcome": "transferred"   the call's recorded outcome once ended (in-process)
 *     "bargeIn": true            the engine cleared its audio (a barge-in) after that action began
 *     "timeoutMs": 10000         how long to wait for untimed conditions
 * Waits time out too (`timeoutMs`, default 15000) and count as failures. Exit code 1 if anything
 * failed (2: usage or start-up error).
 *
 * `--line phone` puts the call on a phone line (test/support/fake-line.ts PHONE_LINE: echo of the
 * engine's audio, late and bunched frames, late marks), its randomness from `--seed` (default 1).
 * `--corpus` runs every scenario in scenarios/ over that line once per seed 1…`--seeds`, `--parallel`
 * calls at a time, and reports the echo guard's figures (scripts/sim/corpus.ts): false barge-ins
 * (target 0) and the barge-in detection rate (target ≥ 95 %); exit code 1 when either is missed.
 */
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readdir } from 'node:fs/promises';
import { PHONE_LINE, withSeed } from '../test/support/fake-line.js';
import { Caller, runScenario } from './sim/caller.js';
import { runCorpus } from './sim/corpus.js';
import { loadScenario, SCENARIO_DIR } from './sim/scenario.js';
import { remoteTarget, startLocalEngine, type Target } from './sim/target.js';

export { Caller, runScenario, type Check, type ScenarioResult } from './sim/caller.js';
export { loadScenario, parseScenario, SCENARIO_DIR, type Expectation, type Scenario, type Step } from './sim/scenario.js';
export { engineTarget, remoteTarget, startLocalEngine, type Target } from './sim/target.js';

async function interactive(target: Target, to: string, print: (line: string) => void): Promise<void> {
  const caller = await Caller.dial(target, { to, print });
  print('type a line to say it; digits, * or # to press keys; /hangup or Ctrl-D to end');
  const rl = createInterface({ input: process.stdin });
  let eof = true;
  try {
    for await (const raw of rl) {
      const line = raw.trim();
      if (caller.call.closed) break;
      if (line === '') continue;
      if (line === '/hangup' || line === '/quit') {
        eof = false;
        break;
      }
      if (/^[0-9*#]+$/.test(line)) await caller.dtmf(line);
      else await caller.say(line.toLowerCase(), false);
    }
    // Piped input ends at once: let the last line be said and answered before hanging up.
    if (eof && !caller.call.closed) await caller.wait({ wait: 'quiet', quietMs: 1500, timeoutMs: 20_000 }, 0);
  } finally {
    rl.close();
    await caller.hangUp().catch(() => undefined);
    await new Promise((r) => setTimeout(r, 300));
    await caller.dispose();
  }
}

// ---- CLI -----------------------------------------------------------------------------------

const USAGE = `usage: npm run simulate -- --scenario <name|file.json> [--json] [--line clean|phone [--seed N]]
                                [--url http://127.0.0.1:3000 --base-url https://<PUBLIC_BASE_URL> --token <TWILIO_AUTH_TOKEN> [--account AC…]]
       npm run simulate -- --interactive [--to +15550109000] [--url …]
       npm run simulate -- --corpus [--seeds 10] [--parallel 2] [--json] [--url …]
scenarios: scenarios/*.json`;

/** A positive integer option, or its default. */
function count(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer\n${USAGE}`);
  return n;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const opt: Record<string, string | true> = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}\n${USAGE}`);
    const key = a.slice(2);
    if (['json', 'interactive', 'help', 'corpus'].includes(key)) opt[key] = true;
    else if (['scenario', 'url', 'base-url', 'token', 'account', 'to', 'line', 'seed', 'seeds', 'parallel'].includes(key)) {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      opt[key] = v;
    } else throw new Error(`unknown option ${a}\n${USAGE}`);
  }
  const str = (k: string) => (typeof opt[k] === 'string' ? opt[k] : undefined);
  if (opt.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!opt.interactive && !opt.corpus && !str('scenario')) throw new Error(USAGE);
  const lineName = str('line') ?? (opt.corpus ? 'phone' : 'clean');
  if (lineName !== 'clean' && lineName !== 'phone') throw new Error(`--line is clean or phone\n${USAGE}`);
  const line = lineName === 'phone' ? withSeed(PHONE_LINE, count(str('seed'), 'seed', 1)) : undefined;
  if (opt.corpus && !line) throw new Error(`--corpus runs over a phone line\n${USAGE}`);
  const scenario = str('scenario') ? await loadScenario(str('scenario')!) : null;
  const json = opt.json === true;
  const print = json ? (line: string) => process.stderr.write(`${line}\n`) : (line: string) => process.stdout.write(`${line}\n`);

  let target: Target;
  const url = str('url');
  if (url) {
    target = remoteTarget({
      url,
      baseUrl: str('base-url') ?? url,
      token: str('token') ?? 'unset',
      accountSid: str('account') ?? `AC${'0'.repeat(32)}`,
    });
  } else {
    process.stderr.write('starting an in-process engine (local providers, test/fixtures/tenants)…\n');
    target = await startLocalEngine();
  }
  let stop = false;
  process.once('SIGINT', () => {
    stop = true;
    void target.close().finally(() => process.exit(130));
  });
  try {
    if (opt.interactive) {
      await interactive(target, str('to') ?? scenario?.to ?? '+15550109000', print);
      return 0;
    }
    if (opt.corpus) {
      const files = (await readdir(SCENARIO_DIR)).filter((f) => f.endsWith('.json')).sort();
      const scenarios = await Promise.all(files.map((f) => loadScenario(f.replace(/\.json$/, ''))));
      const report = await runCorpus(target, { scenarios, line: line!, seeds: count(str('seeds'), 'seeds', 10), parallel: count(str('parallel'), 'parallel', 2), print });
      if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else print(JSON.stringify({ ...report, runs: undefined }, null, 2));
      print(`${report.pass ? 'PASS' : 'FAIL'} corpus over an echoing line: ${report.falseBargeIns} false barge-ins in ${report.calls} calls ` +
        `(${report.engineSpeechS} s of engine speech; target 0), barge-ins detected ${report.bargeIn.detected}/${report.bargeIn.attempts} ` +
        `(${report.bargeIn.rate === null ? 'n/a' : `${Math.round(report.bargeIn.rate * 100)} %`}; target ≥ 95 %), attributed by ` +
        (report.attribution === 'stream' ? 'the engine\'s speech onsets in stream time' : 'when each clear reached the caller'));
      return report.pass || stop ? 0 : 1;
    }
    const result = await runScenario(scenario!, target, print, line ? { line } : {});
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return result.passed || stop ? 0 : 1;
  } finally {
    await target.close();
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`simulate: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(2);
    },
  );
}
