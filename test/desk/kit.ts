/**
 * The desk under test: a minimal Fastify app (like src/http/app.ts builds: the project's logger,
 * form bodies) with only registerDesk on it, over the real SQLite store (in memory), seeded through
 * the store's own writes (recordFollowUp, finishCall, the delivery outbox).
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { EngineMode } from '../../src/config/mode.js';
import { deskAccess, type DeskAccess } from '../../src/desk/access.js';
import { createDevGate, type DevGate } from '../../src/http/dev-gate.js';
import { DeskEvents } from '../../src/desk/events.js';
import { registerDesk, type DeskDeps } from '../../src/desk/plugin.js';
import { createLogger } from '../../src/observability/logger.js';
import { openStore } from '../../src/store/index.js';
import type { CallSummaryInput, DeliveryInput, FollowUpInput, FollowUpStore } from '../../src/store/types.js';

export const OAK = 'oak-hill';
export const RIVER = 'riverside';
export const TOKENS = {
  [OAK]: 'oak-desk-token-5f1c2a9e7b3d',
  [RIVER]: 'river-desk-token-8e2b4c6d0a1f',
  operator: 'operator-inspector-token-0c9d8e7f',
} as const;
export const CLINIC_NAMES: Record<string, string> = { [OAK]: 'Oak Hill Animal Clinic', [RIVER]: 'Riverside Vet' };
/** Every caller number and spoken word seeded: none may reach a log line. */
export const SECRET_WORDS = ['+15557650101', '+15557650202', '+15557650303', 'Seizures since dawn', 'Biscuit', 'Whiskers'];

export const MINUTE = 60_000;

/** The desk's host in these tests (PUBLIC_BASE_URL https://desk.clinic.example). */
export const DESK_HOST = 'desk.clinic.example';

/** The development-convenience gate of an engine in `mode` served at https://desk.clinic.example. */
export const gateFor = (mode: EngineMode): DevGate => createDevGate({ mode, publicBaseUrl: `https://${DESK_HOST}` });

export function tokenAccess(mode: EngineMode = 'production'): DeskAccess {
  return deskAccess({
    gate: gateFor(mode),
    operatorToken: TOKENS.operator,
    clinicTokens: new Map([
      [OAK, TOKENS[OAK]],
      [RIVER, TOKENS[RIVER]],
    ]),
  });
}

export const callSid = () => `CA${randomUUID().replaceAll('-', '')}`;
export const recordingSid = () => `RE${randomUUID().replaceAll('-', '')}`;

export function followUp(over: Partial<FollowUpInput> & Pick<FollowUpInput, 'clinicId'>): FollowUpInput {
  return {
    id: randomUUID(),
    callSid: callSid(),
    type: 'appointment_request',
    createdAt: Date.now(),
    callerNumber: '+15557650101',
    callerName: 'Ana García',
    petName: 'Bella',
    petSpecies: 'dog',
    reason: 'limping since Tuesday',
    preferredTime: 'Thursday morning',
    message: null,
    recipient: null,
    urgency: 'routine',
    emergency: null,
    ...over,
  };
}

export function summary(f: FollowUpInput, over: Partial<CallSummaryInput> = {}): CallSummaryInput {
  return {
    callSid: f.callSid,
    clinicId: f.clinicId,
    startedAt: f.createdAt - 2 * MINUTE,
    endedAt: f.createdAt + MINUTE,
    outcome: 'completed',
    summary: `Caller asked about ${f.petName ?? 'a pet'}.`,
    summarySource: 'template',
    transcript: [
      { role: 'agent', text: 'Good morning, how can I help?' },
      { role: 'caller', text: `It is about ${f.petName ?? 'my pet'}.` },
    ],
    callerNumber: f.callerNumber,
    recordings: [],
    ...over,
  };
}

export function webhookDelivery(f: FollowUpInput, over: Partial<DeliveryInput> = {}): DeliveryInput {
  return {
    id: randomUUID(),
    clinicId: f.clinicId,
    callSid: f.callSid,
    channel: 'webhook',
    kind: f.type,
    subjectId: f.id,
    createdAt: f.createdAt,
    holdUntil: null,
    expiresAt: f.createdAt + 24 * 60 * MINUTE,
    ...over,
  };
}

export interface DeskHarness {
  app: FastifyInstance;
  store: FollowUpStore;
  events: DeskEvents;
  logs: string[];
  access: DeskAccess;
  close(): Promise<void>;
}

export async function startDesk(opts: {
  access: DeskAccess;
  fetchRecording?: DeskDeps['fetchRecording'];
  sse?: DeskDeps['sse'];
  secureCookies?: boolean;
}): Promise<DeskHarness> {
  const store = await openStore('sqlite::memory:');
  const events = new DeskEvents();
  const logs: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => void logs.push(line) } });
  const base: FastifyBaseLogger = logger;
  const app = Fastify({ loggerInstance: base });
  await registerDesk(app, {
    store,
    access: opts.access,
    events,
    clinicName: (id) => CLINIC_NAMES[id] ?? null,
    logger,
    secureCookies: opts.secureCookies ?? false,
    ...(opts.fetchRecording ? { fetchRecording: opts.fetchRecording } : {}),
    ...(opts.sse ? { sse: opts.sse } : {}),
  });
  await app.ready();
  return {
    app,
    store,
    events,
    logs,
    access: opts.access,
    close: async () => {
      await app.close();
      await store.close();
    },
  };
}
