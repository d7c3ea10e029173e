/* global document, window, fetch, EventSource, localStorage, location, setTimeout, clearTimeout, URLSearchParams */
// Vetline front desk (browser side, plain ES module; served by src/desk/plugin.ts).
// Lists the follow-ups of the signed-in clinic (or every clinic for the operator), keeps them live
// over Server-Sent Events (/desk/api/events: `followups` → re-read the list), and changes them with
// PATCH /desk/api/followups/:id. Every piece of data goes into the page as text (textContent or a
// checked attribute): never as HTML.

const $ = (id) => document.getElementById(id);

/** Test and debugging hooks. */
const probe = { ready: false, connected: false, loads: 0, events: 0, lastError: null };
window.__vetlineDesk = probe;

const NAME_KEY = 'vetline.desk.name';
const TYPE_LABEL = {
  emergency: 'Emergency',
  appointment_request: 'Appointment request',
  refill_request: 'Refill request',
  message: 'Message',
};
const STATUS_LABEL = { new: 'New', in_progress: 'In progress', done: 'Done' };
const URGENCY_LABEL = { routine: 'Routine', soon: 'Soon', urgent: 'Urgent', emergency: 'Emergency' };
const OUTCOME_LABEL = {
  completed: 'call completed',
  callerHungUp: 'caller hung up',
  transferred: 'transferred to staff',
  emergency: 'emergency',
  silence: 'caller went silent',
};

const state = {
  status: 'open',
  type: '',
  from: '',
  to: '',
  clinic: '',
  session: null,
  /** id → { root, body, details, detailBody, actions, form, textarea, who, data, detailLoaded, busy } */
  cards: new Map(),
  loadSeq: 0,
  reloadTimer: null,
  events: null,
  everConnected: false,
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
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short' });
const startOfDay = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();

function when(ms) {
  const d = new Date(ms);
  const today = startOfDay(new Date());
  const day = startOfDay(d);
  const t = timeFmt.format(d);
  if (day === today) return `Today ${t}`;
  if (day === startOfDay(new Date(today - 1))) return `Yesterday ${t}`;
  return `${dayFmt.format(d)}, ${t}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '';
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** `tel:` only for something that really is a phone number; anything else gets no link. */
function telHref(number) {
  const digits = String(number).replace(/[\s().-]/g, '');
  return /^\+?\d{3,20}$/.test(digits) ? `tel:${digits}` : null;
}

let toastTimer = null;
function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 2500);
}

function showError(message) {
  const e = $('error');
  e.textContent = message ?? '';
  e.hidden = !message;
  probe.lastError = message ?? null;
}

function staffName() {
  try {
    return (localStorage.getItem(NAME_KEY) ?? '').trim();
  } catch {
    return '';
  }
}

function rememberName(name) {
  const v = name.trim().slice(0, 80);
  try {
    if (v) localStorage.setItem(NAME_KEY, v);
    else localStorage.removeItem(NAME_KEY);
  } catch {
    /* private mode: not remembered */
  }
  $('staff-name').value = v;
}

async function api(path, init = {}) {
  const res = await fetch(path, {
    credentials: 'same-origin',
    ...init,
    headers: { accept: 'application/json', ...(init.headers ?? {}) },
  });
  if (res.status === 401) {
    // The session ended (token rotated, cookie cleared): back to the sign-in form.
    location.assign('/desk');
    throw new Error('Signed out: sign in again.');
  }
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && typeof body.message === 'string' && body.message) || `The server answered ${res.status}.`);
  return body;
}

// ---------------------------------------------------------------------------------------------
// the list

function query() {
  const q = new URLSearchParams({ status: state.status });
  if (state.type) q.set('type', state.type);
  // Dates are the staff's local days: from the start of `from` to the end of `to`.
  if (state.from) {
    const [y, m, d] = state.from.split('-').map(Number);
    q.set('from', new Date(y, m - 1, d).toISOString());
  }
  if (state.to) {
    const [y, m, d] = state.to.split('-').map(Number);
    q.set('to', new Date(y, m - 1, d + 1).toISOString());
  }
  if (state.clinic) q.set('clinic', state.clinic);
  return q;
}

function scheduleLoad(delayMs = 200) {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => void load(), delayMs);
}

async function load() {
  const seq = ++state.loadSeq;
  try {
    const data = await api(`/desk/api/followups?${query()}`);
    if (seq !== state.loadSeq) return; // a newer load is on its way
    render(data.followUps);
    showError(null);
  } catch (err) {
    if (seq === state.loadSeq) showError(err.message);
  } finally {
    if (seq === state.loadSeq) {
      probe.loads++;
      probe.ready = true;
    }
  }
}

function render(items) {
  const list = $('list');
  const seen = new Set();
  let prev = null;
  for (const f of items) {
    let card = state.cards.get(f.id);
    if (!card) {
      card = createCard(f.id);
      state.cards.set(f.id, card);
    }
    updateCard(card, f);
    // Move only what is out of place, so a note being typed keeps its focus.
    const want = prev ? prev.nextSibling : list.firstChild;
    if (card.root !== want) list.insertBefore(card.root, want);
    prev = card.root;
    seen.add(f.id);
    addClinicOption(f.clinicId, f.clinicName);
  }
  for (const [id, card] of state.cards) {
    if (seen.has(id)) continue;
    card.root.remove();
    state.cards.delete(id);
  }
  $('empty').hidden = items.length > 0;
  const open = items.filter((f) => f.status !== 'done');
  const emergencies = open.filter((f) => f.type === 'emergency').length;
  $('count').textContent = items.length === 0 ? '' : `${items.length} shown · ${open.length} open${emergencies ? ` · ${emergencies} emergency${emergencies === 1 ? '' : 'ies'}` : ''}`;
}

function addClinicOption(id, name) {
  if (!state.session || state.session.scope === 'clinic') return;
  const select = $('filter-clinic');
  if ([...select.options].some((o) => o.value === id)) return;
  select.append(el('option', { value: id, text: name ?? id }));
}

// ---------------------------------------------------------------------------------------------
// one follow-up

function createCard(id) {
  const card = { id, data: null, detailLoaded: false, busy: false };
  card.root = el('article', { class: 'dk-card', 'data-id': id });
  card.body = el('div', { class: 'dk-body' });
  card.detailBody = el('div', { class: 'dk-detail' }, el('p', { class: 'dk-delivery', text: 'Loading…' }));
  card.details = el('details', { class: 'dk-details' }, el('summary', { text: 'Transcript and recording' }), card.detailBody);
  card.details.addEventListener('toggle', () => {
    if (card.details.open && !card.detailLoaded) void loadDetail(card);
  });
  card.actions = el('div', { class: 'dk-actions' });
  card.textarea = el('textarea', { maxlength: '2000', 'aria-label': 'Note', placeholder: 'What was done, what is next…', required: true });
  card.who = el('input', { type: 'text', maxlength: '80', 'aria-label': 'Your name', placeholder: 'Your name', autocomplete: 'name' });
  card.form = el(
    'form',
    { class: 'dk-note-form', hidden: true },
    card.textarea,
    el('div', { class: 'dk-row' }, card.who, el('button', { type: 'submit', class: 'dk-primary', 'data-act': 'save-note', text: 'Save note' }), el('button', { type: 'button', 'data-act': 'cancel-note', text: 'Cancel' })),
  );
  card.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const note = card.textarea.value.trim();
    if (!note) return;
    const by = card.who.value.trim();
    if (by) rememberName(by);
    void change(card, { note, ...(by ? { handledBy: by } : {}) }, 'Note added').then((ok) => {
      if (!ok) return;
      card.textarea.value = '';
      card.form.hidden = true;
    });
  });
  card.form.querySelector('[data-act="cancel-note"]').addEventListener('click', () => {
    card.form.hidden = true;
  });
  card.root.append(card.body, card.details, card.actions, card.form);
  return card;
}

function fact(label, value) {
  if (value === null || value === undefined || value === '') return [];
  return [el('dt', { text: label }), el('dd', { text: value })];
}

const CHANNEL_LABEL = { webhook: 'webhook', email: 'email', sms: 'SMS' };

/** "sent to clinic system", or "Delivery failed (webhook): HTTP 500 …" once retries gave up. */
function deliveryText(d) {
  if (d.status === 'failed') return `Delivery failed (${CHANNEL_LABEL[d.channel] ?? d.channel}): ${d.lastError ?? 'gave up'}`;
  return d.label;
}

/** The answer to "Is your pet in danger right now?", asked when the trigger was uncertain. */
const CONFIRMATION_TEXT = {
  saidYes: 'asked, said yes', pressedYes: 'asked, pressed 1 (yes)', emergencyKey: 'asked, pressed the emergency key',
  clearKeyword: 'asked, described an emergency', noAnswer: 'asked, no answer (treated as yes)',
};

function emergencyLine(e) {
  if (!e) return null;
  const how = { speech: 'said', dtmf: 'pressed', agent: 'receptionist flagged' }[e.trigger] ?? e.trigger;
  let where;
  if (e.sentTo === null) where = 'No emergency line: the caller heard the emergency instructions.';
  else if (e.connected === true) where = 'Transferred to the emergency line: connected.';
  else if (e.connected === false) where = 'Transfer to the emergency line did NOT connect: call back now.';
  else where = 'Transferred to the emergency line.';
  if (e.confirmation === 'callEnded') where = 'Possible emergency: the call ended while the caller was asked if the pet was in danger. Call back now.';
  const asked = CONFIRMATION_TEXT[e.confirmation];
  return el('p', { class: 'dk-alert', text: `${where} (caller ${how}: ${e.detail}${asked ? `; ${asked}` : ''})` });
}

function updateCard(card, f) {
  card.data = f;
  const root = card.root;
  root.className = `dk-card${f.type === 'emergency' ? ' dk-emergency' : ''}${f.status === 'done' ? ' dk-done' : ''}`;
  root.dataset.status = f.status;
  root.dataset.type = f.type;

  const showClinic = state.session && state.session.scope !== 'clinic';
  const head = el(
    'div',
    { class: 'dk-head' },
    el('span', { class: `dk-badge dk-type-${f.type}`, text: TYPE_LABEL[f.type] ?? f.type }),
    el('span', { class: `dk-badge dk-status-${f.status}`, 'data-role': 'status', text: STATUS_LABEL[f.status] ?? f.status }),
    f.urgency !== 'routine' && f.type !== 'emergency' ? el('span', { class: 'dk-badge dk-urgency', text: URGENCY_LABEL[f.urgency] ?? f.urgency }) : null,
    showClinic ? el('span', { class: 'dk-clinic', text: f.clinicName ?? f.clinicId }) : null,
    el('time', { datetime: new Date(f.createdAt).toISOString(), text: when(f.createdAt) }),
  );

  const pet = el(
    'h2',
    { class: 'dk-pet' },
    f.petName ?? (f.type === 'message' ? `Message for ${f.recipient ?? 'the clinic'}` : 'Pet not named'),
    f.petSpecies ? el('span', { class: 'dk-species', text: ` (${f.petSpecies})` }) : null,
  );

  const facts = el(
    'dl',
    { class: 'dk-facts' },
    ...fact('Owner', f.callerName),
    ...fact('Reason', f.reason),
    ...fact('Preferred', f.preferredTime),
    ...fact('Message', f.message),
    ...fact('For', f.type === 'message' && !f.petName ? null : f.recipient),
    ...fact('Urgency', URGENCY_LABEL[f.urgency] ?? f.urgency),
  );

  const href = f.callerNumber ? telHref(f.callerNumber) : null;
  const callback = href
    ? el('a', { class: 'dk-btn dk-call', href, 'data-role': 'callback', text: `Call back ${f.callerNumber}` })
    : el('p', { class: 'dk-nonumber', text: f.callerNumber ? `Callback number: ${f.callerNumber}` : 'No callback number (the caller gave none).' });

  const summary = f.call
    ? el('p', { class: 'dk-summary', 'data-role': 'summary', text: f.call.summary })
    : el('p', { class: 'dk-delivery', text: 'The call is still going on or has no summary yet.' });

  const deliveries = f.deliveries.map((d) => el('p', { class: `dk-delivery dk-${d.status}`, 'data-role': 'delivery', text: deliveryText(d) }));

  const handled =
    f.handledBy && f.status !== 'new'
      ? el('p', { class: 'dk-handled', text: `${STATUS_LABEL[f.status]} · ${f.handledBy} · ${when(f.updatedAt)}` })
      : null;

  const notes = f.notes.length
    ? el(
        'ul',
        { class: 'dk-notes', 'aria-label': 'Notes' },
        ...f.notes.map((n) => el('li', {}, el('span', { class: 'dk-by', text: `${n.by} · ${when(n.at)}` }), n.text)),
      )
    : null;

  card.body.replaceChildren(head, emergencyLine(f.emergency) ?? '', pet, facts, callback, summary, ...deliveries, handled ?? '', notes ?? '');

  const buttons = [];
  if (f.status === 'new') buttons.push(actionButton(card, 'in_progress', 'Mark in progress'));
  if (f.status !== 'done') buttons.push(actionButton(card, 'done', 'Done', 'dk-primary'));
  if (f.status === 'done') buttons.push(actionButton(card, 'new', 'Reopen'));
  const noteButton = el('button', { type: 'button', 'data-act': 'note', text: 'Add note' });
  noteButton.addEventListener('click', () => {
    card.form.hidden = false;
    if (!card.who.value) card.who.value = staffName();
    card.textarea.focus();
  });
  buttons.push(noteButton);
  card.actions.replaceChildren(...buttons);
  setBusy(card, card.busy);
}

function actionButton(card, status, label, cls) {
  const b = el('button', { type: 'button', 'data-act': status, class: cls, text: label });
  b.addEventListener('click', () => {
    const by = staffName();
    const done = status === 'in_progress' ? 'Marked in progress' : status === 'done' ? 'Marked done' : 'Reopened';
    void change(card, { status, ...(by ? { handledBy: by } : {}) }, done);
  });
  return b;
}

function setBusy(card, busy) {
  card.busy = busy;
  for (const b of card.root.querySelectorAll('button')) b.disabled = busy;
}

async function change(card, body, doneText) {
  setBusy(card, true);
  try {
    const updated = await api(`/desk/api/followups/${encodeURIComponent(card.id)}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    card.busy = false;
    updateCard(card, updated);
    toast(doneText);
    scheduleLoad(0); // it may move, or leave this filter
    return true;
  } catch (err) {
    toast(err.message);
    return false;
  } finally {
    setBusy(card, false);
  }
}

async function loadDetail(card) {
  try {
    const detail = await api(`/desk/api/followups/${encodeURIComponent(card.id)}`);
    card.detailLoaded = true;
    card.detailBody.replaceChildren(...detailNodes(detail));
  } catch (err) {
    card.detailBody.replaceChildren(el('p', { class: 'dk-error', text: err.message }));
  }
}

function detailNodes(detail) {
  const call = detail.call;
  if (!call) return [el('p', { class: 'dk-delivery', text: 'No call record yet (the call may still be going on).' })];
  const nodes = [];
  const minutes = duration((call.endedAt - call.startedAt) / 1000);
  nodes.push(el('p', { class: 'dk-delivery', text: `Call ${when(call.startedAt)} · ${minutes} · ${OUTCOME_LABEL[call.outcome] ?? call.outcome}` }));
  nodes.push(
    call.transcript.length
      ? el(
          'ol',
          { class: 'dk-transcript', 'data-role': 'transcript' },
          ...call.transcript.map((line) =>
            el('li', { class: line.role === 'caller' ? 'dk-caller' : 'dk-agent' }, el('span', { class: 'dk-role', text: line.role === 'caller' ? 'Caller' : 'Receptionist' }), line.text),
          ),
        )
      : el('p', { class: 'dk-delivery', text: 'No transcript.' }),
  );
  for (const r of call.recordings) {
    if (typeof r.href !== 'string' || !r.href.startsWith('/desk/api/recordings/')) continue;
    const label = `Recording${r.durationSeconds ? ` (${duration(r.durationSeconds)})` : ''}`;
    nodes.push(
      el(
        'div',
        { class: 'dk-recording' },
        el('audio', { controls: true, preload: 'none', src: r.href, 'aria-label': label }),
        el('a', { href: r.href, 'data-role': 'recording', target: '_blank', rel: 'noopener', text: `Open ${label.toLowerCase()}` }),
      ),
    );
  }
  for (const d of call.deliveries) {
    nodes.push(el('p', { class: `dk-delivery dk-${d.status}`, text: `Call summary: ${deliveryText(d)}` }));
  }
  return nodes;
}

// ---------------------------------------------------------------------------------------------
// live updates

function setLive(live) {
  probe.connected = live;
  const badge = $('live');
  badge.dataset.state = live ? 'live' : 'offline';
  badge.textContent = live ? 'live' : 'reconnecting…';
}

function connect() {
  const es = new EventSource('/desk/api/events');
  state.events = es;
  es.addEventListener('ready', () => {
    setLive(true);
    // After a reconnect, something may have changed meanwhile.
    if (state.everConnected) scheduleLoad(0);
    state.everConnected = true;
  });
  es.addEventListener('followups', () => {
    probe.events++;
    scheduleLoad(250);
  });
  es.addEventListener('error', () => {
    setLive(false);
    // Closed for good (refused: busy, signed out): try again later; the list still works meanwhile.
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 30_000);
  });
}

// ---------------------------------------------------------------------------------------------
// start

function bindFilters() {
  for (const b of $('status-filter').querySelectorAll('button')) {
    b.addEventListener('click', () => {
      state.status = b.dataset.status;
      for (const other of $('status-filter').querySelectorAll('button')) other.setAttribute('aria-pressed', String(other === b));
      scheduleLoad(0);
    });
  }
  const bind = (id, key) =>
    $(id).addEventListener('change', () => {
      state[key] = $(id).value;
      scheduleLoad(0);
    });
  bind('filter-type', 'type');
  bind('filter-from', 'from');
  bind('filter-to', 'to');
  bind('filter-clinic', 'clinic');
  $('filter-clear').addEventListener('click', () => {
    for (const [id, key] of [['filter-type', 'type'], ['filter-from', 'from'], ['filter-to', 'to'], ['filter-clinic', 'clinic']]) {
      $(id).value = '';
      state[key] = '';
    }
    scheduleLoad(0);
  });
  const name = $('staff-name');
  name.value = staffName();
  name.addEventListener('change', () => rememberName(name.value));
}

async function start() {
  bindFilters();
  try {
    state.session = await api('/desk/api/session');
  } catch (err) {
    showError(err.message);
    return;
  }
  const s = state.session;
  $('scope-name').textContent = s.scope === 'clinic' ? (s.clinic.name ?? s.clinic.id) : s.scope === 'operator' ? 'all clinics (operator)' : 'all clinics';
  document.title = `${s.scope === 'clinic' ? (s.clinic.name ?? s.clinic.id) : 'All clinics'} · front desk`;
  $('logout').hidden = s.access !== 'token';
  if (s.scope !== 'clinic') {
    $('clinic-field').hidden = false;
    for (const c of s.clinics) addClinicOption(c.id, c.name);
  }
  connect();
  await load();
}

void start();
