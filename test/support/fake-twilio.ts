/**
 * FakeTwilio plays Twilio against a real engine listening on 127.0.0.1 (docs/design/twilio.md §5:
 * it speaks the protocol). It signs webhooks for `publicBaseUrl` and sends them to
 * `serverUrl`, follows `<Connect><Stream>`, streams 20 ms inbound frames on a monotonic clock, plays
 * outbound audio at 8 bytes/ms × playbackSpeed, echoes marks by the §3.3 rule, and records every
 * outbound frame, validating it strictly (violations go to `protocolErrors`, never thrown).
 * With `line` (test/support/fake-line.ts) the line is a phone line's: the engine's audio echoes
 * back into the caller's frames, frames arrive late and in bursts, marks come back late.
 * Times (`atMs`, `now()`) are ms since the fake was created.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import twilio from 'twilio';
import { WebSocket, type RawData } from 'ws';
import { pcmToUlawSample, ulawToPcmSample } from '../../src/audio/ulaw.js';
import { Line, mixEcho, type LineProfile } from './fake-line.js';
import { formBody } from './twilio-sign.js';

/**
 * A caller number of its own for every call, as on a real line: the engine limits calls per caller
 * number (clinic `limits`), so tests that meant one caller name one; everyone else is a new caller.
 */
let callerSeq = 0;
export const nextCallerNumber = (): string => `+1555${String(7_000_000 + (callerSeq++ % 3_000_000)).padStart(7, '0')}`;

/**
 * The tests' phone numbers (callers, clinics, staff: all +1 555 …) found in `text`, E.164 or bare
 * digits. Not inside a longer run of letters and digits: a UUID or a hex SID holds "555" and seven
 * digits now and then, and that is no leak.
 */
export const testNumbersIn = (text: string): string[] => text.match(/(?<![\w.])\+?1?555\d{7}(?!\w)/g) ?? [];

export interface FakeCallOptions {
  serverUrl: string; // http://127.0.0.1:PORT
  /** Where the Media Stream connects, when not `serverUrl` (another worker or instance behind the same public URL). */
  streamServerUrl?: string;
  publicBaseUrl: string; // https://voice.test
  authToken: string;
  accountSid: string;
  to: string;
  from: string;
  callSid?: string;
  /** Outbound playback rate: 1 = real time (8 bytes/ms). Inbound frames stay real time. */
  playbackSpeed?: number;
  /** Extra or overriding `/twilio/voice` fields. */
  voiceParams?: Record<string, string>;
  /** Misbehave on the upgrade: send this `x-twilio-signature` instead (null: omit the header). */
  wsSignature?: string | null;
  /** Misbehave at `start`: fields Twilio would have filled in. */
  start?: { callSid?: string; accountSid?: string; customParameters?: Record<string, string> };
  /** Stream inbound frames every 20 ms (default true). */
  streamAudio?: boolean;
  /** Impairments of the line (default: none, a perfect line). */
  line?: LineProfile;
  /**
   * Awaited between the TwiML and the stream's connection (Twilio itself takes a moment there):
   * a test that watches the call from elsewhere gets ready before the greeting starts.
   */
  beforeStream?: () => Promise<unknown>;
}

export interface ParsedTwiml {
  status: number;
  text: string;
  /** The `<Stream>` inside `<Connect>` (a `<Start><Stream>` does not count). */
  stream: { url: string; attrs: Record<string, string>; parameters: Record<string, string> } | null;
  /** Raw XML between `</Connect>` and `</Response>`: the fallback verbs. */
  afterConnect: string;
}

export type ToTwilio =
  | { event: 'media'; streamSid: string; media: { payload: string } }
  | { event: 'mark'; streamSid: string; mark: { name: string } }
  | { event: 'clear'; streamSid: string };
export interface OutboundRecord { atMs: number; raw: string; binary: boolean; message: ToTwilio | null; error: string | null }
export interface ProtocolError { atMs: number; reason: string; raw: string }
export interface MarkEcho { name: string; atMs: number; cause: 'idle' | 'played' | 'clear' }
export interface Gap { fromMs: number; toMs: number; ms: number }
export interface HttpResult { status: number; body: string }

type Obj = Record<string, unknown>;
type Segment = { startMs: number; endMs: number; bytes: Uint8Array; cutMs: number | null };
/** `at`: when it was queued (performance ms); frames that ended before then never hold it. */
type Speech = { bytes: Uint8Array; offset: number; at: number; done: (sent: boolean) => void };
type Waiter = { check: () => void; cancel: () => void };
/** A message on its way to the engine: frames and keys leave in order, each at `at` (performance ms). */
type Outgoing = { at: number; msg: () => Obj; finished: Speech[] };

const FRAME_BYTES = 160;
const FRAME_MS = 20;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' };
const unescapeXml = (s: string) => s.replace(/&(lt|gt|quot|apos|amp);/g, (m, e: string) => ENTITIES[e] ?? m);
const attrsOf = (s: string): Record<string, string> =>
  Object.fromEntries([...s.matchAll(/([\w:-]+)\s*=\s*"([^"]*)"/g)].map((m) => [m[1] ?? '', unescapeXml(m[2] ?? '')]));
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const hasKeys = (o: Obj, ...keys: string[]) => Object.keys(o).sort().join() === keys.sort().join();
const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const concat = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

/** Minimal TwiML reading: enough to follow `<Connect><Stream>` like Twilio does. */
export function parseTwiml(text: string, status: number): ParsedTwiml {
  const connect = /<Connect\b[^>]*>([\s\S]*?)<\/Connect>/.exec(text)?.[1] ?? '';
  const tag = /<Stream\b([^>]*?)\/?>/.exec(connect)?.[1];
  const attrs = tag === undefined ? null : attrsOf(tag);
  const parameters: Record<string, string> = {};
  for (const m of connect.matchAll(/<Parameter\b([^>]*?)\/?>/g)) {
    const a = attrsOf(m[1] ?? '');
    if (a.name !== undefined) parameters[a.name] = a.value ?? '';
  }
  const stream = attrs?.url === undefined ? null : { url: attrs.url, attrs, parameters };
  const afterConnect = /<\/Connect>([\s\S]*?)(?:<\/Response>|$)/.exec(text)?.[1] ?? '';
  return { status, text, stream, afterConnect };
}

export class FakeTwilio {
  readonly callSid: string;
  readonly streamSid = `MZ${hex(16)}`;
  readonly outbound: OutboundRecord[] = [];
  readonly protocolErrors: ProtocolError[] = [];
  readonly marksEchoed: MarkEcho[] = [];
  readonly clears: number[] = [];
  readonly socketErrors: string[] = [];
  closed: { code: number; reason: string; atMs: number } | null = null;
  twiml: ParsedTwiml = { status: 0, text: '', stream: null, afterConnect: '' };

  private readonly epoch = performance.now();
  private readonly speed: number;
  private ws: WebSocket | null = null;
  private seq = 0;
  private segments: Segment[] = [];
  private pending: { name: string; dueMs: number }[] = [];
  private queueEndMs = 0;
  private speech: Speech[] = [];
  private frame = 0;
  private audioT0 = 0;
  private noiseState = 0x2545f491;
  private frameTimer: NodeJS.Timeout | null = null;
  private markTimer: NodeJS.Timeout | null = null;
  private readonly waiters = new Set<Waiter>();
  /** The line's impairments; null for a perfect line. */
  readonly line: Line | null;
  private outbox: Outgoing[] = [];
  private outboxTimer: NodeJS.Timeout | null = null;
  private markOutbox: { at: number; name: string; cause: MarkEcho['cause'] }[] = [];
  private markOutTimer: NodeJS.Timeout | null = null;
  private readonly echoPcm = new Int16Array(FRAME_BYTES);

  private constructor(private readonly opts: FakeCallOptions) {
    this.callSid = opts.callSid ?? `CA${hex(16)}`;
    this.speed = opts.playbackSpeed ?? 1;
    this.line = opts.line ? new Line(opts.line) : null;
  }

  /** Webhook, then (if the TwiML has `<Connect><Stream>`) the socket with `connected` + `start`. */
  static async call(opts: FakeCallOptions): Promise<FakeTwilio> {
    const fake = new FakeTwilio(opts);
    try {
      await fake.run();
      return fake;
    } catch (err) {
      await fake.dispose();
      throw err;
    }
  }

  now(): number {
    return performance.now() - this.epoch;
  }

  /**
   * The stream time (Twilio's `media.timestamp`, ms since the first frame) of the caller audio
   * sent at `atMs` on this fake's clock: speech queued at `atMs` goes out in the next frame due,
   * whose timestamp is this rounded down to 20 ms. Null before the stream's audio started.
   */
  streamMsAt(atMs: number): number | null {
    return this.audioT0 === 0 ? null : this.epoch + atMs - this.audioT0;
  }

  private async run(): Promise<void> {
    const o = this.opts;
    const res = await this.webhook('/twilio/voice', {
      CallSid: this.callSid, AccountSid: o.accountSid, From: o.from, To: o.to,
      CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01', ...o.voiceParams,
    });
    this.twiml = parseTwiml(res.body, res.status);
    const stream = this.twiml.stream;
    if (res.status !== 200 || !stream) return;
    await o.beforeStream?.();
    const url = new URL(stream.url);
    if (url.protocol !== 'wss:') throw new Error(`Twilio refuses a non-wss stream URL (31922): ${stream.url}`);
    const sig = o.wsSignature === undefined ? twilio.getExpectedTwilioSignature(o.authToken, stream.url, {}) : o.wsSignature;
    const ws = new WebSocket((o.streamServerUrl ?? o.serverUrl).replace(/^http/, 'ws') + url.pathname + url.search, {
      headers: sig === null ? {} : { 'x-twilio-signature': sig },
    });
    this.ws = ws;
    ws.on('error', (err) => this.socketErrors.push(err.message)); // a ws client without one crashes the process
    ws.on('message', (data, isBinary) => this.onOutbound(data, isBinary));
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString(), atMs: this.now() };
      this.halt();
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', (err) => reject(new Error(`stream handshake failed: ${err.message}`)));
    });
    this.send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
    const start = { accountSid: o.start?.accountSid ?? o.accountSid, streamSid: this.streamSid,
      callSid: o.start?.callSid ?? this.callSid, tracks: ['inbound'],
      mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
      customParameters: o.start?.customParameters ?? stream.parameters };
    this.send({ event: 'start', sequenceNumber: this.nextSeq(), start, streamSid: this.streamSid });
    if (o.streamAudio !== false) {
      this.audioT0 = performance.now();
      this.scheduleFrame();
    }
  }

  // ---- inbound: what the caller says --------------------------------------------------------

  /** Queue caller speech (μ-law); resolves true once its last frame is sent, false if the call ends first. */
  say(ulaw: Uint8Array): Promise<boolean> {
    if (ulaw.length === 0) return Promise.resolve(true);
    if (!this.isOpen()) return Promise.resolve(false);
    return new Promise((done) => this.speech.push({ bytes: ulaw, offset: 0, at: performance.now(), done }));
  }

  /** A key press, sent after any frames still on their way (same socket, same order). */
  dtmf(digit: string): void {
    this.deliver(performance.now(), () => ({ event: 'dtmf', streamSid: this.streamSid, sequenceNumber: this.nextSeq(), dtmf: { track: 'inbound_track', digit } }), []);
  }

  /** `stop`, then close 1000 (what Twilio does when the caller hangs up). */
  async stop(): Promise<void> {
    if (!this.ws) return;
    const { accountSid } = this.opts;
    this.flushOutbox(Infinity); // what is on its way arrives before the stop
    this.send({ event: 'stop', sequenceNumber: this.nextSeq(), streamSid: this.streamSid, stop: { accountSid, callSid: this.callSid } });
    this.halt();
    if (this.isOpen()) this.ws.close(1000);
    await this.waitForClose(2000);
  }

  hangUp(): Promise<void> {
    return this.stop();
  }

  /** The socket dies without `stop` (network loss). */
  dropConnection(): void {
    this.ws?.terminate();
  }

  sendRaw(data: string | Uint8Array, options: { binary?: boolean } = {}): void {
    if (this.isOpen()) this.ws?.send(data, { binary: options.binary ?? typeof data !== 'string' });
  }

  private isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  private nextSeq(): string {
    return String(++this.seq);
  }

  private send(msg: Obj): void {
    if (this.isOpen()) this.ws?.send(JSON.stringify(msg));
  }

  /** Frame n is due at t0 + 20·(n+1); late timers catch up, so there is no drift. */
  private scheduleFrame(): void {
    const due = this.audioT0 + FRAME_MS * (this.frame + 1);
    this.frameTimer = setTimeout(() => {
      while (this.isOpen() && this.audioT0 + FRAME_MS * (this.frame + 1) <= performance.now() + 1) this.sendFrame();
      if (this.isOpen()) this.scheduleFrame();
    }, Math.max(0, due - performance.now()));
  }

  private sendFrame(): void {
    const n = this.frame++;
    const dueMs = this.audioT0 + FRAME_MS * (n + 1);
    let out: Uint8Array = new Uint8Array(FRAME_BYTES);
    const finished: Speech[] = [];
    let i = 0;
    // A late timer makes overdue frames in a row: those due before the caller spoke stay quiet.
    for (let s = this.speech[0]; s && s.at < dueMs && i < FRAME_BYTES; s = this.speech[0]) {
      const take = Math.min(FRAME_BYTES - i, s.bytes.length - s.offset);
      out.set(s.bytes.subarray(s.offset, s.offset + take), i);
      i += take;
      s.offset += take;
      if (s.offset >= s.bytes.length) finished.push(this.speech.shift() ?? s);
    }
    for (; i < FRAME_BYTES; i++) out[i] = this.noiseByte();
    const echo = this.line?.echo;
    if (echo && this.echoOf(dueMs - this.epoch - FRAME_MS - echo.delayMs)) out = mixEcho(out, this.echoPcm, echo.gain);
    const media = { track: 'inbound', chunk: String(n + 1), timestamp: String(n * FRAME_MS), payload: Buffer.from(out).toString('base64') };
    const at = this.line?.delaysFrames ? this.line.deliveryMs(n, dueMs) : dueMs;
    this.deliver(at, () => ({ event: 'media', sequenceNumber: this.nextSeq(), media, streamSid: this.streamSid }), finished);
  }

  /**
   * Fills `echoPcm` with the 20 ms of engine audio the caller's phone played from `fromMs` (this
   * fake's clock); false if none of it was audio (nothing to echo).
   */
  private echoOf(fromMs: number): boolean {
    let any = false;
    let k = this.segments.length - 1;
    for (let i = FRAME_BYTES - 1; i >= 0; i--) {
      const t = fromMs + i / 8;
      while (k >= 0 && this.segments[k]!.startMs > t) k--;
      const s = k >= 0 ? this.segments[k]! : null;
      const end = s ? Math.min(s.endMs, s.cutMs ?? Infinity) : -Infinity;
      const byte = s && t < end ? s.bytes[Math.floor((t - s.startMs) * 8 * this.speed)] : undefined;
      this.echoPcm[i] = byte === undefined ? 0 : ulawToPcmSample(byte);
      any ||= byte !== undefined;
    }
    return any;
  }

  /** Sends `msg` at `at` (performance ms), after everything queued before it. */
  private deliver(at: number, msg: () => Obj, finished: Speech[]): void {
    if (this.outbox.length === 0 && at <= performance.now() + 1) {
      this.send(msg());
      for (const s of finished) s.done(true);
      return;
    }
    this.outbox.push({ at, msg, finished });
    this.armOutbox();
  }

  private flushOutbox(until: number): void {
    for (let o = this.outbox[0]; o && o.at <= until; o = this.outbox[0]) {
      this.outbox.shift();
      this.send(o.msg());
      for (const s of o.finished) s.done(true);
    }
  }

  private armOutbox(): void {
    if (this.outboxTimer) return;
    const next = this.outbox[0];
    if (!next || !this.isOpen()) return;
    this.outboxTimer = setTimeout(() => {
      this.outboxTimer = null;
      this.flushOutbox(performance.now() + 1);
      this.armOutbox();
    }, Math.max(0, next.at - performance.now()));
  }

  /** Line noise, not digital silence: 2–4 μ-law steps from zero (±16–32 PCM, about -63 dBFS). */
  private noiseByte(): number {
    this.noiseState = (Math.imul(this.noiseState, 1664525) + 1013904223) >>> 0;
    const mag = 16 + ((this.noiseState >>> 8) % 17);
    return pcmToUlawSample(this.noiseState & 0x80000000 ? -mag : mag);
  }

  // ---- outbound: what the engine plays -------------------------------------------------------

  private onOutbound(data: RawData, isBinary: boolean): void {
    const atMs = this.now();
    const raw = (Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data).toString('utf8');
    const checked = isBinary ? 'binary frame (Twilio ignores it: 31950)' : this.validate(raw);
    const rec: OutboundRecord = { atMs, raw, binary: isBinary, message: null, error: null };
    this.outbound.push(rec);
    if (typeof checked === 'string') {
      rec.error = checked;
      this.protocolErrors.push({ atMs, reason: checked, raw });
    } else {
      rec.message = checked;
      if (checked.event === 'media') this.enqueue(new Uint8Array(Buffer.from(checked.media.payload, 'base64')));
      else if (checked.event === 'mark') this.onMark(checked.mark.name);
      else this.onClear();
    }
    this.poke();
  }

  /** The message, or why Twilio would drop it (31951). */
  private validate(raw: string): ToTwilio | string {
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      return 'not JSON';
    }
    if (!isObj(v)) return 'not a JSON object';
    const { event, streamSid } = v;
    if (event !== 'media' && event !== 'mark' && event !== 'clear') return `unknown event ${JSON.stringify(event)}`;
    if (streamSid !== this.streamSid) return `${event}: wrong streamSid ${JSON.stringify(streamSid)}`;
    if (event === 'clear') return hasKeys(v, 'event', 'streamSid') ? { event, streamSid } : 'clear: extra fields';
    const body = v[event];
    if (!hasKeys(v, 'event', 'streamSid', event) || !isObj(body)) return `${event}: extra or missing fields`;
    if (event === 'mark') {
      if (!hasKeys(body, 'name')) return 'mark: mark must hold only name';
      return typeof body.name === 'string' && body.name !== '' ? { event, streamSid, mark: { name: body.name } } : 'mark: empty or non-string name';
    }
    const { payload } = body;
    if (!hasKeys(body, 'payload') || typeof payload !== 'string') return 'media: media must hold only a string payload';
    if (payload.length % 4 !== 0 || !BASE64_RE.test(payload)) return 'media: payload is not base64';
    const n = Buffer.from(payload, 'base64').length;
    if (n === 0 || n % FRAME_BYTES !== 0) return `media: payload is ${n} bytes, not a multiple of ${FRAME_BYTES}`;
    return { event, streamSid, media: { payload } };
  }

  private enqueue(bytes: Uint8Array): void {
    const startMs = Math.max(this.now(), this.queueEndMs);
    this.queueEndMs = startMs + bytes.length / (8 * this.speed);
    this.segments.push({ startMs, endMs: this.queueEndMs, bytes, cutMs: null });
  }

  private onMark(name: string): void {
    const now = this.now();
    this.flushMarks(now);
    if (this.queueEndMs <= now && this.pending.length === 0) this.echo(name, 'idle');
    else {
      this.pending.push({ name, dueMs: this.queueEndMs });
      this.armMarks();
    }
  }

  private onClear(): void {
    const now = this.now();
    this.clears.push(now);
    this.flushMarks(now);
    this.cutPlayback(now);
    for (const p of this.pending.splice(0)) this.echo(p.name, 'clear');
    this.armMarks();
  }

  /** Audio not yet played at `now` never will be (clear, or the call ended). */
  private cutPlayback(now: number): void {
    for (const s of this.segments) if (s.endMs > now && s.cutMs === null) s.cutMs = now;
    this.queueEndMs = Math.min(this.queueEndMs, now);
  }

  private flushMarks(now: number): void {
    for (let p = this.pending[0]; p && p.dueMs <= now; p = this.pending[0]) {
      this.pending.shift();
      this.echo(p.name, 'played');
    }
  }

  private armMarks(): void {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = null;
    const next = this.pending[0];
    if (!next || !this.isOpen()) return;
    this.markTimer = setTimeout(() => {
      this.flushMarks(this.now());
      this.armMarks();
      this.poke();
    }, Math.max(1, Math.ceil(next.dueMs - this.now())));
  }

  private echo(name: string, cause: MarkEcho['cause']): void {
    if (this.line?.delaysMarks) {
      this.markOutbox.push({ name, cause, at: this.line.markMs(this.now(), cause !== 'clear') });
      this.armMarkOut();
      return;
    }
    this.sendMark(name, cause);
  }

  private sendMark(name: string, cause: MarkEcho['cause']): void {
    this.marksEchoed.push({ name, atMs: this.now(), cause });
    this.send({ event: 'mark', sequenceNumber: this.nextSeq(), streamSid: this.streamSid, mark: { name } });
  }

  /** Late mark echoes leave in order, each at its time. */
  private armMarkOut(): void {
    if (this.markOutTimer) return;
    const next = this.markOutbox[0];
    if (!next || !this.isOpen()) return;
    this.markOutTimer = setTimeout(() => {
      this.markOutTimer = null;
      const now = this.now();
      for (let m = this.markOutbox[0]; m && m.at <= now + 1; m = this.markOutbox[0]) {
        this.markOutbox.shift();
        this.sendMark(m.name, m.cause);
      }
      this.armMarkOut();
      this.poke();
    }, Math.max(0, next.at - this.now()));
  }

  // ---- what the caller heard -------------------------------------------------------------------

  private playedBytes(s: Segment, t: number): number {
    const until = Math.min(t, s.cutMs ?? Infinity);
    if (until >= s.endMs) return s.bytes.length;
    return Math.max(0, Math.min(s.bytes.length, Math.floor((until - s.startMs) * 8 * this.speed)));
  }

  /** μ-law bytes actually played so far (cleared audio excluded). */
  get heard(): Uint8Array {
    const now = this.now();
    return concat(this.segments.map((s) => s.bytes.subarray(0, this.playedBytes(s, now))));
  }

  heardMs(): number {
    const now = this.now();
    return this.segments.reduce((ms, s) => ms + this.playedBytes(s, now) / 8, 0);
  }

  /** μ-law bytes played at or after `t` (ms on this fake's clock, see `now()`). */
  audioSince(t: number): Uint8Array {
    const now = this.now();
    return concat(this.segments.map((s) => s.bytes.subarray(this.playedBytes(s, t), this.playedBytes(s, now))));
  }

  /**
   * Gaps of at least `minMs` between stretches of played audio (wall ms). Without a window only gaps
   * between audio count; `fromMs`/`toMs` also count the silence at the window's edges (dead air).
   */
  silenceGaps(minMs: number, window: { fromMs?: number; toMs?: number } = {}): Gap[] {
    const now = this.now();
    const spans = this.segments
      .map((s) => [s.startMs, Math.min(s.endMs, s.cutMs ?? Infinity, now)] as const)
      .filter(([a, b]) => b > a);
    const from = window.fromMs ?? spans[0]?.[0];
    const to = window.toMs ?? spans.at(-1)?.[1];
    if (from === undefined || to === undefined) return [];
    const gaps: Gap[] = [];
    const gap = (a: number, b: number) => {
      if (b > a && b - a >= minMs) gaps.push({ fromMs: a, toMs: b, ms: b - a });
    };
    let cursor = from;
    for (const [a, b] of spans) {
      if (b <= cursor) continue;
      if (a >= to) break;
      gap(cursor, a);
      cursor = b;
    }
    gap(cursor, to);
    return gaps;
  }

  // ---- waiting -------------------------------------------------------------------------------

  /** Resolves once `predicate(this)` holds (checked on every frame and every 5 ms). */
  /** Wait until no new audio has been heard for `ms`: the engine stopped talking. */
  untilQuiet(ms = 700, timeoutMs = 15_000): Promise<void> {
    let last = this.heardMs();
    let since = this.now();
    return this.waitFor(
      (c) => {
        const heard = c.heardMs();
        if (heard !== last) {
          last = heard;
          since = c.now();
        }
        return c.now() - since >= ms;
      },
      timeoutMs,
      'the engine to stop talking',
    );
  }

  waitFor(predicate: (call: FakeTwilio) => boolean, timeoutMs = 2000, what = predicate.toString()): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearInterval(poll);
        clearTimeout(timer);
        this.waiters.delete(waiter);
        if (err) reject(err);
        else resolve();
      };
      const waiter: Waiter = {
        check: () => {
          try {
            if (predicate(this)) done();
          } catch (err) {
            done(err instanceof Error ? err : new Error(String(err)));
          }
        },
        cancel: () => done(new Error(`FakeTwilio disposed while waiting for ${what}`)),
      };
      const poll = setInterval(waiter.check, 5);
      const timer = setTimeout(() => done(new Error(`FakeTwilio.waitFor timed out after ${timeoutMs} ms: ${what}\n${this.summary()}`)), timeoutMs);
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  async waitForClose(timeoutMs = 2000): Promise<{ code: number; reason: string; atMs: number }> {
    await this.waitFor((c) => c.closed !== null || c.ws === null, timeoutMs, 'socket close');
    return this.closed ?? { code: 0, reason: 'no stream', atMs: this.now() };
  }

  summary(): string {
    const count = (e: string) => this.outbound.filter((r) => r.message?.event === e).length;
    return `outbound media×${count('media')} mark×${count('mark')} clear×${count('clear')}, heard ${this.heardMs()} ms, ` +
      `marks echoed ${this.marksEchoed.length}, protocol errors ${JSON.stringify(this.protocolErrors.map((e) => e.reason))}, ` +
      `closed ${this.closed ? `${this.closed.code} ${this.closed.reason}` : 'no'}, socket errors ${JSON.stringify(this.socketErrors)}`;
  }

  private poke(): void {
    for (const w of [...this.waiters]) w.check();
  }

  // ---- webhooks ------------------------------------------------------------------------------

  /** POST a form to `serverUrl + path`, signed for `publicBaseUrl + path` as Twilio signs it. */
  async webhook(path: string, params: Record<string, string>): Promise<HttpResult> {
    const o = this.opts;
    const signature = twilio.getExpectedTwilioSignature(o.authToken, o.publicBaseUrl + path, params);
    const res = await fetch(o.serverUrl + path, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature, 'user-agent': 'TwilioProxy/1.1' },
      body: formBody(params),
    });
    return { status: res.status, body: await res.text() };
  }

  /** The call's final status callback (inbound calls get only one, §1.3). */
  statusCallback(status: string, seq: number, extra: Record<string, string> = {}): Promise<HttpResult> {
    const o = this.opts;
    const durationS = Math.round(this.now() / 1000);
    return this.webhook('/twilio/status', {
      AccountSid: o.accountSid, CallSid: this.callSid, CallStatus: status, SequenceNumber: String(seq),
      CallDuration: String(durationS), Duration: String(Math.max(1, Math.ceil(durationS / 60))),
      Timestamp: new Date().toUTCString().replace('GMT', '+0000'), From: o.from, To: o.to,
      Direction: 'inbound', ApiVersion: '2010-04-01', CallbackSource: 'call-progress-events', ...extra,
    });
  }

  recordingCallback(r: { status: 'in-progress' | 'completed' | 'absent'; recordingSid?: string; durationS?: number;
    channels?: 1 | 2; extra?: Record<string, string> }): Promise<HttpResult> {
    const { accountSid } = this.opts;
    const sid = r.recordingSid ?? `RE${this.callSid.slice(2)}`;
    return this.webhook('/twilio/recording', {
      AccountSid: accountSid, CallSid: this.callSid, RecordingSid: sid,
      RecordingUrl: `https://api.twilio.com/2010-04-01/Accounts/${accountSid}/Recordings/${sid}`,
      RecordingStatus: r.status, RecordingDuration: String(r.durationS ?? 0), RecordingChannels: String(r.channels ?? 2),
      RecordingStartTime: new Date().toUTCString().replace('GMT', '+0000'), RecordingSource: 'StartCallRecordingAPI',
      RecordingTrack: 'both', ErrorCode: '0', ...r.extra,
    });
  }

  // ---- teardown ------------------------------------------------------------------------------

  private halt(): void {
    for (const t of [this.frameTimer, this.markTimer, this.outboxTimer, this.markOutTimer]) if (t) clearTimeout(t);
    this.frameTimer = this.markTimer = this.outboxTimer = this.markOutTimer = null;
    this.cutPlayback(this.now()); // playback ends with the stream
    for (const s of this.speech.splice(0)) s.done(false);
    for (const o of this.outbox.splice(0)) for (const s of o.finished) s.done(false);
    this.markOutbox = [];
    this.poke();
  }

  /** Stops every timer, ends waits, and terminates the socket if still open. Idempotent. */
  async dispose(): Promise<void> {
    this.halt();
    for (const w of [...this.waiters]) w.cancel();
    const ws = this.ws;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      ws.terminate();
      await closed;
    }
  }
}
