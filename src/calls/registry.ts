/**
 * The call registry: one session per CallSid, one-time stream tokens, and the translation of
 * validated webhooks and Media Stream starts into session calls. Only this module creates calls.
 */
import type { Logger } from 'pino';
import { BUDGETS } from '../../machines/call/budgets.js';
import type { Tenant } from '../config/tenant.schema.js';
import type { StartMessage } from '../twilio/media-codec.js';
import type { MediaStreamHandle, StartDecision } from '../twilio/stream-socket.js';
import { sameSid } from '../twilio/sid.js';
import type { RecordingTranscriber, RecordingTranscript } from './recording-transcriber.js';
import type { CallRecord } from './call-record.js';
import { CallSession, type SessionDeps } from './session.js';
import { StreamTokens, type StreamTokenClaims } from './stream-token.js';
import type { CallListing, CallRegistry, OpenCallResult, RecordingInfo } from './types.js';

export interface RegistryOptions extends SessionDeps {
  /** Twilio account the streams must belong to; null skips the check (development). */
  accountSid: string | null;
  maxCalls: number;
  /**
   * Mints the stream token /twilio/voice puts in the Stream URL path; the stream route verifies with
   * the same (stream-token.ts). Default: a random key of this process, any clinic id accepted.
   */
  streamTokens?: StreamTokens;
  /** Finished calls kept for the inspector and tests. */
  keepRecent?: number;
  /** Transcribes completed recordings once their call has ended (recording-transcriber.ts). */
  transcriber?: RecordingTranscriber;
  /** The clinics, for a call taken over from another worker (`adopt`). */
  tenantById?: (id: string) => Tenant | null;
}

/** What a worker needs to carry on a call another worker answered (`Registry.release` → `adopt`). */
export interface CallSeed {
  /** The signed caller number, as `open` got it (kept only as the clinic's privacy setting allows). */
  from: string | null;
  /** Its keyed hash for the per-caller limits. */
  callerKey: string | null;
}

/**
 * Drain (docs/design/reliability.md §3): calls minted before SIGTERM may still connect their stream this long;
 * after it, or once none is waiting, every stream upgrade is refused.
 */
export const DRAIN_HANDSHAKE_WINDOW_MS = 10_000;
/** After the drain hand-off, how long Twilio gets to stop the stream before we close it 1001. */
export const HANDOFF_STOP_WAIT_MS = BUDGETS.handoffStopWaitMs;

const TERMINAL = new Set(['completed', 'busy', 'failed', 'no-answer', 'canceled'] as const);
type Terminal = typeof TERMINAL extends Set<infer T> ? T : never;
const isTerminal = (s: string): s is Terminal => TERMINAL.has(s as Terminal);

export class Registry implements CallRegistry {
  private readonly calls = new Map<string, CallSession>();
  private readonly tokenByCall = new Map<string, string>();
  private readonly seenCallbacks = new Set<string>();
  private readonly recent: CallRecord[] = [];
  private readonly log: Logger;
  private draining = false;
  private drainingSince = 0;
  /** Media Streams of live calls: the drain closes them (1001) after handing the caller off. */
  private readonly streams = new Map<string, MediaStreamHandle>();
  private readonly endedListeners = new Set<(record: CallRecord) => void>();
  private readonly dialListeners = new Set<(record: CallRecord, dialStatus: string) => void>();
  /** Completed recordings of calls still live: transcribed when the call ends. */
  private readonly transcribeAfterEnd = new Map<string, RecordingInfo[]>();
  /** Live calls' caller keys (caller-limits.ts), for the per-caller concurrency limit. */
  private readonly callerKeys = new Map<string, { tenantId: string; key: string }>();

  readonly streamTokens: StreamTokens;

  constructor(private readonly opts: RegistryOptions) {
    this.log = opts.logger;
    this.streamTokens = opts.streamTokens ?? new StreamTokens({ secret: null, accountSid: opts.accountSid, clinicExists: () => true });
  }

  get activeCount(): number {
    return this.calls.size;
  }

  /** How many calls this process holds at most (MAX_CALLS). */
  get capacity(): number {
    return this.opts.maxCalls;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Stop accepting new calls (SIGTERM); live calls carry on. */
  startDraining(): void {
    if (this.draining) return;
    this.draining = true;
    this.drainingSince = performance.now();
  }

  /**
   * Whether a Media Stream upgrade may proceed: always, unless draining; then only while a call
   * minted before the drain still waits for its stream, within DRAIN_HANDSHAKE_WINDOW_MS.
   */
  acceptsStreamUpgrades(): boolean {
    if (!this.draining) return true;
    if (performance.now() - this.drainingSince > DRAIN_HANDSHAKE_WINDOW_MS) return false;
    for (const session of this.calls.values()) if (!session.streamConnected) return true;
    return false;
  }

  onCallEnded(listener: (record: CallRecord) => void): () => void {
    this.endedListeners.add(listener);
    return () => this.endedListeners.delete(listener);
  }

  /** Twilio reported how a transfer's <Dial> ended, for a call this registry holds (once per call and status). */
  onDialResult(listener: (record: CallRecord, dialStatus: string) => void): () => void {
    this.dialListeners.add(listener);
    return () => this.dialListeners.delete(listener);
  }

  open({ callSid, accountSid, tenant, from = null, callerKey = null }: { callSid: string; accountSid: string; tenant: Tenant; from?: string | null; callerKey?: string | null }): OpenCallResult {
    const existing = this.calls.get(callSid);
    if (existing) {
      const token = this.tokenByCall.get(callSid);
      return !existing.streamConnected && token ? { kind: 'awaitingStream', streamToken: token } : { kind: 'alreadyConnected' };
    }
    if (this.recent.some((r) => r.callSid === callSid)) return { kind: 'alreadyConnected' };
    if (this.draining) return { kind: 'refused', reason: 'draining' };
    if (this.calls.size >= this.opts.maxCalls) return { kind: 'refused', reason: 'capacity' };

    const session = new CallSession(callSid, tenant, this.opts, (s) => this.ended(s), { from });
    this.calls.set(callSid, session);
    if (callerKey !== null) this.callerKeys.set(callSid, { tenantId: tenant.id, key: callerKey });
    const token = this.streamTokens.mint({ callSid, accountSid, clinicId: tenant.id });
    this.tokenByCall.set(callSid, token);
    session.start();
    session.log.info('call created');
    return { kind: 'created', streamToken: token };
  }

  /**
   * A Media Stream sent `start` on an upgrade whose path token verified (signature, expiry, account,
   * clinic, first use: stream-token.ts). Accept it only for the call the token names, from the
   * token's account, while that call waits for its stream.
   */
  /**
   * The stream of a call this registry holds waiting arrived at another worker: give the call up
   * (no record: the other worker's session carries it) and return what that worker needs to carry
   * it on. Null when this registry does not hold it waiting.
   */
  release(callSid: string): CallSeed | null {
    const session = this.calls.get(callSid);
    if (!session || session.streamConnected) return null;
    const seed: CallSeed = { from: session.origin.from, callerKey: this.callerKeys.get(callSid)?.key ?? null };
    this.calls.delete(callSid);
    this.callerKeys.delete(callSid);
    this.tokenByCall.delete(callSid);
    session.discard();
    return seed;
  }

  /**
   * A verified stream token names a call this registry does not hold (its webhook was answered by
   * another worker, which released it with `seed`): create its session here, waiting for `start`.
   * False when it cannot be taken (draining, at capacity, clinic gone, already here or finished).
   */
  adopt(claims: StreamTokenClaims, seed: CallSeed): boolean {
    const { callSid } = claims;
    const tenant = this.opts.tenantById?.(claims.clinicId) ?? null;
    if (!tenant || this.calls.has(callSid) || this.recent.some((r) => r.callSid === callSid)) return false;
    if (this.draining || this.calls.size >= this.opts.maxCalls) return false;
    const session = new CallSession(callSid, tenant, this.opts, (s) => this.ended(s), { from: seed.from });
    this.calls.set(callSid, session);
    if (seed.callerKey !== null) this.callerKeys.set(callSid, { tenantId: tenant.id, key: seed.callerKey });
    session.start();
    session.log.info('call taken over from another worker');
    return true;
  }

  acceptStream(start: StartMessage, handle: MediaStreamHandle, claims: StreamTokenClaims): StartDecision {
    if (claims.callSid !== start.callSid) return { reject: 'stream token belongs to another call' };
    if (!sameSid(start.accountSid, claims.accountSid)) return { reject: 'stream from another account' };
    if (this.opts.accountSid && !sameSid(start.accountSid, this.opts.accountSid)) return { reject: 'stream from another account' };
    const session = this.calls.get(claims.callSid);
    if (!session || session.streamConnected || session.tenant.id !== claims.clinicId) return { reject: 'call is not waiting for a stream' };
    this.tokenByCall.delete(claims.callSid);
    session.attachStream(handle, start);
    this.streams.set(claims.callSid, handle);
    return 'accept';
  }

  /** Live calls of clinic `tenantId` from the caller `key` (caller-limits.ts), `exceptCallSid` not counted. */
  liveCallsFrom(tenantId: string, key: string, exceptCallSid: string): number {
    let n = 0;
    for (const [callSid, c] of this.callerKeys) if (c.key === key && c.tenantId === tenantId && callSid !== exceptCallSid) n++;
    return n;
  }

  session(callSid: string): CallSession | undefined {
    return this.calls.get(callSid);
  }

  status({ callSid, status, sequenceNumber }: { callSid: string; status: string; sequenceNumber: number | null }): boolean {
    const key = `status:${callSid}:${status}:${sequenceNumber ?? '-'}`;
    if (this.seen(key)) return this.calls.has(callSid) || this.recent.some((r) => r.callSid === callSid);
    const session = this.calls.get(callSid);
    if (!session) return false;
    if (isTerminal(status)) session.status(status);
    else if (status === 'stream-error' && !session.streamConnected) session.status('failed');
    return true;
  }

  recording({ callSid, recording }: { callSid: string; recording: RecordingInfo }): boolean {
    if (this.seen(`recording:${recording.recordingSid}:${recording.status}`)) return true;
    const info = { recordingSid: recording.recordingSid, status: recording.status, url: recording.url, durationSeconds: recording.durationSeconds };
    const session = this.calls.get(callSid);
    const transcribe = this.opts.transcriber !== undefined && recording.status === 'completed' && recording.url !== null;
    if (session) {
      session.recording(info);
      if (transcribe) this.transcribeAfterEnd.set(callSid, [...(this.transcribeAfterEnd.get(callSid) ?? []), recording]);
      return true;
    }
    // Completed recordings usually arrive after the call ended: attach to the finished record.
    const record = this.recent.find((r) => r.callSid === callSid);
    if (record) record.recordings.push(info);
    if (record && transcribe) this.transcribe(record, recording);
    return record !== undefined;
  }

  dialResult({ callSid, dialStatus }: { callSid: string; dialStatus: string }): boolean {
    const session = this.calls.get(callSid);
    if (session) session.dialResult(dialStatus);
    const record = session?.record ?? this.recent.find((r) => r.callSid === callSid);
    if (record) record.dialStatus = dialStatus;
    if (record && !this.seen(`dial:${callSid}:${dialStatus}`)) for (const listener of this.dialListeners) listener(record, dialStatus);
    return record !== undefined;
  }

  list(): CallListing[] {
    return [...this.calls.values()].map((s) => ({
      callSid: s.callSid,
      tenantId: s.tenant.id,
      state: s.statePath,
      startedAt: s.record.startedAt,
      durationMs: Math.round(s.durationMs),
      stateDurationMs: Math.round(s.stateDurationMs),
    }));
  }

  recentCalls(): readonly CallRecord[] {
    return this.recent;
  }

  /** End every live call politely (goodbye, then hang up). */
  hangUpAll(reason: string): void {
    for (const session of this.calls.values()) session.hangUp(reason);
  }

  /**
   * Drain deadline (docs/design/reliability.md §3 step 4): every live call is handed to its clinic's front desk
   * by its own machine (`call.handoff`: REST update to <Say> + <Dial>; if that fails the call ends
   * and Twilio plays the key menu after </Connect>); Twilio then stops the stream, and whatever is
   * still open after `stopWaitMs` is closed 1001. Resolves once every call that was live has ended.
   */
  async handOffAll(stopWaitMs = HANDOFF_STOP_WAIT_MS): Promise<void> {
    await Promise.all([...this.calls.values()].map((session) => this.handOff(session, stopWaitMs)));
  }

  private async handOff(session: CallSession, stopWaitMs: number): Promise<void> {
    const { callSid } = session;
    const ended = this.whenEnded(callSid);
    const stream = this.streams.get(callSid);
    if (!stream) {
      // Never connected: no stream will report an end, and Twilio runs the TwiML after </Connect>.
      session.status('canceled');
      return;
    }
    session.log.info('drain deadline: handing the call off');
    session.handOff('shutdown');
    if (!(await within(ended, stopWaitMs))) {
      stream.close(1001, 'server shutting down');
      await within(ended, BUDGETS.handoffCloseWaitMs);
    }
  }

  /** Resolves when the call leaves the registry (at once if it already has). */
  private whenEnded(callSid: string): Promise<void> {
    if (!this.calls.has(callSid)) return Promise.resolve();
    return new Promise((resolve) => {
      const off = this.onCallEnded((record) => {
        if (record.callSid !== callSid) return;
        off();
        resolve();
      });
    });
  }

  private seen(key: string): boolean {
    if (this.seenCallbacks.has(key)) return true;
    this.seenCallbacks.add(key);
    if (this.seenCallbacks.size > 10_000) this.seenCallbacks.delete(this.seenCallbacks.values().next().value as string);
    return false;
  }

  private ended(session: CallSession): void {
    this.calls.delete(session.callSid);
    this.callerKeys.delete(session.callSid);
    this.streams.delete(session.callSid);
    this.tokenByCall.delete(session.callSid);
    this.recent.push(session.record);
    if (this.recent.length > (this.opts.keepRecent ?? 200)) this.recent.shift();
    for (const listener of this.endedListeners) listener(session.record);
    const recordings = this.transcribeAfterEnd.get(session.callSid) ?? [];
    this.transcribeAfterEnd.delete(session.callSid);
    for (const recording of recordings) this.transcribe(session.record, recording);
  }

  /** Background: the transcript lands on the record; logs carry ids and counts, never text. */
  private transcribe(record: CallRecord, recording: RecordingInfo): void {
    const transcriber = this.opts.transcriber;
    if (!transcriber || recording.url === null) return;
    const { callSid, tenantId } = record;
    const { recordingSid } = recording;
    const log = this.log.child({ callSid, tenantId, recordingSid });
    const startedAt = performance.now();
    log.info('recording transcription started');
    const done = (transcript: RecordingTranscript) => {
      record.recordingTranscripts.push(transcript);
      const fields = { status: transcript.status, segments: transcript.segments.length, ms: Math.round(performance.now() - startedAt) };
      if (transcript.status === 'done') log.info(fields, 'recording transcription finished');
      else log.warn({ ...fields, error: transcript.error }, 'recording transcription finished');
    };
    transcriber
      .transcribe({ callSid, tenantId, recordingUrl: recording.url, channels: recording.channels, recordingSid })
      .then(done, (err: unknown) => done({ recordingSid, segments: [], status: 'failed', error: `transcriber threw ${err instanceof Error ? err.name : typeof err}` }))
      .catch((err: unknown) => log.error({ err }, 'recording transcript could not be stored'));
  }
}

/** True if `p` settled within `ms`; the timer never holds the process open. */
function within(p: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    void p.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
