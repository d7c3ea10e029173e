/**
 * TwiML builders (docs/design/twilio.md §1.2, §1.5, §1.6). Built with `twilio.twiml.VoiceResponse` only, which
 * escapes XML; never string templates. Every URL is absolute from PUBLIC_BASE_URL: TwiML pushed by
 * REST has no base URL, and Host-derived URLs are attacker-chosen (docs/design/reliability.md F14).
 */
import twilio from 'twilio';
import type VoiceResponse from 'twilio/lib/twiml/VoiceResponse.js';
import type { MenuAction, Tenant } from '../config/tenant.schema.js';

export const TWILIO_PATHS = {
  voice: '/twilio/voice',
  ws: '/twilio/ws',
  dtmf: '/twilio/dtmf',
  status: '/twilio/status',
  recording: '/twilio/recording',
  dial: '/twilio/dial',
  health: '/twilio/health',
  sessions: '/twilio/sessions',
} as const;

/** Failed menu prompts (no key, or a key with no action) before we dial the front desk. */
export const MENU_MAX_ATTEMPTS = 3;
/** Seconds <Gather> waits for the key (Twilio's default is 5). */
export const GATHER_TIMEOUT_SECONDS = 6;

const LINES = {
  notInService: 'Sorry, the number you have called is not in service. Goodbye.',
  streamFailed: 'Sorry, our assistant is having trouble.',
  busy: 'Please hold while we connect you to the front desk.',
  noAnswer: 'Sorry, nobody could take your call right now.',
  tryLater: 'Please call again later. Goodbye.',
  lastResort: 'Let me connect you to the front desk.',
  emergencyOffer: 'If this is an emergency',
  unavailable: 'Sorry, we cannot take your call right now. Please call again later. Goodbye.',
  assistantUnavailable: 'Sorry, our assistant cannot take this call.',
} as const;

type SayLanguage = NonNullable<VoiceResponse.SayAttributes['language']>;
type Sayer = { say(attributes: VoiceResponse.SayAttributes, message: string): unknown };

/** Context every caller-facing builder needs. `callerId` is the clinic number the call came in on. */
export interface TwimlContext {
  /** PUBLIC_BASE_URL origin, no trailing slash. */
  baseUrl: string;
  /** Caller ID for <Dial>: the call's signed `To` (a Twilio number we own). Null omits the attribute. */
  callerId: string | null;
}

function say(parent: Sayer, text: string, tenant: Tenant | null): void {
  // The tenant schema only checks the shape (xx or xx-YY); Twilio's list is longer than we can mirror,
  // and an unknown value there is Twilio's call to make, so the cast is deliberate.
  const attrs: VoiceResponse.SayAttributes = tenant ? { language: tenant.voice.language as SayLanguage } : {};
  parent.say(attrs, text);
}

const newResponse = () => new twilio.twiml.VoiceResponse();

export const dtmfUrl = (baseUrl: string, attempt: number) => `${baseUrl}${TWILIO_PATHS.dtmf}?attempt=${attempt}`;
/** `last=1` marks the final dial after the menu failed: if it fails too we say goodbye, not loop. */
export const dialActionUrl = (baseUrl: string, lastResort = false) =>
  `${baseUrl}${TWILIO_PATHS.dial}${lastResort ? '?last=1' : ''}`;

// ---------- the spoken menu ----------

const KEYPAD_ORDER = '1234567890*#';
const spokenKey = (k: string) => (k === '*' ? 'star' : k === '#' ? 'pound' : k);
const isEmergencyItem = (a: MenuAction) => a.action === 'emergency' || (a.action === 'transfer' && a.target === 'emergency');

/** Single-key entries only: the fallback <Gather> takes one digit, so longer keys cannot be reached. */
function menuEntries(tenant: Tenant): [string, MenuAction][] {
  const rank = (k: string, a: MenuAction) => (isEmergencyItem(a) ? -1 : KEYPAD_ORDER.indexOf(k));
  return Object.entries(tenant.menu)
    .filter(([k]) => k.length === 1)
    .sort(([ka, a], [kb, b]) => rank(ka, a) - rank(kb, b));
}

/** "If this is an emergency, press 9. For appointments, press 1. To hear these options again, press star." */
export function menuPrompt(tenant: Tenant): string {
  const parts: string[] = [];
  if (!Object.hasOwn(tenant.menu, tenant.emergency.digit)) {
    parts.push(`${LINES.emergencyOffer}, press ${spokenKey(tenant.emergency.digit)}.`);
  }
  for (const [key, item] of menuEntries(tenant)) {
    const label = item.label.trim();
    const lead = /^to\s/i.test(label) ? label.charAt(0).toUpperCase() + label.slice(1) : `For ${label}`;
    parts.push(`${lead}, press ${spokenKey(key)}.`);
  }
  return parts.join(' ');
}

/** <Gather> with the prompt, then a <Redirect> that counts this prompt as failed if no key comes. */
function appendMenu(r: VoiceResponse, tenant: Tenant, baseUrl: string, attempt: number): void {
  const url = dtmfUrl(baseUrl, attempt);
  const gather = r.gather({ input: ['dtmf'], numDigits: 1, timeout: GATHER_TIMEOUT_SECONDS, action: url, method: 'POST' });
  say(gather, menuPrompt(tenant), tenant);
  r.redirect({ method: 'POST' }, url);
}

export function menuTwiml(tenant: Tenant, opts: { baseUrl: string; attempt: number; sayFirst?: string }): string {
  const r = newResponse();
  if (opts.sayFirst) say(r, opts.sayFirst, tenant);
  appendMenu(r, tenant, opts.baseUrl, opts.attempt);
  return r.toString();
}

// ---------- call entry ----------

export interface StreamTwimlOptions {
  /** `wss://…/twilio/ws`, no query string (Twilio drops it or fails the handshake: 31920). */
  wsUrl: string;
  /** The call's stream token: appended as the last path segment, `wss://…/twilio/ws/<token>`. */
  streamToken: string;
  statusCallbackUrl: string;
  /** Per-call data travels in <Parameter>, returned in `start.customParameters`. */
  parameters: { tenantId: string };
  /** Runs only if the stream dies unexpectedly: the tenant's DTMF menu. */
  fallback: { tenant: Tenant; baseUrl: string };
}

/** `<Connect><Stream>` (the only bidirectional form), then the fallback menu after `</Connect>`. */
export function streamTwiml(opts: StreamTwimlOptions): string {
  if (opts.wsUrl.includes('?')) throw new Error('stream URL must not carry a query string');
  if (!/^[A-Za-z0-9._-]+$/.test(opts.streamToken)) throw new Error('stream token must be one URL path segment');
  const r = newResponse();
  const url = `${opts.wsUrl}/${opts.streamToken}`;
  const stream = r.connect().stream({ url, statusCallback: opts.statusCallbackUrl, statusCallbackMethod: 'POST' });
  stream.parameter({ name: 'tenantId', value: opts.parameters.tenantId });
  say(r, LINES.streamFailed, opts.fallback.tenant);
  appendMenu(r, opts.fallback.tenant, opts.fallback.baseUrl, 1);
  return r.toString();
}

/** Unknown `To`: neutral, reveals nothing about which clinics exist (F16). */
export function notInServiceTwiml(): string {
  const r = newResponse();
  say(r, LINES.notInService, null);
  r.hangup();
  return r.toString();
}

export function hangupTwiml(): string {
  const r = newResponse();
  r.hangup();
  return r.toString();
}

/** No tenant context and nothing else to offer (e.g. the voice handler timed out before lookup). */
export function unavailableTwiml(): string {
  const r = newResponse();
  say(r, LINES.unavailable, null);
  r.hangup();
  return r.toString();
}

// ---------- dialling a human ----------

export interface DialSpec {
  number: string;
  callerId: string | null;
  ringSeconds: number;
  /** Absolute URL that receives DialCallStatus. */
  actionUrl: string;
  sayFirst?: string;
  tenant?: Tenant;
}

function appendDial(r: VoiceResponse, spec: DialSpec): void {
  if (spec.sayFirst) say(r, spec.sayFirst, spec.tenant ?? null);
  const attrs: VoiceResponse.DialAttributes = { timeout: spec.ringSeconds, action: spec.actionUrl, method: 'POST' };
  if (spec.callerId) attrs.callerId = spec.callerId;
  r.dial(attrs).number(spec.number);
}

export function dialTwiml(spec: DialSpec): string {
  const r = newResponse();
  appendDial(r, spec);
  return r.toString();
}

const frontDesk = (tenant: Tenant, ctx: TwimlContext, sayFirst: string, lastResort = false): DialSpec => ({
  number: tenant.transfer.frontDesk,
  callerId: ctx.callerId,
  ringSeconds: tenant.transfer.ringSeconds,
  actionUrl: dialActionUrl(ctx.baseUrl, lastResort),
  sayFirst,
  tenant,
});

/** Draining or at capacity: no stream, straight to the front desk (never a 429/5xx, F16). */
export function busyTwiml(tenant: Tenant, ctx: TwimlContext): string {
  return dialTwiml(frontDesk(tenant, ctx, LINES.busy));
}

/**
 * A caller over the clinic's per-caller limits (docs/configuration.md "Limits"): never the
 * assistant, never a dead line. Open: the front desk. Closed: the key menu (its emergency key and
 * options), which ends at the front desk after MENU_MAX_ATTEMPTS prompts like any fallback menu.
 */
export function callerLimitedTwiml(tenant: Tenant, ctx: TwimlContext, openNow: boolean): string {
  if (openNow) return dialTwiml(frontDesk(tenant, ctx, LINES.busy));
  return menuTwiml(tenant, { baseUrl: ctx.baseUrl, attempt: 1, sayFirst: LINES.assistantUnavailable });
}

function emergencyTwiml(tenant: Tenant, ctx: TwimlContext): string {
  const r = newResponse();
  const script = tenant.emergency.script;
  const line = tenant.transfer.emergency;
  if (line) {
    appendDial(r, { number: line, callerId: ctx.callerId, ringSeconds: tenant.transfer.ringSeconds,
      actionUrl: dialActionUrl(ctx.baseUrl), sayFirst: script, tenant });
  } else {
    // No emergency line: the script is all we can give, so say it twice before hanging up.
    say(r, script, tenant);
    say(r, script, tenant);
    r.hangup();
  }
  return r.toString();
}

function goodbyeTwiml(tenant: Tenant): string {
  const r = newResponse();
  say(r, `Thank you for calling ${tenant.name}. Goodbye.`, tenant);
  r.hangup();
  return r.toString();
}

/** The action a key maps to in the fallback menu, or null. The emergency digit works even if unlisted. */
export function menuActionFor(tenant: Tenant, digits: string | null): MenuAction | null {
  if (digits === null || !/^[0-9*#]$/.test(digits)) return null;
  const item = Object.hasOwn(tenant.menu, digits) ? tenant.menu[digits] : undefined;
  if (item) return item;
  return digits === tenant.emergency.digit ? { action: 'emergency', label: 'an emergency' } : null;
}

/**
 * `/twilio/dtmf`. `attempt` is the number of the prompt that was just played (0 = none yet, e.g. a
 * REST update pointing a live call at the menu). No or unknown key → menu again; after
 * MENU_MAX_ATTEMPTS failed prompts → goodbye line and the front desk.
 */
export function menuResultTwiml(tenant: Tenant, input: { digits: string | null; attempt: number }, ctx: TwimlContext): string {
  const item = menuActionFor(tenant, input.digits);
  if (!item) {
    if (input.attempt >= MENU_MAX_ATTEMPTS) return dialTwiml(frontDesk(tenant, ctx, LINES.lastResort, true));
    return menuTwiml(tenant, { baseUrl: ctx.baseUrl, attempt: input.attempt + 1 });
  }
  switch (item.action) {
    case 'transfer':
      if (item.target === 'emergency' && !tenant.transfer.emergency) return emergencyTwiml(tenant, ctx);
      return dialTwiml({
        ...frontDesk(tenant, ctx, `Connecting you to ${item.label}. Please hold.`),
        number: item.target === 'emergency' && tenant.transfer.emergency ? tenant.transfer.emergency : tenant.transfer.frontDesk,
      });
    case 'emergency':
      return emergencyTwiml(tenant, ctx);
    case 'repeat':
      return menuTwiml(tenant, { baseUrl: ctx.baseUrl, attempt: 1 });
    case 'hangup':
      return goodbyeTwiml(tenant);
    case 'agent':
      // No receptionist without the stream: whatever the key meant, a person handles it.
      return dialTwiml(frontDesk(tenant, ctx, 'Connecting you to the front desk. Please hold.'));
  }
}

/**
 * `/twilio/dial` (the <Dial action>). Connected → hang up. Otherwise apologise and offer the menu,
 * so the caller never sits in silence; after the last-resort dial, apologise and say goodbye.
 */
export function dialResultTwiml(tenant: Tenant, input: { dialStatus: string; lastResort: boolean }, ctx: TwimlContext): string {
  if (input.dialStatus === 'completed' || input.dialStatus === 'answered') return hangupTwiml();
  if (input.lastResort) {
    const r = newResponse();
    say(r, `${LINES.noAnswer} ${LINES.tryLater}`, tenant);
    r.hangup();
    return r.toString();
  }
  return menuTwiml(tenant, { baseUrl: ctx.baseUrl, attempt: 1, sayFirst: LINES.noAnswer });
}
