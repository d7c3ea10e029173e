/**
 * Twilio callbacks for a call another instance holds (REDIS_URL, no stickiness): a status callback,
 * recording callback or dial result may reach any instance. When this registry does not know the
 * call, the callback is handed to `relay` (server.ts: Redis pub/sub to every other instance), and a
 * callback relayed by another instance is applied here with `applyRelayed`, only to calls this
 * registry knows (it never relays again). Only CallSids, statuses and recording ids travel.
 */
import type { CallRegistry } from './types.js';

type StatusParams = Parameters<CallRegistry['status']>[0];
type RecordingParams = Parameters<CallRegistry['recording']>[0];
type DialParams = Parameters<CallRegistry['dialResult']>[0];

export type RelayedCallback =
  | { kind: 'status'; params: StatusParams }
  | { kind: 'recording'; params: RecordingParams }
  | { kind: 'dial'; params: DialParams };

/** `local` as the HTTP edge sees it: a callback for a call it does not know also goes to `relay`. */
export function relayingRegistry(local: CallRegistry, relay: (callback: RelayedCallback) => void): CallRegistry {
  return {
    open: (params) => local.open(params),
    status: (params) => local.status(params) || (relay({ kind: 'status', params }), false),
    recording: (params) => local.recording(params) || (relay({ kind: 'recording', params }), false),
    dialResult: (params) => local.dialResult(params) || (relay({ kind: 'dial', params }), false),
    list: () => local.list(),
    get activeCount() {
      return local.activeCount;
    },
  };
}

const str = (v: unknown): v is string => typeof v === 'string';
const strOrNull = (v: unknown): v is string | null => v === null || typeof v === 'string';
const intOrNull = (v: unknown): v is number | null => v === null || Number.isInteger(v);

/** Applies a callback another instance relayed (checked field by field first). True when this registry knew the call. */
export function applyRelayed(local: CallRegistry, payload: unknown): boolean {
  if (typeof payload !== 'object' || payload === null) return false;
  const { kind, params } = payload as { kind?: unknown; params?: Record<string, unknown> | null };
  if (typeof params !== 'object' || params === null || !str(params.callSid)) return false;
  const callSid = params.callSid;
  switch (kind) {
    case 'status':
      return str(params.status) && intOrNull(params.sequenceNumber) ? local.status({ callSid, status: params.status, sequenceNumber: params.sequenceNumber }) : false;
    case 'dial':
      return str(params.dialStatus) ? local.dialResult({ callSid, dialStatus: params.dialStatus }) : false;
    case 'recording': {
      const r = params.recording as Record<string, unknown> | null | undefined;
      if (!r || !str(r.recordingSid) || !str(r.status) || !strOrNull(r.url) || !intOrNull(r.durationSeconds) || !intOrNull(r.channels)) return false;
      return local.recording({ callSid, recording: { recordingSid: r.recordingSid, status: r.status, url: r.url, durationSeconds: r.durationSeconds, channels: r.channels } });
    }
    default:
      return false;
  }
}
