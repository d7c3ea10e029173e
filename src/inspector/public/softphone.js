/* global window, fetch, location, navigator, crypto, AudioContext, AudioWorkletNode, WebSocket, URLSearchParams, DOMParser, btoa, atob, URL */
// Browser softphone (development aid). It does what Twilio does for a real call:
// POST /twilio/voice with an invented CallSid and the clinic's number as `To`, read the
// <Connect><Stream> TwiML, open its Stream URL (/twilio/ws/<token>) and speak the Media Streams protocol (connected, start,
// 20 ms μ-law media frames, dtmf, mark echoes, stop). The microphone is resampled to 8 kHz μ-law in
// an AudioWorklet; the engine's audio is played back and its marks echoed when played.
// Only offered while the engine runs without webhook signatures (development): with
// TWILIO_AUTH_TOKEN set, /twilio/voice and /twilio/ws/<token> refuse unsigned requests, as they must.

const hex = (bytes) => [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) => b.toString(16).padStart(2, '0')).join('');

const ULAW_TO_FLOAT = (() => {
  const table = new Float32Array(256);
  for (let i = 0; i < 256; i++) {
    const u = ~i & 0xff;
    const sign = u & 0x80;
    const exponent = (u >> 4) & 0x07;
    const mantissa = u & 0x0f;
    const magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    table[i] = (sign ? -magnitude : magnitude) / 32768;
  }
  return table;
})();

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function parseTwiml(xml) {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const stream = doc.querySelector('Connect > Stream');
  if (!stream) return null;
  const parameters = {};
  for (const p of stream.querySelectorAll('Parameter')) parameters[p.getAttribute('name')] = p.getAttribute('value') ?? '';
  return { url: stream.getAttribute('url'), parameters };
}

export function createSoftphone({ accountSid, onStatus, onCall }) {
  /** Counters for tests and the status line. */
  const stats = { state: 'idle', callSid: null, framesSent: 0, receivedMs: 0, playedMs: 0, marksEchoed: 0, clears: 0, error: null };
  let call = null;

  const status = (text, state = stats.state) => {
    stats.state = state;
    onStatus(text, state);
  };

  /** `processing`: the browser's echo cancellation, noise suppression and gain control (off for a headset). */
  async function start(to, { processing = true } = {}) {
    if (call) return;
    const callSid = `CA${hex(16)}`;
    const streamSid = `MZ${hex(16)}`;
    stats.callSid = callSid;
    Object.assign(stats, { framesSent: 0, receivedMs: 0, playedMs: 0, marksEchoed: 0, clears: 0, error: null });
    const c = { callSid, streamSid, seq: 0, ws: null, ctx: null, media: null, capture: null, playback: null, chunk: 0, closed: false };
    call = c;
    status('dialling…', 'calling');
    try {
      // Microphone first: the permission prompt must not race the engine's greeting.
      c.media = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing, channelCount: 1 } });
      c.ctx = new AudioContext();
      await c.ctx.audioWorklet.addModule(new URL('softphone-worklet.js', import.meta.url));
      if (c.ctx.state === 'suspended') await c.ctx.resume();

      const form = new URLSearchParams({ CallSid: callSid, AccountSid: accountSid, From: 'browser', To: to, CallStatus: 'ringing', Direction: 'inbound', ApiVersion: '2010-04-01' });
      const res = await fetch('/twilio/voice', { method: 'POST', body: form });
      const twiml = parseTwiml(await res.text());
      if (!res.ok || !twiml) throw new Error(`the engine did not open a stream (HTTP ${res.status})`);
      if (c.closed) return;

      // The stream URL names PUBLIC_BASE_URL's host; the page talks to the engine it came from.
      const path = new URL(twiml.url).pathname;
      const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${path}`);
      c.ws = ws;
      await new Promise((resolve, reject) => {
        ws.addEventListener('open', resolve, { once: true });
        ws.addEventListener('error', () => reject(new Error('the media stream socket failed')), { once: true });
      });
      const sendJson = (m) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
      };
      const seq = () => String(++c.seq);
      sendJson({ event: 'connected', protocol: 'Call', version: '1.0.0' });
      sendJson({
        event: 'start',
        sequenceNumber: seq(),
        streamSid,
        start: { streamSid, callSid, accountSid, tracks: ['inbound'], customParameters: twiml.parameters, mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 } },
      });
      c.send = sendJson;
      c.nextSeq = seq;

      // Engine → caller: play, echo marks once played, drop on clear.
      c.playback = new AudioWorkletNode(c.ctx, 'vetline-playback', { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
      c.playback.connect(c.ctx.destination);
      c.playback.port.onmessage = (e) => {
        const m = e.data;
        if (m.type === 'mark') {
          stats.marksEchoed++;
          sendJson({ event: 'mark', sequenceNumber: seq(), streamSid, mark: { name: m.name } });
        } else if (m.type === 'played') stats.playedMs = m.ms;
      };
      ws.addEventListener('message', (e) => {
        let m;
        try {
          m = JSON.parse(e.data);
        } catch {
          return;
        }
        if (m.event === 'media') {
          const bytes = fromBase64(m.media.payload);
          const samples = new Float32Array(bytes.length);
          for (let i = 0; i < bytes.length; i++) samples[i] = ULAW_TO_FLOAT[bytes[i]];
          stats.receivedMs += bytes.length / 8;
          c.playback.port.postMessage({ type: 'audio', samples }, [samples.buffer]);
        } else if (m.event === 'mark') c.playback.port.postMessage({ type: 'mark', name: m.mark.name });
        else if (m.event === 'clear') {
          stats.clears++;
          c.playback.port.postMessage({ type: 'clear' });
        }
      });
      ws.addEventListener('close', () => {
        if (!c.closed) finish('call ended by the engine');
      });

      // Caller → engine: 20 ms μ-law frames from the capture worklet.
      const source = c.ctx.createMediaStreamSource(c.media);
      c.capture = new AudioWorkletNode(c.ctx, 'vetline-capture', { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
      const mute = c.ctx.createGain();
      mute.gain.value = 0;
      source.connect(c.capture).connect(mute).connect(c.ctx.destination);
      c.capture.port.onmessage = (e) => {
        const n = c.chunk++;
        stats.framesSent++;
        sendJson({ event: 'media', sequenceNumber: seq(), streamSid, media: { track: 'inbound', chunk: String(n + 1), timestamp: String(n * 20), payload: toBase64(e.data) } });
      };
      status(`in call ${callSid.slice(0, 8)}…`, 'connected');
      onCall(callSid);
    } catch (err) {
      stats.error = err instanceof Error ? err.message : String(err);
      finish(`failed: ${stats.error}`);
    }
  }

  function finish(text) {
    const c = call;
    if (!c) return;
    c.closed = true;
    call = null;
    try {
      if (c.ws && c.ws.readyState === WebSocket.OPEN) c.ws.close(1000);
    } catch {
      /* already closing */
    }
    c.media?.getTracks().forEach((t) => t.stop());
    void c.ctx?.close();
    status(text, 'idle');
  }

  function hangUp() {
    const c = call;
    if (!c) return;
    if (c.send) c.send({ event: 'stop', sequenceNumber: c.nextSeq(), streamSid: c.streamSid, stop: { accountSid, callSid: c.callSid } });
    finish('hung up');
  }

  function dtmf(digit) {
    const c = call;
    if (c?.send) c.send({ event: 'dtmf', streamSid: c.streamSid, sequenceNumber: c.nextSeq(), dtmf: { track: 'inbound_track', digit } });
  }

  window.addEventListener('pagehide', () => hangUp());
  return { call: start, hangUp, dtmf, stats };
}
