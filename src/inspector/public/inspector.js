/* global document, window, WebSocket, location, requestAnimationFrame, setTimeout, setInterval, fetch */
// Vetline call inspector (browser side, plain ES module; served by src/inspector/plugin.ts).
// Live feed over /inspector/ws: `hello`, `summary`, `state` (applied at once: the highlight budget is
// 100 ms), `update` (batched timeline/context/transcript/latency), `detail` (a call's full record,
// with its snapshots for time travel) and `level` (audio meters). The page sends `watch`.
// "Open journal…" posts a call journal to /inspector/api/journal and shows the replayed call like a
// finished one (kept in this page only, under the key `journal:<CallSid>`).
import { createSoftphone } from './softphone.js';

const $ = (id) => document.getElementById(id);
const KINDS = ['state', 'twilio', 'vad', 'transcript', 'agent', 'tool', 'tts', 'audio', 'bargein', 'turn', 'fallback', 'emergency', 'error', 'end'];
const HIDDEN_BY_DEFAULT = new Set(['audio', 'vad']);

/** Test and debugging hooks: what the chart highlighted and how late. */
const probe = { highlights: [], latencies: [], connected: false, softphone: null };
window.__vetlineInspector = probe;

const ui = {
  calls: new Map(),
  clinics: [],
  selected: null,
  /** The selected call. */
  detail: null,
  snapshots: [],
  current: null,
  items: new Map(),
  replies: [],
  turns: [],
  bargeIns: [],
  /** Index into `snapshots` while time travelling; null = follow the latest. */
  past: null,
  kinds: new Set(KINDS.filter((k) => !HIDDEN_BY_DEFAULT.has(k))),
  filterClinic: '',
  filterOutcome: '',
  follow: true,
  softphoneSid: null,
  /** Journals opened from disk: key `journal:<CallSid>` → the replayed call's detail. */
  opened: new Map(),
};

// ---------------------------------------------------------------------------------------------
// helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const clock = (ms) => {
  if (ms === null || ms === undefined) return '–';
  const s = Math.max(0, Math.round(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};
const secs = (ms) => `+${(ms / 1000).toFixed(2)}s`;
const shortSid = (sid) => `${sid.slice(0, 6)}…${sid.slice(-4)}`;
const leafPath = (active) => active.filter((id) => !active.some((o) => o.startsWith(`${id}.`))).map((id) => id.replace(/^call\./, '')).join(' | ');
const OUTCOME_LABEL = { completed: 'completed', callerHungUp: 'caller hung up', transferred: 'transferred', emergency: 'emergency', silence: 'silence', noStream: 'no stream', notConnected: 'not connected', error: 'error', handedOff: 'handed off', timeLimit: 'time limit' };

function badges(call) {
  const out = [];
  if (call.live) out.push(el('span', { class: 'vi-badge vi-b-live', text: 'live' }));
  else if (call.outcome) out.push(el('span', { class: `vi-badge ${call.outcome === 'error' ? 'vi-b-error' : 'vi-b-outcome'}`, text: OUTCOME_LABEL[call.outcome] ?? call.outcome }));
  if (call.emergency) out.push(el('span', { class: 'vi-badge vi-b-emergency', text: 'emergency', title: 'Emergency detected' }));
  if (call.transferred) out.push(el('span', { class: 'vi-badge vi-b-transfer', text: 'transfer', title: 'Transferred or transfer attempted' }));
  return out;
}

/** The selected call's summary: a call of the engine, or an opened journal. */
const selectedCall = () => (ui.selected && (ui.opened.get(ui.selected)?.summary ?? ui.calls.get(ui.selected))) || null;

const liveDuration = (call) => (call.live ? Date.now() - Date.parse(call.startedAt) : call.durationMs);

// ---------------------------------------------------------------------------------------------
// call list

function visible(call) {
  if (ui.filterClinic && call.tenantId !== ui.filterClinic) return false;
  if (ui.filterOutcome === 'live') return call.live;
  if (ui.filterOutcome) return call.outcome === ui.filterOutcome;
  return true;
}

let listQueued = false;
function renderList() {
  if (listQueued) return;
  listQueued = true;
  requestAnimationFrame(() => {
    listQueued = false;
    const list = $('calls');
    const calls = [...ui.calls.values()]
      .filter(visible)
      .sort((a, b) => Number(b.live) - Number(a.live) || Date.parse(b.startedAt) - Date.parse(a.startedAt));
    list.replaceChildren(
      ...calls.map((call) =>
        el(
          'li',
          { class: `vi-callitem${call.live ? ' vi-live' : ''}${call.callSid === ui.selected ? ' vi-selected' : ''}`, 'data-call': call.callSid, 'data-state': undefined },
          el('div', { class: 'vi-row' }, el('span', { class: 'vi-dot' }), el('b', { text: call.clinic }), el('span', { class: 'vi-dur', 'data-started': call.live ? call.startedAt : null, text: clock(liveDuration(call)) })),
          el('div', { class: 'vi-row' }, el('code', { class: 'vi-statecode', text: call.state, title: call.state }), ...badges(call)),
          el('div', { class: 'vi-sub', text: `${shortSid(call.callSid)} · ${new Date(call.startedAt).toLocaleTimeString()} · ${call.turns} turn${call.turns === 1 ? '' : 's'}` }),
        ),
      ),
    );
    $('calls-empty').hidden = ui.calls.size > 0;
    $('call-count').textContent = ui.calls.size ? `(${calls.length}/${ui.calls.size})` : '';
  });
}

$('calls').addEventListener('click', (e) => {
  const item = e.target.closest('[data-call]');
  if (item) select(item.getAttribute('data-call'));
});

setInterval(() => {
  for (const span of document.querySelectorAll('.vi-dur[data-started]')) span.textContent = clock(Date.now() - Date.parse(span.getAttribute('data-started')));
  const call = ui.selected && ui.calls.get(ui.selected);
  if (call?.live) renderHead();
}, 1000);

// ---------------------------------------------------------------------------------------------
// selection and time travel

function select(callSid) {
  if (ui.selected === callSid) return;
  ui.selected = callSid;
  ui.detail = null;
  ui.snapshots = [];
  ui.current = null;
  ui.items = new Map();
  ui.replies = [];
  ui.turns = [];
  ui.bargeIns = [];
  ui.past = null;
  $('timeline').replaceChildren();
  $('transcript').replaceChildren();
  $('waterfall').replaceChildren();
  $('context').textContent = '';
  setMeters(-100, -100);
  const journal = ui.opened.get(callSid);
  send({ type: 'watch', callSid: journal ? null : callSid });
  renderList();
  renderHead();
  if (journal) onDetail(journal, true);
}

/** The snapshot on screen: the time-travel position, or the latest. */
const shown = () => (ui.past !== null ? ui.snapshots[ui.past] : ui.current) ?? null;

function renderTravel() {
  const call = selectedCall();
  const travel = $('travel');
  const can = Boolean(call && !call.live && ui.snapshots.length > 1);
  travel.hidden = !can;
  $('call').classList.toggle('vi-past', ui.past !== null);
  if (!can) return;
  const range = $('travel-range');
  range.max = String(ui.snapshots.length - 1);
  range.value = String(ui.past ?? ui.snapshots.length - 1);
  const snap = shown();
  const n = Number(range.value) + 1;
  $('travel-label').textContent = snap ? `${secs(snap.t)} · ${leafPath(snap.active)} · snapshot ${n}/${ui.snapshots.length}` : '';
}

function travelTo(index) {
  const last = ui.snapshots.length - 1;
  const i = Math.max(0, Math.min(last, index));
  ui.past = i === last ? null : i;
  renderSnapshot();
}

$('travel-range').addEventListener('input', (e) => travelTo(Number(e.target.value)));
$('travel-prev').addEventListener('click', () => travelTo((ui.past ?? ui.snapshots.length - 1) - 1));
$('travel-next').addEventListener('click', () => travelTo((ui.past ?? ui.snapshots.length - 1) + 1));
$('travel-end').addEventListener('click', () => travelTo(ui.snapshots.length - 1));

// ---------------------------------------------------------------------------------------------
// statechart

const chart = $('chart');
const svg = chart.querySelector('svg');
const nodes = new Map();
if (svg) for (const g of svg.querySelectorAll('g[data-state]')) nodes.set(g.getAttribute('data-state'), g);
const fullViewBox = svg?.getAttribute('viewBox') ?? null;
let lit = [];
let seen = [];
let zoomed = '';

/** The rect of a state box in SVG user space (ancestor translate() applied). */
function boxOf(g) {
  const rect = g.querySelector(':scope > rect');
  if (!rect) return null;
  let x = Number(rect.getAttribute('x'));
  let y = Number(rect.getAttribute('y'));
  for (let p = g.parentElement; p && p !== svg; p = p.parentElement) {
    const m = /translate\(\s*([-\d.]+)[ ,]+([-\d.]+)\s*\)/.exec(p.getAttribute('transform') ?? '');
    if (m) {
      x += Number(m[1]);
      y += Number(m[2]);
    }
  }
  return { x, y, w: Number(rect.getAttribute('width')), h: Number(rect.getAttribute('height')) };
}

function zoomTo(active) {
  if (!svg) return;
  if (!$('chart-follow').checked || active.length < 2) {
    if (zoomed !== 'all') svg.setAttribute('viewBox', fullViewBox);
    zoomed = 'all';
    return;
  }
  // The top-level active state (a child of the root), with its surroundings.
  const focus = active[1];
  if (focus === zoomed) return;
  const box = nodes.get(focus) && boxOf(nodes.get(focus));
  if (!box) return;
  const pad = 60;
  const minW = 900;
  const minH = 560;
  const [, , fullW, fullH] = fullViewBox.split(/\s+/).map(Number);
  const w = Math.min(fullW, Math.max(box.w + 2 * pad, minW));
  const h = Math.min(fullH, Math.max(box.h + 2 * pad, minH));
  // Centred on the state, kept inside the drawing (no empty margins at the edges).
  const x = Math.max(0, Math.min(fullW - w, box.x + box.w / 2 - w / 2));
  const y = Math.max(0, Math.min(fullH - h, box.y + box.h / 2 - h / 2));
  svg.setAttribute('viewBox', `${x} ${y} ${w} ${h}`);
  zoomed = focus;
}

$('chart-follow').addEventListener('change', () => {
  zoomed = '';
  const snap = shown();
  zoomTo(snap ? snap.active : []);
});
$('chart-fit').addEventListener('click', () => {
  $('chart-follow').checked = false;
  zoomTo([]);
});

/** Highlights the active states. Synchronous: called straight from the socket message. */
function highlight(active, visited) {
  for (const g of lit) g.classList.remove('vi-on', 'vi-leaf');
  for (const g of seen) g.classList.remove('vi-seen');
  lit = [];
  seen = [];
  for (const id of visited) {
    const g = id === 'call' ? undefined : nodes.get(id);
    if (g) {
      g.classList.add('vi-seen');
      seen.push(g);
    }
  }
  // The root box spans the whole chart: it stays unpainted.
  for (const id of active.slice(1)) {
    const g = nodes.get(id);
    if (!g) continue;
    const leaf = !active.some((o) => o.startsWith(`${id}.`));
    g.classList.add(leaf ? 'vi-leaf' : 'vi-on');
    lit.push(g);
  }
  $('chart-state').textContent = active.length ? leafPath(active) : '';
  zoomTo(active);
}

function visitedUntil(index) {
  const out = new Set();
  const last = index ?? ui.snapshots.length - 1;
  for (let i = 0; i <= last && i < ui.snapshots.length; i++) for (const id of ui.snapshots[i].active) out.add(id);
  return out;
}

// ---------------------------------------------------------------------------------------------
// transcript

/** Splits a reply into what was heard and what was not (whitespace-insensitive prefix match). */
function splitHeard(full, heard) {
  const core = heard.endsWith('…') ? heard.slice(0, -1) : heard;
  let i = 0;
  let j = 0;
  while (j < core.length) {
    if (/\s/.test(core[j])) {
      j++;
      continue;
    }
    while (i < full.length && /\s/.test(full[i])) i++;
    if (i >= full.length || full[i] !== core[j]) return null;
    i++;
    j++;
  }
  return { heard: full.slice(0, i), rest: full.slice(i) };
}

function renderTranscript(snap) {
  const list = $('transcript');
  const ctx = snap?.context;
  if (!ctx) {
    list.replaceChildren();
    return;
  }
  const replies = new Map(ui.replies.map((r) => [r.index, r]));
  const lines = ctx.history.map((line, i) => {
    if (line.role === 'caller') return el('li', { class: 'vi-line vi-caller' }, el('small', { text: 'caller' }), line.text || '(nothing recognised)');
    const reply = replies.get(i);
    const split = reply && reply.heard === line.text && reply.full !== line.text ? splitHeard(reply.full, line.text) : null;
    if (split && split.rest.trim()) {
      return el(
        'li',
        { class: 'vi-line vi-agent', title: 'The struck part was generated but, by the acknowledged marks, never heard (barge-in or hang-up).' },
        el('small', {}, 'agent ', el('span', { class: 'vi-cut', text: '· partly heard' })),
        split.heard,
        el('del', { text: split.rest }),
      );
    }
    return el('li', { class: 'vi-line vi-agent' }, el('small', { text: 'agent' }), line.text);
  });
  if (ctx.turn?.text) lines.push(el('li', { class: 'vi-line vi-caller vi-pending' }, el('small', { text: 'caller (speaking)' }), ctx.turn.text));
  if (ctx.reply?.text) lines.push(el('li', { class: 'vi-line vi-agent vi-pending' }, el('small', { text: 'agent (replying)' }), ctx.reply.text));
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
  list.replaceChildren(...lines);
  if (atBottom || ui.past === null) list.scrollTop = list.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// timeline

for (const kind of KINDS) {
  const box = el('input', { type: 'checkbox', 'data-kind': kind, checked: ui.kinds.has(kind) });
  $('kinds').append(el('label', { title: `show ${kind} events` }, box, el('i', { class: `vi-k vi-k-${kind}`, style: 'width:8px;height:8px;display:inline-block;border-radius:2px' }), kind));
}
$('kinds').addEventListener('change', (e) => {
  const kind = e.target.getAttribute('data-kind');
  if (e.target.checked) ui.kinds.add(kind);
  else ui.kinds.delete(kind);
  for (const { item, li } of ui.items.values()) li.hidden = !ui.kinds.has(item.kind);
});

function itemNode(item) {
  const extra = [];
  if (item.count > 1) extra.push(el('span', { class: 'vi-n', text: ` ×${item.count}` }));
  if (item.ms) extra.push(el('span', { class: 'vi-n', text: ` · ${item.ms} ms audio` }));
  const li = el(
    'li',
    { class: `vi-i-${item.kind}`, 'data-t': item.t },
    el('time', { text: secs(item.t) }),
    el('i', { class: `vi-k vi-k-${item.kind}`, title: item.kind }),
    el('div', {}, el('b', { text: item.label }), ...extra, item.detail ? el('span', { class: 'vi-d', text: ` ${item.detail}` }) : null),
  );
  li.hidden = !ui.kinds.has(item.kind);
  return li;
}

function upsertItems(items) {
  const list = $('timeline');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
  for (const item of items) {
    const old = ui.items.get(item.id);
    const li = itemNode(item);
    if (old) old.li.replaceWith(li);
    else list.append(li);
    ui.items.set(item.id, { item, li });
  }
  if (atBottom && ui.past === null) list.scrollTop = list.scrollHeight;
}

function markFuture(t) {
  for (const { item, li } of ui.items.values()) li.classList.toggle('vi-future', t !== null && item.t > t);
  if (t === null) return;
  const firstFuture = [...ui.items.values()].find(({ item }) => item.t > t && ui.kinds.has(item.kind));
  if (firstFuture) firstFuture.li.scrollIntoView({ block: 'center' });
}

// ---------------------------------------------------------------------------------------------
// latency waterfall

const LANES = [
  ['stt', 'final transcript', (t) => [0, t.sttMs]],
  ['endpoint', 'turn committed', (t) => [0, t.endpointMs]],
  ['agent', 'first agent text', (t) => (t.endpointMs === null || t.agentFirstTextMs === null ? null : [t.endpointMs, t.endpointMs + t.agentFirstTextMs])],
  ['tts', 'first synthesized audio', (t) => (t.endpointMs === null || t.ttsFirstAudioMs === null ? null : [t.endpointMs, t.endpointMs + t.ttsFirstAudioMs])],
  ['audio', 'first audio to caller', (t) => (t.endpointMs === null || t.firstAudioMs === null ? null : [t.endpointMs, t.endpointMs + t.firstAudioMs])],
];

const ms = (v) => (v === null || v === undefined ? '–' : `${Math.round(v)}`);

function renderWaterfall() {
  const box = $('waterfall');
  if (ui.turns.length === 0) {
    box.replaceChildren(el('p', { class: 'vi-hint', text: 'No completed turn yet: each caller turn that got a spoken reply appears here.' }));
    return;
  }
  const total = (t) => t.endOfSpeechToAudioMs ?? (t.endpointMs ?? 0) + (t.firstAudioMs ?? 0);
  const max = Math.max(500, ...ui.turns.map(total));
  const pct = (ms) => `${Math.max(0, Math.min(100, (ms / max) * 100))}%`;
  const legend = el('div', { class: 'vi-legend' }, ...LANES.map(([k, label]) => el('span', {}, el('i', { class: `vi-w-${k}` }), label)));
  const rows = ui.turns.map((t) =>
    el(
      'div',
      { class: 'vi-turn' },
      el(
        'span',
        {},
        `turn ${t.generation} `,
        el('b', { text: `${Math.round(total(t))} ms` }),
        el('small', { text: `stt ${ms(t.sttMs)} · commit ${ms(t.endpointMs)} · +agent ${ms(t.agentFirstTextMs)} · +tts ${ms(t.ttsFirstAudioMs)} · +audio ${ms(t.firstAudioMs)}` }),
      ),
      el(
        'div',
        { class: 'vi-lanes' },
        ...LANES.map(([k, label, span]) => {
          const s = span(t);
          const lane = el('div', { class: 'vi-lane' });
          if (s && s[1] !== null && s[0] !== null) {
            lane.append(el('i', { class: `vi-w-${k}`, style: `left:${pct(s[0])};width:${pct(s[1] - s[0])}`, title: `${label}: ${Math.round(s[1])} ms after end of speech (${Math.round(s[1] - s[0])} ms)` }));
          }
          return lane;
        }),
      ),
    ),
  );
  const scale = el('div', { class: 'vi-scale' }, el('span', { text: '0' }), el('span', { text: `${Math.round(max / 2)} ms` }), el('span', { text: `${Math.round(max)} ms` }));
  const barge = ui.bargeIns.length
    ? el('p', { class: 'vi-hint', text: `Barge-ins: speech onset → clear ${ui.bargeIns.map((b) => `${Math.round(b.clearLatencyMs)} ms`).join(', ')}` })
    : null;
  box.replaceChildren(legend, ...rows, scale, ...(barge ? [barge] : []));
}

// ---------------------------------------------------------------------------------------------
// header, meters, context

function renderHead() {
  const call = selectedCall();
  $('call').setAttribute('data-empty', call ? 'false' : 'true');
  if (!call) {
    $('call-title').textContent = 'No call selected';
    $('call-meta').replaceChildren();
    return;
  }
  $('call-title').textContent = call.clinic;
  $('call-meta').replaceChildren(
    el('code', { text: call.callSid }),
    el('span', { text: `started ${new Date(call.startedAt).toLocaleTimeString()}` }),
    el('span', { text: `duration ${clock(liveDuration(call))}` }),
    ...badges(call),
    ...journalMeta(ui.opened.get(ui.selected)?.journal),
  );
}

function journalMeta(journal) {
  if (!journal) return [];
  const diverged = journal.divergences.length;
  return [
    el('span', { class: 'vi-badge vi-b-outcome', text: 'journal', title: 'Replayed from a call journal on the simulated clock' }),
    el('code', { text: journal.source }),
    diverged ? el('span', { class: 'vi-badge vi-b-error', text: `${diverged} divergence${diverged === 1 ? '' : 's'}`, title: journal.divergences.join('\n') }) : null,
    journal.truncated || journal.tornTail ? el('span', { class: 'vi-badge vi-b-error', text: journal.truncated ? 'truncated' : 'torn tail' }) : null,
  ].filter(Boolean);
}

function setMeters(caller, agent) {
  // The bar is a mask over the gradient, scaled from the right (compositor-only animation).
  const cover = (db) => `scaleX(${1 - Math.max(0, Math.min(1, (db + 70) / 70))})`;
  $('meter-caller').style.transform = cover(caller);
  $('meter-agent').style.transform = cover(agent);
  $('meter-caller-db').textContent = caller <= -99 ? '–' : `${caller} dB`;
  $('meter-agent-db').textContent = agent <= -99 ? '–' : `${agent} dB`;
}

let contextQueued = false;
function renderSnapshot() {
  const snap = shown();
  highlight(snap ? snap.active : [], visitedUntil(ui.past));
  renderTravel();
  markFuture(ui.past !== null && snap ? snap.t : null);
  if (contextQueued) return;
  contextQueued = true;
  requestAnimationFrame(() => {
    contextQueued = false;
    const s = shown();
    renderTranscript(s);
    $('context').textContent = s ? JSON.stringify(s.context, null, 2) : '';
    $('context-at').textContent = s ? `${secs(s.t)} · ${leafPath(s.active)}` : '';
  });
}

// ---------------------------------------------------------------------------------------------
// socket

let socket = null;
let retry = 500;

function send(message) {
  if (socket?.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function connect() {
  const conn = $('conn');
  socket = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/inspector/ws`);
  socket.addEventListener('open', () => {
    retry = 500;
    probe.connected = true;
    conn.textContent = 'live';
    conn.className = 'vi-conn vi-ok';
    if (ui.selected && !ui.opened.has(ui.selected)) send({ type: 'watch', callSid: ui.selected });
  });
  socket.addEventListener('close', () => {
    probe.connected = false;
    conn.textContent = 'disconnected: retrying';
    conn.className = 'vi-conn vi-down';
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 8000);
  });
  socket.addEventListener('message', (e) => onMessage(JSON.parse(e.data)));
}

function onMessage(m) {
  switch (m.type) {
    case 'hello':
      return onHello(m);
    case 'summary':
      return onSummary(m.call);
    case 'state':
      if (m.callSid !== ui.selected) return;
      ui.current = m.snapshot;
      ui.snapshots.push(m.snapshot);
      if (ui.past === null) {
        renderSnapshot();
        const now = Date.now();
        probe.latencies.push(now - m.at);
        probe.highlights.push({ callSid: m.callSid, leaf: leafPath(m.snapshot.active), active: m.snapshot.active, latencyMs: now - m.at, sinceCauseMs: m.causeAt === null ? null : now - m.causeAt });
      }
      return;
    case 'update':
      if (m.callSid !== ui.selected) return;
      if (m.items) upsertItems(m.items);
      if (m.replies) ui.replies = m.replies;
      if (m.turns) {
        ui.turns = m.turns;
        ui.bargeIns = m.bargeIns ?? ui.bargeIns;
        renderWaterfall();
      }
      if (m.snapshot) ui.current = m.snapshot;
      if (ui.past === null && (m.snapshot || m.replies)) renderSnapshot();
      return;
    case 'detail':
      if (m.callSid !== ui.selected) return;
      return onDetail(m.detail);
    case 'level':
      if (m.callSid === ui.selected) setMeters(m.caller, m.agent);
      return;
  }
}

function onHello(m) {
  ui.clinics = m.clinics;
  $('logout').hidden = m.access !== 'token';
  const filter = $('filter-clinic');
  filter.replaceChildren(el('option', { value: '', text: 'all clinics' }), ...m.clinics.map((c) => el('option', { value: c.id, text: c.name })));
  filter.value = ui.filterClinic;
  ui.calls = new Map(m.calls.map((c) => [c.callSid, c]));
  renderList();
  if (m.softphone) setupSoftphone(m.softphone);
  if (!ui.selected && ui.follow) {
    const live = m.calls.find((c) => c.live);
    if (live) select(live.callSid);
  }
}

function onSummary(call) {
  const before = ui.calls.get(call.callSid);
  ui.calls.set(call.callSid, call);
  renderList();
  const current = selectedCall();
  const isNew = !before;
  // An opened journal stays on screen: following new calls is for the engine's own calls.
  const follow = ui.follow && !ui.opened.has(ui.selected) && (!current || !current.live);
  if (isNew && call.live && (ui.softphoneSid === call.callSid || follow)) select(call.callSid);
  if (call.callSid === ui.selected) {
    renderHead();
    // The call just ended: fetch the complete record (every snapshot) for time travel.
    if (before?.live && !call.live) send({ type: 'watch', callSid: call.callSid });
  }
}

function onDetail(detail, journal = false) {
  ui.detail = detail;
  if (!detail) return;
  if (!journal) ui.calls.set(detail.summary.callSid, detail.summary);
  ui.snapshots = detail.snapshots;
  ui.current = detail.current ?? detail.snapshots.at(-1) ?? null;
  ui.replies = detail.replies;
  ui.turns = detail.turns;
  ui.bargeIns = detail.bargeIns;
  ui.items = new Map();
  $('timeline').replaceChildren();
  upsertItems(detail.timeline);
  if (ui.past !== null && ui.past >= ui.snapshots.length) ui.past = null;
  renderHead();
  renderWaterfall();
  renderSnapshot();
  if (!detail.summary.live) setMeters(-100, -100);
}

// ---------------------------------------------------------------------------------------------
// journals opened from disk

$('journal-open').addEventListener('click', () => $('journal-file').click());
$('journal-file').addEventListener('change', async (e) => {
  const input = e.target;
  const file = input.files?.[0];
  if (!file) return;
  const status = $('journal-status');
  status.className = 'vi-journal-status';
  status.textContent = `replaying ${file.name}…`;
  status.title = '';
  try {
    const res = await fetch(`/inspector/api/journal?name=${encodeURIComponent(file.name)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: file,
      credentials: 'same-origin',
    });
    const body = await res.json().catch(() => null);
    if (!res.ok || !body?.summary) throw new Error(body?.message ?? (res.status === 413 ? 'the file is too large for a journal' : `the engine answered ${res.status}`));
    const key = `journal:${body.summary.callSid}`;
    ui.opened.set(key, body);
    status.textContent = `${file.name}: ${body.snapshots.length} snapshots`;
    ui.selected = null; // re-opening the same journal reloads it
    select(key);
  } catch (err) {
    status.className = 'vi-journal-status vi-bad';
    status.textContent = `${file.name}: ${err.message}`;
    status.title = status.textContent;
  } finally {
    input.value = ''; // the same file can be chosen again
  }
});

// ---------------------------------------------------------------------------------------------
// filters

$('filter-clinic').addEventListener('change', (e) => {
  ui.filterClinic = e.target.value;
  renderList();
});
$('filter-outcome').addEventListener('change', (e) => {
  ui.filterOutcome = e.target.value;
  renderList();
});
$('follow').addEventListener('change', (e) => {
  ui.follow = e.target.checked;
});

// ---------------------------------------------------------------------------------------------
// softphone (development only: the server offers it only while webhook signatures are off)

function setupSoftphone(config) {
  if (probe.softphone) return;
  const box = $('softphone');
  const pick = $('sp-clinic');
  pick.replaceChildren(...config.clinics.map((c) => el('option', { value: c.number, text: `${c.name} (${c.shown})` })));
  box.hidden = false;
  const status = $('sp-status');
  const keys = $('sp-keys');
  $('sp-keypad').replaceChildren(...'123456789*0#'.split('').map((d) => el('button', { type: 'button', 'data-digit': d, text: d })));
  const phone = createSoftphone({
    accountSid: config.accountSid,
    onStatus: (text, state) => {
      status.textContent = text;
      const inCall = state === 'calling' || state === 'connected';
      $('sp-call').disabled = inCall;
      $('sp-hangup').disabled = !inCall;
      keys.hidden = state !== 'connected';
    },
    onCall: (callSid) => {
      ui.softphoneSid = callSid;
      if (ui.calls.has(callSid)) select(callSid);
    },
  });
  probe.softphone = phone.stats;
  $('sp-call').addEventListener('click', () => void phone.call(pick.value, { processing: $('sp-aec').checked }));
  $('sp-hangup').addEventListener('click', () => phone.hangUp());
  keys.addEventListener('click', (e) => {
    const digit = e.target.getAttribute?.('data-digit');
    if (digit) phone.dtmf(digit);
  });
}

renderWaterfall();
renderHead();
connect();
