/**
 * A loopback port for a child process that must be told its port (the bench's engine, the tests'
 * spawned engines and database servers).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The lowest port the kernel hands out on its own (listen(0), and the local end of every outgoing
 * connection): Linux's ip_local_port_range, 32768 by default.
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 2_048) return low;
  } catch {
    // Not Linux: the IANA range starts at 49152; 32768 is below both.
  }
  return 32_768;
}
const LOW = 20_000;
const HIGH = Math.max(LOW + 1_000, ephemeralLow()) - 1;

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A loopback port that was free a moment ago, for a child process that must be told its port.
 * Picked at random below the kernel's ephemeral range: a port from listen(0) stays free only until
 * the kernel gives it to someone else, and it does give it to the next outgoing connection (a
 * spawned engine that rendered its prompts for seconds before listening lost its port that way).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    if (await bindable(port)) return port;
  }
  throw new Error(`freePort: no free loopback port in ${LOW}-${HIGH} after 50 tries`);
}
