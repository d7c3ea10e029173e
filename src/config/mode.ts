/**
 * The engine's mode: how far it trusts a request that carries no credential (docs/configuration.md
 * "Modes"). Development conveniences (unsigned webhooks without TWILIO_AUTH_TOKEN, the inspector,
 * /twilio/sessions, /metrics and the desk open without a token, the softphone) exist only in
 * `development` (the explicit opt-in VETLINE_DEV=1) and `local` (NODE_ENV not production, listening
 * on loopback with a loopback PUBLIC_BASE_URL: then only for requests that provably come from this
 * machine, src/http/dev-gate.ts). `production` and `protected` (not production, but reachable from
 * elsewhere without the opt-in) apply production's access rules.
 */
import { isIP } from 'node:net';

export type EngineMode = 'production' | 'development' | 'local' | 'protected';

/** `localhost`, `*.localhost`, 127.0.0.0/8, `::1` (bracketed or not), `::ffff:127.x.y.z`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  return isIP(h) === 6 && new URL(`http://[${h}]`).hostname === '[::1]'; // the URL parser normalizes 0:0:…:1
}

/** The host name of an http(s) origin, or null when it is not one. */
function hostnameOf(origin: string): string | null {
  try {
    return new URL(origin).hostname;
  } catch {
    return null;
  }
}

export interface ModeFacts {
  nodeEnv: string | undefined;
  vetlineDev: boolean;
  host: string;
  /** The effective PUBLIC_BASE_URL (given, or derived from HOST and PORT). */
  publicBaseUrl: string;
}

export interface ModeDecision {
  mode: EngineMode;
  /** One line for the start-up log: why this mode. */
  reason: string;
  /** What makes the engine reachable beyond this machine (`protected` only), e.g. "HOST=0.0.0.0 is not loopback". */
  exposed: string[];
}

export function engineMode(f: ModeFacts): ModeDecision {
  if (f.nodeEnv === 'production') return { mode: 'production', reason: 'NODE_ENV=production', exposed: [] };
  if (f.vetlineDev) return { mode: 'development', reason: 'VETLINE_DEV=1 (explicit opt-in)', exposed: [] };
  const baseHost = hostnameOf(f.publicBaseUrl);
  const node = f.nodeEnv === undefined ? 'NODE_ENV is unset' : `NODE_ENV=${f.nodeEnv}`;
  const exposed = [
    ...(isLoopbackHost(f.host) ? [] : [`HOST=${f.host} is not loopback`]),
    ...(baseHost === null || isLoopbackHost(baseHost) ? [] : [`PUBLIC_BASE_URL=${f.publicBaseUrl} is not loopback`]),
  ];
  if (exposed.length > 0) return { mode: 'protected', reason: `${node}, ${exposed.join(' and ')}, and VETLINE_DEV is not 1`, exposed };
  return { mode: 'local', reason: `${node}, HOST=${f.host} and PUBLIC_BASE_URL=${f.publicBaseUrl} are loopback`, exposed };
}

/** Whether a mode offers the development conveniences at all (local: still per request). */
export const devConveniences = (mode: EngineMode): boolean => mode === 'development' || mode === 'local';
