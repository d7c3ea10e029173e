/**
 * Prometheus metrics for `GET /metrics` (docs/operations.md "Metrics", docs/design/reliability.md §5).
 *
 * One prom-client `Registry` per engine, never the global default one, so tests can build several
 * engines in one process. Call metrics are counted from each finished call's `CallRecord`
 * (`registry.onCallEnded`) and from Twilio's dial results; gauges and socket/journal totals are
 * read at scrape time from counters that already exist.
 *
 * Labels are bounded and carry no personal data: `clinic` is the tenant id from the clinic file,
 * every other label takes values from a fixed set. Never a phone number, CallSid or free text.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry as PromRegistry } from 'prom-client';
import type { CallRecord } from './calls/call-record.js';
import type { JournalStats } from './journal/writer.js';
import type { ProviderHealth } from './providers/resilience.js';
import type { StreamCounters } from './twilio/stream-socket.js';

/** What the metrics read from the call registry (src/calls/registry.ts). */
export interface MetricsSource {
  readonly activeCount: number;
  onCallEnded(listener: (record: CallRecord) => void): () => void;
  onDialResult(listener: (record: CallRecord, dialStatus: string) => void): () => void;
}

export interface MetricsDeps {
  calls: MetricsSource;
  /** Media Stream socket totals (process-wide unless the engine was given its own). */
  streams: StreamCounters;
  /** The call journal's totals; null when calls are not journaled. */
  journal: { readonly stats: Readonly<JournalStats> } | null;
  /** Cloud providers' breakers and results (src/providers/resilience.ts); absent: none configured. */
  providers?: readonly ProviderHealth[];
  /** Include prom-client's process/Node.js metrics (CPU, memory, event-loop delay, GC). Default true. */
  defaultMetrics?: boolean;
}

export interface EngineMetrics {
  readonly register: PromRegistry;
  /** The exposition text. */
  render(): Promise<string>;
  /** A fallback-menu webhook (/twilio/dtmf) was answered. */
  dtmfFallback(): void;
  /** Stops listening to the registry. */
  close(): void;
}

/** End of speech → first audio: the target is < 0.8 s at p95 (docs/design/reliability.md §5). */
const TURN_BUCKETS = [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1, 1.25, 1.5, 2, 3];
const STAGE_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3];
const PROVIDER_BUCKETS = [0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5];
const BREAKER_VALUE = { closed: 0, halfOpen: 1, open: 2 } as const;
const CLEAR_BUCKETS = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2];

/** Twilio's DialCallStatus values; anything else is counted as `other` (labels stay bounded). */
const DIAL_RESULTS = new Set(['completed', 'answered', 'busy', 'no-answer', 'failed', 'canceled']);
const EMERGENCY_VIA = new Set(['speech', 'dtmf', 'agent']);

const STAGES = [
  ['stt', 'sttMs'],
  ['endpoint', 'endpointMs'],
  ['agent_first_text', 'agentFirstTextMs'],
  ['tts_first_audio', 'ttsFirstAudioMs'],
] as const;

const seconds = (ms: number) => Math.max(0, ms) / 1000;

/** A counter whose value is read from an existing running total at scrape time. */
function totalFrom(counter: Counter, value: number): void {
  counter.reset();
  counter.inc(value);
}

export function createEngineMetrics(deps: MetricsDeps): EngineMetrics {
  const register = new PromRegistry();
  if (deps.defaultMetrics !== false) collectDefaultMetrics({ register });
  const registers = [register];

  const calls = new Counter({ name: 'vetline_calls_total', help: 'Finished calls by clinic and outcome.', labelNames: ['clinic', 'outcome'], registers });
  new Gauge({
    name: 'vetline_calls_active',
    help: 'Calls in progress.',
    registers,
    collect() {
      this.set(deps.calls.activeCount);
    },
  });
  const turnLatency = new Histogram({
    name: 'vetline_turn_latency_seconds',
    help: 'End of caller speech to first reply audio handed to the player.',
    buckets: TURN_BUCKETS,
    registers,
  });
  const turnStage = new Histogram({
    name: 'vetline_turn_stage_seconds',
    help: 'Turn stages: stt and endpoint from end of speech; agent_first_text and tts_first_audio from the reply start (the commit, or earlier when prepared).',
    labelNames: ['stage'],
    buckets: STAGE_BUCKETS,
    registers,
  });
  const bargeInClear = new Histogram({
    name: 'vetline_bargein_clear_seconds',
    help: 'Caller speech onset to the clear sent to Twilio (barge-in).',
    buckets: CLEAR_BUCKETS,
    registers,
  });
  const interruptions = new Counter({
    name: 'vetline_interruptions_total',
    help: 'Interruptions of our speech: confirmed (reply abandoned) or false (reply resumed).',
    labelNames: ['kind'],
    registers,
  });
  const emergencies = new Counter({ name: 'vetline_emergencies_total', help: 'Calls with an emergency detected, by how.', labelNames: ['clinic', 'via'], registers });
  const transfers = new Counter({
    name: 'vetline_transfers_total',
    help: 'Transfers: result="started" when a call ends handed to <Dial>, then Twilio\'s dial status when it reports one.',
    labelNames: ['clinic', 'result'],
    registers,
  });
  const appointments = new Counter({ name: 'vetline_appointments_total', help: 'Appointment and refill requests taken.', labelNames: ['clinic'], registers });
  const requests = new Counter({
    name: 'vetline_requests_total',
    help: 'Requests committed for the clinic, by kind (appointment, refill, message).',
    labelNames: ['clinic', 'kind'],
    registers,
  });
  const preparedReplies = new Counter({
    name: 'vetline_prepared_replies_total',
    help: 'Replies started during the end-of-turn window: used (the turn was committed) or discarded (the caller went on, or the words changed).',
    labelNames: ['result'],
    registers,
  });
  const discardedTtsChars = new Counter({
    name: 'vetline_discarded_reply_tts_characters_total',
    help: 'Characters sent to the synthesizer for prepared replies that were discarded.',
    registers,
  });
  for (const result of ['used', 'discarded']) preparedReplies.inc({ result }, 0);
  const dtmfFallbacks = new Counter({ name: 'vetline_dtmf_fallbacks_total', help: 'Fallback key-menu webhooks (/twilio/dtmf) answered.', registers });
  for (const kind of ['confirmed', 'false']) interruptions.inc({ kind }, 0);

  const streams = deps.streams;
  new Counter({
    name: 'vetline_stream_frames_total',
    help: 'Media Stream frames received.',
    registers,
    collect() {
      totalFrom(this, streams.framesIn);
    },
  });
  new Counter({
    name: 'vetline_stream_invalid_frames_total',
    help: 'Media Stream frames dropped as invalid, by reason.',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(streams.invalid)) this.inc({ reason }, n);
    },
  });
  new Counter({
    name: 'vetline_stream_upgrades_refused_total',
    help: 'Stream upgrades refused (503) by the cap on sockets awaiting `start` (per process: MAX_CALLS); `limit` is `total`.',
    labelNames: ['limit'],
    registers,
    collect() {
      this.reset();
      for (const [limit, n] of Object.entries(streams.upgradesRefused)) this.inc({ limit }, n);
    },
  });
  new Counter({
    name: 'vetline_stream_backpressure_closes_total',
    help: 'Streams closed 1013 because Twilio stopped reading our audio for too long.',
    registers,
    collect() {
      totalFrom(this, streams.backpressureCloses);
    },
  });
  const journal = deps.journal;
  if (journal) {
    new Counter({
      name: 'vetline_journal_write_errors_total',
      help: 'Failed journal opens/appends (each stops that call\'s journal; the call goes on).',
      registers,
      collect() {
        totalFrom(this, journal.stats.writeErrors);
      },
    });
    new Counter({
      name: 'vetline_journal_lines_lost_total',
      help: 'Journal lines accepted but never written because the journal had failed.',
      registers,
      collect() {
        totalFrom(this, journal.stats.linesLost);
      },
    });
  }

  const offProviders = providerMetrics(deps.providers ?? [], registers);
  const fallbacks = new Counter({
    name: 'vetline_provider_fallbacks_total',
    help: 'Calls or turns moved from a failing provider to another (cloud → local), by kind.',
    labelNames: ['kind', 'from', 'to'],
    registers,
  });

  const ended = (record: CallRecord) => {
    for (const f of record.fallbacks) fallbacks.inc({ kind: f.kind, from: f.from, to: f.to });
    const clinic = record.tenantId;
    calls.inc({ clinic, outcome: record.outcome ?? 'unknown' });
    for (const turn of record.turns) {
      if (turn.endOfSpeechToAudioMs !== null) turnLatency.observe(seconds(turn.endOfSpeechToAudioMs));
      for (const [stage, key] of STAGES) {
        const ms = turn[key];
        if (ms !== null) turnStage.observe({ stage }, seconds(ms));
      }
    }
    for (const b of record.bargeIns) bargeInClear.observe(seconds(b.clearLatencyMs));
    const used = record.turns.filter((t) => t.prepared === true).length;
    if (used > 0) preparedReplies.inc({ result: 'used' }, used);
    const discarded = record.usage.discarded;
    if (discarded.replies > 0) preparedReplies.inc({ result: 'discarded' }, discarded.replies);
    if (discarded.ttsCharacters > 0) discardedTtsChars.inc(discarded.ttsCharacters);
    // What the call decided is in the machine's final context (null only if the call never ran).
    const final = record.final;
    if (final) {
      const { interruptions: all, falseInterruptions: falseOnes } = final.counts;
      if (all > falseOnes) interruptions.inc({ kind: 'confirmed' }, all - falseOnes);
      if (falseOnes > 0) interruptions.inc({ kind: 'false' }, falseOnes);
      if (final.emergency) emergencies.inc({ clinic, via: EMERGENCY_VIA.has(final.emergency.via) ? final.emergency.via : 'other' });
      const booked = final.requests.filter((r) => r.kind !== 'message').length;
      if (booked > 0) appointments.inc({ clinic }, booked);
      for (const r of final.requests) requests.inc({ clinic, kind: r.kind });
    }
    if (record.outcome === 'transferred') transfers.inc({ clinic, result: 'started' });
  };
  const dialed = (record: CallRecord, dialStatus: string) => {
    transfers.inc({ clinic: record.tenantId, result: DIAL_RESULTS.has(dialStatus) ? dialStatus : 'other' });
  };
  const unsubscribe = [deps.calls.onCallEnded(ended), deps.calls.onDialResult(dialed), ...offProviders];

  return {
    register,
    render: () => register.metrics(),
    dtmfFallback: () => dtmfFallbacks.inc(),
    close: () => {
      for (const off of unsubscribe) off();
    },
  };
}

/** Per provider: results by failure kind, time to first result, breaker state and transitions. */
function providerMetrics(providers: readonly ProviderHealth[], registers: PromRegistry[]): (() => void)[] {
  if (providers.length === 0) return [];
  const labelNames = ['kind', 'provider'];
  const requests = new Counter({
    name: 'vetline_provider_requests_total',
    help: 'Provider requests by result: ok, or the failure kind (timeout, auth, quota, http, network, protocol).',
    labelNames: [...labelNames, 'result'],
    registers,
  });
  const latency = new Histogram({
    name: 'vetline_provider_first_result_seconds',
    help: 'Request start to first result (token, audio chunk; final transcript after end of speech).',
    labelNames,
    buckets: PROVIDER_BUCKETS,
    registers,
  });
  const transitions = new Counter({
    name: 'vetline_provider_breaker_transitions_total',
    help: 'Circuit breaker state changes, by the state entered.',
    labelNames: [...labelNames, 'to'],
    registers,
  });
  new Gauge({
    name: 'vetline_provider_breaker_state',
    help: 'Circuit breaker state: 0 closed, 1 half-open (probing), 2 open (requests go to the fallback).',
    labelNames,
    registers,
    collect() {
      for (const h of providers) this.set({ kind: h.kind, provider: h.provider }, BREAKER_VALUE[h.state]);
    },
  });
  return providers.map((h) => {
    const labels = { kind: h.kind, provider: h.provider };
    requests.inc({ ...labels, result: 'ok' }, 0);
    return h.listen({
      result: (_h, ok, ms, failure) => {
        requests.inc({ ...labels, result: ok ? 'ok' : (failure ?? 'protocol') });
        if (ok && ms !== null) latency.observe(labels, seconds(ms));
      },
      breaker: (_h, to) => transitions.inc({ ...labels, to }),
    });
  });
}
