/**
 * Fixed clips, pre-rendered per tenant at start-up so the engine plays them without waiting for
 * TTS: greeting, consent, the emergency check ("Is your pet in danger right now?") and its "okay", emergency script, filler, silence nudges, say-again, goodbye, transfer
 * announcement and failure, the DTMF menu, and the emergency fallback. docs/design/conversation.md wants the
 * emergency audio within 500 ms and fillers that cost nothing; only a cache gives both.
 *
 * Keyed by tenant id + clip id. Rendering runs with a concurrency limit (default 2: local TTS is
 * CPU-bound on a 2-core machine, a cloud TTS is rate-limited). A clip that fails to render fails
 * `warm()` with VET_E_PROVIDER naming the tenant and clip, so a broken voice stops start-up rather
 * than a call.
 */
import type { Tenant } from '../../config/tenant.schema.js';
import { VetError } from '../../errors.js';
import type { ClipId as MachineClipId } from '../../../machines/call/call.types.js';
import type { TtsProvider } from './types.js';

export const CLIP_IDS = [
  'greeting',
  'greetingClosed',
  'consent',
  'emergencyCheck',
  'emergencyCheckNo',
  'emergency',
  'emergencyAfterHours',
  'emergencyFallback',
  'filler',
  'stillThere',
  'stillThereHint',
  'sayAgain',
  'goodbye',
  'transfer',
  'transferFailed',
  'menu',
  'apology',
  'timeLimit',
  'timeLimitClosed',
] as const satisfies readonly MachineClipId[];
export type ClipId = (typeof CLIP_IDS)[number];
// Every clip the call machine can ask for is rendered (and nothing it cannot).
type MissingClips = Exclude<MachineClipId, ClipId>;
const _allClipsRendered: MissingClips extends never ? true : MissingClips = true;
void _allClipsRendered;

/** "+15551230000" → "5 5 5, 1 2 3, 0 0 0 0": read digit by digit, grouped, with pauses. */
export function speakablePhone(e164: string): string {
  const digits = e164.replace(/\D/g, '');
  const national = digits.length === 11 && digits.startsWith('1') ? digits.slice(1) : digits;
  const groups = national.length === 10 ? [national.slice(0, 3), national.slice(3, 6), national.slice(6)]
    : national.match(/\d{1,3}/g) ?? [];
  return groups.map((g) => g.split('').join(' ')).join(', ');
}

const spokenKey = (key: string) => key.split('').map((c) => (c === '*' ? 'star' : c === '#' ? 'pound' : c)).join(' ');
const keyRank = (key: string) => (key === '0' ? 10 : /^\d/.test(key) ? Number(key[0]) : key.startsWith('*') ? 11 : 12);

/** The text of every clip for one tenant. */
export function clipTexts(tenant: Tenant): Record<ClipId, string> {
  const entries = Object.entries(tenant.menu).sort(([a], [b]) => keyRank(a) - keyRank(b) || a.localeCompare(b));
  const frontDeskKey = entries.find(([, m]) => m.action === 'transfer' && m.target === 'frontDesk')?.[0];
  const menuLines = entries.map(([key, m]) =>
    /^to\b/i.test(m.label) ? `Press ${spokenKey(key)} ${m.label}.` : `Press ${spokenKey(key)} for ${m.label}.`);
  if (!tenant.menu[tenant.emergency.digit]) {
    menuLines.push(`If this is an emergency, press ${spokenKey(tenant.emergency.digit)}.`);
  }
  const em = tenant.transfer.emergency;
  const emergencyCall = em ? `Please call ${speakablePhone(em)} now. Again, that's ${speakablePhone(em)}. ` : '';
  return {
    greeting: tenant.greeting,
    greetingClosed: `${tenant.greeting} We're closed right now, but I can answer questions, take a message for the team, or help with an emergency.`,
    consent: tenant.consent.text,
    emergencyCheck: tenant.emergency.question,
    emergencyCheckNo: 'Okay, thank you. Please go on.',
    emergency: tenant.emergency.script,
    emergencyAfterHours: "This sounds like an emergency. We're closed right now, so I'm connecting you to the emergency line.",
    emergencyFallback: `I'm sorry, I couldn't connect you. ${emergencyCall}${tenant.emergency.script}`,
    filler: 'One moment.',
    stillThere: 'Are you still there?',
    stillThereHint: frontDeskKey
      ? `If you'd like, press ${spokenKey(frontDeskKey)} for the front desk.`
      : "If you'd like, say front desk to reach our team.",
    sayAgain: 'Sorry, could you say that again?',
    goodbye: `Thank you for calling ${tenant.name}. Goodbye.`,
    transfer: 'Connecting you to the front desk now.',
    transferFailed:
      "I'm sorry, nobody could take the call right now. " +
      (em ? `If this is an emergency, please call ${speakablePhone(em)}. ` : '') +
      'I can take a message for the team, or keep helping you myself.',
    menu: menuLines.join(' '),
    apology: "Sorry, I didn't manage that. Could you say it again, or press 0 for the front desk?",
    timeLimit: "We're near the end of the time I can spend on one call, so I'll put you through to the front desk now. They can help with anything else.",
    timeLimitClosed:
      "We're near the end of the time I can spend on one call. " +
      (em ? `If your pet needs urgent care, please call ${speakablePhone(em)}. ` : '') +
      `If you still need help, please call us back. Thank you for calling ${tenant.name}. Goodbye.`,
  };
}

export interface PromptCacheOptions {
  /** Clips rendered at the same time. Default 2. */
  concurrency?: number;
  /** Aborts rendering (e.g. shutdown during start-up). */
  signal?: AbortSignal;
}

export interface WarmResult {
  clips: number;
  ms: number;
}

export class PromptCache {
  private readonly audio = new Map<string, Uint8Array>();
  private readonly texts = new Map<string, string>();

  /** `tts`: one synthesizer for every clinic, or each clinic's own (its cloud voice). */
  constructor(private readonly tts: TtsProvider | ((tenant: Tenant) => TtsProvider), private readonly options: PromptCacheOptions = {}) {}

  /** Renders every clip of every tenant; resolves when all are cached. */
  async warm(tenants: readonly Tenant[]): Promise<WarmResult> {
    const started = performance.now();
    const jobs: Array<{ tenant: Tenant; clip: ClipId; text: string }> = [];
    for (const tenant of tenants) {
      const texts = clipTexts(tenant);
      for (const clip of CLIP_IDS) {
        this.texts.set(key(tenant.id, clip), texts[clip]);
        jobs.push({ tenant, clip, text: texts[clip] });
      }
    }
    const signal = this.options.signal ?? new AbortController().signal;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        signal.throwIfAborted();
        try {
          const tts = typeof this.tts === 'function' ? this.tts(job.tenant) : this.tts;
          this.audio.set(key(job.tenant.id, job.clip), await render(tts, job.text, job.tenant, signal));
        } catch (e) {
          if (signal.aborted) throw e;
          throw new VetError('VET_E_PROVIDER', `could not render clip "${job.clip}" for tenant "${job.tenant.id}"`, { cause: e });
        }
      }
    };
    const width = Math.max(1, Math.min(this.options.concurrency ?? 2, jobs.length));
    await Promise.all(Array.from({ length: width }, worker));
    return { clips: jobs.length, ms: Math.round(performance.now() - started) };
  }

  has(tenantId: string, clipId: ClipId): boolean {
    return this.audio.has(key(tenantId, clipId));
  }

  /** The clip's μ-law 8 kHz audio. Throws if the tenant was not warmed. */
  get(tenantId: string, clipId: ClipId): Uint8Array {
    const audio = this.audio.get(key(tenantId, clipId));
    if (!audio) throw new Error(`no pre-rendered clip "${clipId}" for tenant "${tenantId}"`);
    return audio;
  }

  /** What the clip says (for the journal, transcripts and text mode). Throws if unknown. */
  text(tenantId: string, clipId: ClipId): string {
    const text = this.texts.get(key(tenantId, clipId));
    if (text === undefined) throw new Error(`no clip text "${clipId}" for tenant "${tenantId}"`);
    return text;
  }
}

const key = (tenantId: string, clipId: ClipId) => `${tenantId}\u0000${clipId}`;

async function render(tts: TtsProvider, text: string, tenant: Tenant, signal: AbortSignal): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const { voice } = tenant;
  const options = { voice: voice.local, ...(voice.cloud ? { cloudVoice: voice.cloud } : {}), language: voice.language, signal };
  for await (const chunk of tts.synthesize(text, options)) {
    chunks.push(chunk);
    length += chunk.length;
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
