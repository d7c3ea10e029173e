/* global AudioWorkletProcessor, registerProcessor, sampleRate */
// Softphone audio, off the main thread. Two processors:
// - `vetline-capture`: microphone at the context rate → low-pass (windowed sinc, 3.4 kHz) →
//   fractional decimation to 8 kHz → G.711 μ-law → 160-byte (20 ms) frames posted to the page;
// - `vetline-playback`: μ-law frames from the engine (decoded by the page to 8 kHz floats) and
//   Twilio-style marks; plays them upsampled to the context rate and reports each mark when the
//   audio before it has been played (or at once on `clear`), like Twilio does.

const OUT_RATE = 8000;
const FRAME = 160;

function ulawEncode(x) {
  // x: float in [-1, 1] → G.711 μ-law byte.
  let s = Math.max(-32768, Math.min(32767, Math.round(x * 32767)));
  const sign = s < 0 ? 0x80 : 0;
  if (sign) s = -s;
  if (s > 32635) s = 32635;
  s += 0x84;
  let exponent = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (s >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

function lowPass(rate, cutoff, taps) {
  const h = new Float32Array(taps);
  const fc = cutoff / rate;
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const n = i - mid;
    const sinc = n === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * n) / (Math.PI * n);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (taps - 1));
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum;
  return h;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE;
    const taps = 2 * Math.round(this.step * 4) + 1;
    this.h = lowPass(sampleRate, 3400, taps);
    this.hist = new Float32Array(taps);
    this.pos = 0; // next write position in hist (ring)
    this.n = 0; // input samples seen
    this.next = 0; // input index (fractional) of the next 8 kHz sample
    this.prev = 0; // filtered sample n-1
    this.frame = new Uint8Array(FRAME);
    this.fill = 0;
  }

  process(inputs, outputs) {
    for (const out of outputs) for (const ch of out) ch.fill(0);
    const input = inputs[0]?.[0];
    if (!input) return true;
    const { h, hist } = this;
    const taps = h.length;
    for (let k = 0; k < input.length; k++) {
      hist[this.pos] = input[k];
      this.pos = (this.pos + 1) % taps;
      let y = 0;
      for (let i = 0, j = this.pos; i < taps; i++, j = j + 1 === taps ? 0 : j + 1) y += h[i] * hist[j];
      // y is the filtered sample at index n; emit every 8 kHz instant in (n-1, n].
      while (this.next <= this.n) {
        const frac = this.next - (this.n - 1);
        const v = this.prev + (y - this.prev) * Math.max(0, Math.min(1, frac));
        this.frame[this.fill++] = ulawEncode(v);
        if (this.fill === FRAME) {
          this.port.postMessage(this.frame, [this.frame.buffer]);
          this.frame = new Uint8Array(FRAME);
          this.fill = 0;
        }
        this.next += this.step;
      }
      this.prev = y;
      this.n++;
    }
    return true;
  }
}

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    /** Items: { samples: Float32Array (8 kHz), offset } or { mark: string }. */
    this.queue = [];
    this.phase = 0; // fractional position inside the head item, in 8 kHz samples
    this.last = 0;
    this.ratio = OUT_RATE / sampleRate;
    this.played = 0;
    this.reported = 0;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'audio') this.queue.push({ samples: m.samples, offset: 0 });
      else if (m.type === 'mark') this.queue.push({ mark: m.name });
      else if (m.type === 'clear') {
        const marks = this.queue.filter((q) => q.mark !== undefined).map((q) => q.mark);
        this.queue = [];
        this.phase = 0;
        for (const name of marks) this.port.postMessage({ type: 'mark', name, cause: 'clear' });
      }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0]?.[0];
    if (!out) return true;
    for (let k = 0; k < out.length; k++) {
      let head = this.queue[0];
      while (head && head.mark !== undefined) {
        this.port.postMessage({ type: 'mark', name: head.mark, cause: 'played' });
        this.queue.shift();
        head = this.queue[0];
      }
      if (!head) {
        out[k] = 0;
        continue;
      }
      const i = Math.floor(this.phase);
      const a = head.samples[i] ?? 0;
      const b = head.samples[i + 1] ?? this.peekNext(a);
      out[k] = a + (b - a) * (this.phase - i);
      this.phase += this.ratio;
      this.played += this.ratio;
      if (this.phase >= head.samples.length) {
        this.phase -= head.samples.length;
        this.queue.shift();
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (this.played - this.reported >= OUT_RATE / 10) {
      this.reported = this.played;
      this.port.postMessage({ type: 'played', ms: Math.round(this.played / 8) });
    }
    return true;
  }

  peekNext(fallback) {
    const next = this.queue[1];
    return next && next.samples ? next.samples[0] : fallback;
  }
}

registerProcessor('vetline-capture', CaptureProcessor);
registerProcessor('vetline-playback', PlaybackProcessor);
