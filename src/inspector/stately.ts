/**
 * The call feed as XState inspection events in the shape @statelyai/inspect sends over its
 * WebSocket adapter (`StatelyInspectionEvent`: `@xstate.actor`, `@xstate.event`, `@xstate.snapshot`
 * with sessionId, rootId, createdAt, id, _version). Each call is one root actor whose sessionId is
 * its CallSid; child-actor events carry `sourceId: "<CallSid>/<child>"`. Audio payloads are
 * reduced to their length and phone numbers masked, like everything else the inspector shows.
 */
import { randomUUID } from 'node:crypto';
import type { AnyStateMachine } from 'xstate';
import type { CallActivity } from '../calls/activity.js';
import { maskDeep } from './mask.js';

/** Protocol version field (@statelyai/inspect writes its package version there). */
export const STATELY_PROTOCOL_VERSION = '0.4.0';

interface Base {
  rootId: string | undefined;
  sessionId: string;
  createdAt: string;
  id: string;
  _version: string;
}

export type StatelyInspectionEvent =
  | (Base & { type: '@xstate.actor'; name: string; snapshot: { status: 'active' | 'done' | 'error' | 'stopped'; value?: unknown; context?: unknown }; definition: string | undefined; parentId: string | undefined })
  | (Base & { type: '@xstate.event'; event: { type: string; [key: string]: unknown }; sourceId: string | undefined })
  | (Base & { type: '@xstate.snapshot'; snapshot: { status: string; value: unknown; context: unknown }; event: { type: string; [key: string]: unknown } });

const base = (sessionId: string): Base => ({ rootId: sessionId, sessionId, createdAt: Date.now().toString(), id: randomUUID(), _version: STATELY_PROTOCOL_VERSION });

/** The machine definition as @statelyai/inspect serialises it (functions become `{ type: name }`). */
export function machineDefinition(machine: AnyStateMachine): string {
  return JSON.stringify(machine.config, (_key, value: unknown) => (typeof value === 'function' ? { type: (value as { name: string }).name } : value));
}

const childOf = (eventType: string) => eventType.split('.')[0] ?? 'child';

/** Converts one activity. `lastEvent` is the event that led to a snapshot (the trace knows it). */
export function toStately(a: CallActivity, lastEvent: { type: string } | null): StatelyInspectionEvent | null {
  switch (a.type) {
    case 'event':
      return {
        ...base(a.callSid),
        type: '@xstate.event',
        event: maskDeep(a.event) as { type: string },
        sourceId: a.source === 'child' ? `${a.callSid}/${childOf(a.event.type)}` : undefined,
      };
    case 'snapshot': {
      const { tenant: _tenant, ...context } = a.context;
      return {
        ...base(a.callSid),
        type: '@xstate.snapshot',
        snapshot: { status: a.status, value: a.value, context: maskDeep(context) },
        event: (lastEvent ? maskDeep(lastEvent) : { type: '' }) as { type: string },
      };
    }
    case 'ended':
    case 'moved':
    case 'command':
    case 'audio':
      return null;
  }
}

/** The call is over: its actor as stopped (sent last, after a late final snapshot). */
export function actorDone(callSid: string, definition: string | undefined): StatelyInspectionEvent {
  return { ...base(callSid), type: '@xstate.actor', name: 'call', snapshot: { status: 'done' }, definition, parentId: undefined };
}

export function actorRegistration(callSid: string, definition: string | undefined, value: unknown, context: unknown): StatelyInspectionEvent {
  return { ...base(callSid), type: '@xstate.actor', name: 'call', snapshot: { status: 'active', value, context }, definition, parentId: undefined };
}
