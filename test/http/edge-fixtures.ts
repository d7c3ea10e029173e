/**
 * Shared fixtures for the HTTP edge tests: tenants parsed by the real schema, a fake CallRegistry
 * that records every call, a captured pino logger, and `testApp()` around `buildApp`.
 */
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { afterEach } from 'vitest';
import pino from 'pino';
import { TenantSchema } from '../../src/config/tenant.schema.js';
import type { Tenant, TenantFile } from '../../src/config/tenant.schema.js';
import type { StreamTokenClaims } from '../../src/calls/stream-token.js';
import type { CallListing, CallRegistry, OpenCallResult, RecordingInfo } from '../../src/calls/types.js';
import { buildApp } from '../../src/http/app.js';
import type { EdgeDeps } from '../../src/http/edge.js';
import { signedForm } from '../support/twilio-sign.js';
import type { FormParams } from '../support/twilio-sign.js';

export const BASE = 'https://voice.test';
export const TOKEN = 'test-auth-token-0123456789abcdef';
export const ACCOUNT = `AC${'a'.repeat(32)}`;
export const CLINIC_A_NUMBER = '+15550002222';
export const CLINIC_B_NUMBER = '+15550003333';
export const FRONT_DESK_A = '+15550009999';

export const callSid = (n: number) => `CA${n.toString(16).padStart(32, '0')}`;

const clinic = (over: Partial<TenantFile>): TenantFile => ({
  id: 'clinic-a',
  name: 'Riverside Vets',
  phoneNumbers: [CLINIC_A_NUMBER],
  greeting: 'Thanks for calling Riverside Vets.',
  transfer: { frontDesk: FRONT_DESK_A },
  emergency: { script: 'If your pet is in danger, drive to the Northside animal hospital now.' },
  info: { hours: '8 to 6', address: '1 River Road' },
  ...over,
});

export const clinicA: Tenant = TenantSchema.parse(clinic({}));
export const clinicB: Tenant = TenantSchema.parse(clinic({
  id: 'clinic-b',
  name: 'Hilltop Animal Clinic',
  phoneNumbers: [CLINIC_B_NUMBER],
  accountSid: `AC${'b'.repeat(32)}`,
  transfer: { frontDesk: '+15550008888', emergency: '+15550007777', ringSeconds: 25 },
  menu: {
    '2': { action: 'transfer', target: 'emergency', label: 'the emergency line' },
    '8': { action: 'hangup', label: 'to end this call' },
  },
}));

/** Records every registry call; behaviour is switched per test. */
export class FakeRegistry implements CallRegistry {
  opened: { callSid: string; tenantId: string }[] = [];
  statuses: { callSid: string; status: string; sequenceNumber: number | null }[] = [];
  recordings: { callSid: string; recording: RecordingInfo }[] = [];
  dials: { callSid: string; dialStatus: string }[] = [];
  connected = new Set<string>();
  refuse: 'draining' | 'capacity' | null = null;
  throwOnOpen = false;
  throwOnList = false;
  private tokens = new Map<string, string>();
  private seen = new Set<string>();

  open({ callSid, tenant }: { callSid: string; tenant: Tenant }): OpenCallResult {
    if (this.throwOnOpen) throw new Error('registry exploded');
    if (this.connected.has(callSid)) return { kind: 'alreadyConnected' };
    const known = this.tokens.get(callSid);
    if (known) return { kind: 'awaitingStream', streamToken: known };
    if (this.refuse) return { kind: 'refused', reason: this.refuse };
    const token = `tok-${this.tokens.size + 1}`;
    this.tokens.set(callSid, token);
    this.opened.push({ callSid, tenantId: tenant.id });
    return { kind: 'created', streamToken: token };
  }
  status(p: { callSid: string; status: string; sequenceNumber: number | null }): boolean {
    this.statuses.push(p);
    const key = `${p.callSid}|${p.status}|${p.sequenceNumber}`;
    const fresh = !this.seen.has(key);
    this.seen.add(key);
    return this.tokens.has(p.callSid) && fresh;
  }
  recording(p: { callSid: string; recording: RecordingInfo }): boolean {
    this.recordings.push(p);
    return this.tokens.has(p.callSid);
  }
  dialResult(p: { callSid: string; dialStatus: string }): boolean {
    this.dials.push(p);
    return this.tokens.has(p.callSid);
  }
  list(): CallListing[] {
    if (this.throwOnList) throw new Error('list failed: secret detail /srv/app/src/calls/registry.ts:42');
    // An extra field the edge must not pass through.
    return [...this.tokens.keys()].map((sid) => ({
      callSid: sid, tenantId: 'clinic-a', state: 'listening', startedAt: '2025-01-01T00:00:00.000Z',
      durationMs: 1200, stateDurationMs: 300, from: '+15550001111',
    }) as CallListing);
  }
  get activeCount(): number {
    return this.tokens.size;
  }
}

/** A pino logger whose JSON lines land in `lines`. */
export function captureLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

export function testDeps(over: Partial<EdgeDeps> = {}): EdgeDeps & { registry: FakeRegistry; lines: string[] } {
  const { logger, lines } = captureLogger();
  const tenants = [clinicA, clinicB];
  return {
    publicBaseUrl: BASE,
    authToken: TOKEN,
    accountSid: null,
    validation: 'on',
    tenants: { byNumber: (n) => tenants.find((t) => t.phoneNumbers.includes(n)) ?? null },
    logger,
    rateLimit: { maxFailuresPerMinute: 20, banMinutes: 15 },
    version: '0.1.0-test',
    draining: () => false,
    ...over,
    registry: over.registry instanceof FakeRegistry ? over.registry : new FakeRegistry(),
    lines,
  };
}

export async function testApp(over: Partial<EdgeDeps> = {}) {
  const deps = testDeps(over);
  const app = await buildApp(deps);
  return { app, deps, registry: deps.registry, lines: deps.lines };
}

/** `start(over)` builds a test app; every app a test built is closed after it. */
export function useTestApps() {
  const apps: FastifyInstance[] = [];
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((a) => a.close()));
  });
  return async (over: Partial<EdgeDeps> = {}) => {
    const t = await testApp(over);
    apps.push(t.app);
    return t;
  };
}

export const voiceParams = (over: FormParams = {}): FormParams => ({
  CallSid: callSid(1),
  AccountSid: ACCOUNT,
  From: '+15550001111',
  To: CLINIC_A_NUMBER,
  CallStatus: 'ringing',
  Direction: 'inbound',
  ...over,
});

/** Signed POST to `path` with the test token and base URL. */
export const signed = (path: string, params: FormParams, extra: { headers?: Record<string, string>; remoteAddress?: string } = {}) =>
  signedForm({ baseUrl: BASE, token: TOKEN, path, params, ...extra });

/** Element names in document order, closing tags as `/Name`: enough to assert TwiML structure. */
export function tagSequence(xml: string): string[] {
  return [...xml.matchAll(/<(\/?)([A-Za-z]+)[^>]*?(\/?)>/g)].flatMap((m) =>
    m[3] ? [m[2] ?? '', `/${m[2] ?? ''}`] : [`${m[1] ?? ''}${m[2] ?? ''}`],
  );
}

export const attr = (xml: string, tag: string, name: string): string | null =>
  new RegExp(`<${tag}\\b[^>]*\\s${name}="([^"]*)"`).exec(xml)?.[1] ?? null;

/**
 * The claims inside a stream token as the stream route hands them to `registry.acceptStream` after
 * verifying it (here only decoded: tests of the registry, not of the token; test/calls/stream-token.test.ts).
 */
export function claimsOf(token: string): StreamTokenClaims {
  return JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as StreamTokenClaims;
}
