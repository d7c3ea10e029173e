/**
 * One live call: its actor, its Media Stream socket, its player and its child actors' providers.
 * The only place where the machine's commands become Twilio messages and REST calls.
 */
import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Actor, InspectionEvent } from 'xstate';
import { callMachine } from '../../machines/call/call.machine.js';
import type { CallCommand, CallContext, CallEvent, Outcome } from '../../machines/call/call.types.js';
import { decodeUlaw } from '../audio/ulaw.js';
import { openAt } from '../config/hours.js';
import type { Tenant } from '../config/tenant.schema.js';
import { roundMs, sameStateValue, statePath } from '../journal/format.js';
import type { CallJournal } from '../journal/writer.js';
import { callLogger } from '../observability/logger.js';
import { sttVocabularyFor } from '../providers/stt/local-grammar.js';
import type { DtmfMessage, MarkMessage, MediaMessage, StartMessage } from '../twilio/media-codec.js';
import { Player } from '../twilio/player.js';
import type { MediaStreamHandle } from '../twilio/stream-socket.js';
import { AudioHub } from './audio-hub.js';
import { toCallTenant } from './call-input.js';
import { CallRest } from './call-rest.js';
import { createCallActor, type CallActorDeps } from './child-actors.js';
import type { CallOrigin, SessionDeps } from './session-deps.js';
import { MarkEchoes } from './mark-echoes.js';
import { emergencyOf, journalSummary, newCallRecord, noteChildEvent, UsageLedger, type CallRecord } from './call-record.js';
import type { CallFollowUps } from './follow-through.js';
import { TurnClock } from './turn-clock.js';

export type { CallOrigin, SessionDeps, SessionTap } from './session-deps.js';

export class CallSession {
  readonly log: Logger;
  readonly record: CallRecord;
  private readonly actor: Actor<typeof callMachine>;
  private readonly hub: AudioHub;
  private readonly turnClock: TurnClock;
  private readonly usage: UsageLedger;
  private readonly now: () => number;
  private readonly startedAtMs: number;
  private stateSinceMs: number;
  private stream: MediaStreamHandle | null = null;
  private player: Player | null = null;
  private pcm = new Int16Array(160);
  private ended = false;
  /** Requests taken by an engine without a store (tests, bench): numbered for their ids. */
  private uncommitted = 0;
  private readonly journal: CallJournal | null;
  private readonly followUps: CallFollowUps | null;
  private readonly twilio: CallRest;
  /** Mark echoes on their way to the machine (fewer of them: mark-echoes.ts). */
  private readonly marks: MarkEchoes;

  constructor(
    readonly callSid: string,
    readonly tenant: Tenant,
    private readonly deps: SessionDeps,
    private readonly onEnded: (session: CallSession) => void,
    readonly origin: CallOrigin = { from: null },
  ) {
    this.now = deps.now ?? (() => performance.now());
    this.hub = new AudioHub(this.now);
    this.startedAtMs = this.stateSinceMs = this.now();
    this.log = callLogger(deps.logger, { callSid, streamSid: null, tenantId: tenant.id });
    this.twilio = new CallRest(callSid, tenant, deps, this.log);
    this.marks = new MarkEchoes((mark) => this.deliver(mark), this.now);
    const { vad } = deps.providers;
    const budgeted = deps.budget?.forCall(tenant, deps.providers);
    const { stt, tts, agent } = budgeted?.set ?? deps.providers.select?.(tenant) ?? deps.providers;
    if (budgeted?.overBudget) this.log.info("the clinic's daily provider budget is used up: this call runs on the embedded providers");
    this.record = newCallRecord(callSid, tenant.id, { vad: vad.name, stt: stt.name, agent: agent.name, tts: tts.name });
    this.usage = new UsageLedger(this.record.usage);
    const startedAt = (deps.clock ?? Date.now)();
    const openNow = openAt(tenant.hours, startedAt);
    this.followUps = deps.followThrough?.forCall(callSid, tenant, origin.from, () => this.context.consent === 'given') ?? null;
    this.turnClock = new TurnClock(this.now, this.hub, (t) => {
      this.record.turns.push(t);
      this.log.info({ turn: t }, 'turn latency');
    });

    const actorDeps: CallActorDeps = {
      tenant,
      hub: this.hub,
      vad,
      stt,
      tts,
      agent: agent.startSession(tenant, { callerIdUsable: this.followUps?.callerIdUsable ?? false, startedAt, openNow }),
      prompts: deps.prompts,
      vocabulary: sttVocabularyFor(tenant),
      transfer: (target, signal) => this.twilio.transfer(target, signal),
      hangup: (signal) => this.twilio.hangup(signal),
      handoff: (signal) => this.twilio.handOffToFrontDesk(signal),
      commitRequest: async (request) => {
        if (!this.followUps) return `local-${this.record.startedAt}-${++this.uncommitted}`;
        const id = await this.followUps.commit(request);
        this.log.info({ followUpId: id, kind: request.kind }, 'request stored');
        return id;
      },
      usage: (u) => {
        this.usage.count(u);
        budgeted?.usage(u);
      },
      replyStarted: (generation) => {
        this.usage.prepared(generation);
        this.turnClock.onReplyStart(generation);
      },
      observe: (event) => {
        // The child's event reaches the actor after this: a held heard position goes first.
        this.marks.flush();
        noteChildEvent(this.record, event);
        budgeted?.event(event);
        if (event.type === 'provider.fallback') {
          this.log.warn({ kind: event.kind, from: event.from, to: event.to, reason: event.reason }, 'provider fallback');
        }
        this.turnClock.onChildEvent(event);
        this.deps.onActivity?.({ type: 'event', callSid, t: this.durationMs, source: 'child', event });
      },
    };
    const input = { callSid, tenant: toCallTenant(tenant, openNow) };
    this.journal =
      deps.journal?.open({
        callSid,
        tenantId: tenant.id,
        startedAt: this.record.startedAt,
        providers: this.record.providers,
        input,
      }) ?? null;
    // The journal listens at the actor's mailbox: edge events, child events, promise results and
    // timer firings alike, in exactly the order the machine consumes them (docs/journal.md).
    this.actor = createCallActor(
      deps.machine ?? callMachine,
      { input, ...(this.journal ? { inspect: (e: InspectionEvent) => this.journalEvent(e) } : {}) },
      actorDeps,
    );
    this.actor.on('*', (command) => {
      deps.tap?.command?.(callSid, command, this.elapsedMs());
      this.execute(command);
    });
    let lastValue: unknown = undefined;
    this.actor.subscribe({
      next: (snapshot) => {
        // Most snapshots (mark echoes, audio chunks) only change context: compare without encoding.
        const changed = !sameStateValue(snapshot.value, lastValue);
        this.deps.onActivity?.({ type: 'snapshot', callSid, t: this.durationMs, status: snapshot.status, value: snapshot.value, context: snapshot.context, changed });
        if (!changed) return;
        this.log.debug({ from: lastValue === undefined ? '' : JSON.stringify(lastValue), to: JSON.stringify(snapshot.value) }, 'state changed');
        lastValue = snapshot.value;
        this.stateSinceMs = this.now();
        deps.tap?.transition?.(callSid, statePath(snapshot.value), this.elapsedMs());
      },
      // One call failing must never take the process (or other calls) down: end this call only.
      error: (err) => this.crash(err),
    });
  }

  start(): void {
    this.actor.start();
  }

  /** Dotted state path for listings, e.g. "reply.speaking". */
  get statePath(): string {
    return statePath(this.actor.getSnapshot().value);
  }

  get stateDurationMs(): number {
    return this.now() - this.stateSinceMs;
  }

  get durationMs(): number {
    return this.now() - this.startedAtMs;
  }

  /** The conversation so far, agent lines cut to what the caller heard. */
  get history(): readonly { role: 'caller' | 'agent'; text: string }[] {
    return this.context.history;
  }

  /** What the call has decided so far (the machine's context); after the end, its final context. */
  get context(): Readonly<CallContext> {
    return this.record.final ?? this.actor.getSnapshot().context;
  }

  get streamConnected(): boolean {
    return this.stream !== null;
  }

  /** The Media Stream started with a valid token for this call. */
  attachStream(handle: MediaStreamHandle, start: StartMessage): void {
    this.stream = handle;
    this.log.setBindings({ streamSid: start.streamSid });
    this.player = new Player({
      streamSid: start.streamSid,
      send: (json) => {
        handle.send(json);
      },
      batch: (sends) => handle.batch(sends),
      onError: (err) => this.log.warn({ err }, 'player send failed'),
      echo: this.hub.echo,
    });
    // The socket counts as started only once this handler returns: start the call (and its greeting
    // audio) just after, or the first frames would be dropped as sent before `start`.
    queueMicrotask(() => this.send({ type: 'twilio.start', streamSid: start.streamSid }));
  }

  onMedia(media: MediaMessage): void {
    if (this.pcm.length !== media.audio.length) this.pcm = new Int16Array(media.audio.length);
    this.hub.pushFrame(decodeUlaw(media.audio, this.pcm), media.timestampMs);
    this.deps.onActivity?.({ type: 'audio', callSid: this.callSid, t: this.durationMs, pcm: this.pcm });
  }

  onDtmf(dtmf: DtmfMessage): void {
    this.send({ type: 'twilio.dtmf', digit: dtmf.digit });
  }

  onMark(mark: MarkMessage): void {
    const info = Player.parseMark(mark.name);
    if (info && !this.ended) this.marks.arrived({ type: 'twilio.mark', ...info }, this.actor.getSnapshot().context.playback);
  }

  onStop(): void {
    this.send({ type: 'twilio.stop' });
  }

  onClose(): void {
    this.stream = null;
    this.send({ type: 'twilio.closed' });
  }

  status(status: 'completed' | 'busy' | 'failed' | 'no-answer' | 'canceled'): void {
    this.send({ type: 'call.status', status });
  }

  recording(info: CallRecord['recordings'][number]): void {
    this.record.recordings.push(info);
    this.send({ type: 'call.recording', recordingSid: info.recordingSid, status: info.status });
  }

  dialResult(status: string): void {
    this.record.dialStatus = status;
  }

  /** End the call politely (goodbye, then hang up). */
  hangUp(reason: string): void {
    this.send({ type: 'call.hangup', reason });
  }

  /** Drain deadline: the machine hands the caller to the front desk (or the key menu). */
  handOff(reason: string): void {
    this.send({ type: 'call.handoff', reason });
  }

  send(event: CallEvent): void {
    if (this.ended) return;
    this.marks.flush();
    this.deliver(event);
  }

  private deliver(event: CallEvent): void {
    if (this.ended) return;
    this.deps.onActivity?.({ type: 'event', callSid: this.callSid, t: this.durationMs, source: 'edge', event });
    this.actor.send(event);
  }

  /** ms since the call started, 0.1 ms precision (journal and tap timestamps). */
  private elapsedMs(): number {
    return roundMs(this.now() - this.startedAtMs);
  }

  /** Every event delivered to the call actor itself (not to its children); `xstate.init` is implied. */
  private journalEvent(e: InspectionEvent): void {
    if (e.type !== '@xstate.event' || e.actorRef.sessionId !== e.rootId || e.event.type === 'xstate.init') return;
    // The actor sending to itself is a delayed event: an `after` timeout or a delayed raise.
    this.journal?.event(this.elapsedMs(), e.event, e.sourceRef?.sessionId === e.rootId);
  }

  private execute(command: CallCommand): void {
    this.deps.onActivity?.({ type: 'command', callSid: this.callSid, t: this.durationMs, command });
    const player = this.player;
    switch (command.type) {
      case 'out.audio':
        this.turnClock.onAudio(command.generation);
        player?.enqueue(command.generation, command.audio);
        return;
      case 'out.finish':
        player?.finish(command.generation);
        return;
      case 'out.clear':
        player?.clear();
        this.turnClock.onClear((bargeIn) => this.record.bargeIns.push(bargeIn));
        return;
      case 'out.resume':
        player?.resume(command.generation, command.fromMs);
        return;
      case 'out.turn':
        this.usage.committed(command.generation);
        this.turnClock.onTurn(command.generation, command.endOfTurn, command.prepared);
        return;
      case 'out.discard':
        this.usage.discarded(command.generation);
        this.turnClock.onDiscard(command.generation);
        return;
      case 'out.interrupted':
        this.log.info({ heardMs: command.heardMs, confirmed: command.confirmed }, 'caller interrupted');
        return;
      case 'out.startRecording':
        void this.twilio.startRecording();
        return;
      case 'out.emergency':
        // The agent's reason is caller-influenced free text: logged as 'agent' only.
        this.log.warn({ emergency: emergencyOf({ emergency: command.source, emergencyCheck: null }), check: command.check }, 'emergency detected');
        return;
      case 'out.request':
        return;
      case 'out.ended':
        this.finish(command.outcome);
        return;
    }
  }

  private crash(err: unknown): void {
    if (this.ended) return;
    this.log.error({ err, code: 'VET_E_CALL_CRASHED' }, 'call crashed; handing the caller to the fallback menu');
    // Closing the stream makes Twilio run the verbs after </Connect>: the clinic's key menu.
    this.stream?.close(1011, 'call failed');
    this.finish('error');
  }

  /**
   * The call's stream started at another worker, which carries the call from here on: stop without
   * an outcome, a record or follow-ups (the other worker's session has them); the journal is removed.
   */
  discard(): void {
    if (this.ended || this.stream) return;
    this.ended = true;
    this.hub.clear();
    if (this.actor.getSnapshot().status === 'active') this.actor.stop();
    this.log.info('call continues at another worker');
    const journal = this.journal;
    if (journal) {
      journal.end(this.elapsedMs(), 'noStream', journalSummary(this.record, this.actor.getSnapshot().context, this.elapsedMs()));
      void journal.flush().then(() => rm(journal.path, { force: true })).catch((err: unknown) => this.log.warn({ err }, 'journal of a moved call not removed'));
    }
    this.deps.onActivity?.({ type: 'moved', callSid: this.callSid, t: this.durationMs });
  }

  private finish(outcome: Outcome): void {
    if (this.ended) return;
    this.ended = true;
    const final = this.actor.getSnapshot().context;
    this.record.final = final;
    this.record.outcome = outcome;
    this.record.endedAt = new Date().toISOString();
    this.player?.stop();
    this.hub.clear();
    if (this.actor.getSnapshot().status === 'active') this.actor.stop();
    // The machine decided the call is over; if Twilio has not closed the stream yet, we do.
    if (this.stream && this.stream.state === 'started') this.stream.close(1000, 'call ended');
    this.log.info({ outcome, durationMs: Math.round(this.durationMs), turns: this.record.turns.length }, 'call ended');
    this.journal?.end(this.elapsedMs(), outcome, journalSummary(this.record, final, this.elapsedMs()));
    this.followUps?.finish(final, this.record, this.log);
    this.deps.onActivity?.({ type: 'ended', callSid: this.callSid, t: this.durationMs, outcome });
    this.onEnded(this);
  }
}
