/**
 * The per-clinic daily provider budget (`limits.dailyProviderBudget`; docs/providers.md "Daily
 * budget"): what each clinic's calls used today (UTC) from the cloud receptionist (tokens), the cloud
 * voice (characters) and the cloud recognizer (seconds of caller speech). One warning log line when
 * any reaches 80 %, one more at 100 %; from then on the clinic's new calls use the embedded
 * providers until midnight UTC (calls already running carry on). Usage of embedded providers costs
 * nothing and is not counted.
 *
 * In memory, per process: a restart starts the day at zero, and with several instances each keeps
 * its own count (a clinic may use up to one budget per instance).
 */
import type { Logger } from 'pino';
import type { CallEvent } from '../../machines/call/call.types.js';
import type { Tenant } from '../config/tenant.schema.js';
import type { Providers } from '../providers/types.js';
import type { ProviderUsage } from './child-actors.js';

export const BUDGET_KINDS = ['agentTokens', 'ttsCharacters', 'sttSeconds'] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

/** A warning is logged once a clinic has used this share of any of its budgets. */
export const BUDGET_WARN_RATIO = 0.8;
const DAY_MS = 24 * 60 * 60 * 1000;

interface ClinicDay {
  used: Record<BudgetKind, number>;
  warned: boolean;
  exhausted: boolean;
}

type ProviderSet = Pick<Providers, 'stt' | 'tts' | 'agent'>;

/** One call's providers and its billing (ProviderBudget.forCall). */
export interface BudgetedCall {
  set: ProviderSet;
  /** The clinic's budget was used up when the call started: `set` is the embedded providers. */
  overBudget: boolean;
  /** Tokens or characters a provider reported (child-actors.ts `usage`). */
  usage(usage: ProviderUsage): void;
  /** A child actor's event: the end of a caller speech segment is recognizer time. */
  event(event: CallEvent): void;
}

export class ProviderBudget {
  private day: number;
  private readonly clinics = new Map<string, ClinicDay>();
  /** Calls started on the embedded providers because their clinic's budget was used up, per clinic (all days). */
  readonly embeddedCalls = new Map<string, number>();

  constructor(private readonly opts: { tenants: readonly Tenant[]; logger: Logger; now?: () => number }) {
    this.day = this.today();
  }

  /** The clinic has used up one of today's budgets: new calls go to the embedded providers. */
  exhausted(tenant: Tenant): boolean {
    return this.clinic(tenant.id).exhausted;
  }

  /** Billable usage of one of the clinic's calls. */
  add(tenant: Tenant, kind: BudgetKind, amount: number): void {
    if (!(amount > 0)) return;
    const day = this.clinic(tenant.id);
    day.used[kind] += amount;
    const limit = tenant.limits.dailyProviderBudget[kind];
    const ratio = day.used[kind] / limit;
    const fields = { tenantId: tenant.id, kind, used: Math.round(day.used[kind]), limit, percent: Math.floor(ratio * 100) };
    if (ratio >= BUDGET_WARN_RATIO && !day.warned) {
      day.warned = true;
      this.opts.logger.warn(fields, 'daily provider budget 80 % used');
    }
    if (ratio >= 1 && !day.exhausted) {
      day.exhausted = true;
      this.opts.logger.warn(fields, "daily provider budget used up: the clinic's new calls use the embedded providers until 00:00 UTC");
    }
  }

  /** Today's share of each budget per clinic (0 for clinics without usage), for the metric. */
  ratios(): { clinic: string; kind: BudgetKind; ratio: number }[] {
    return this.opts.tenants.flatMap((t) => {
      const day = this.clinic(t.id);
      return BUDGET_KINDS.map((kind) => ({ clinic: t.id, kind, ratio: day.used[kind] / t.limits.dailyProviderBudget[kind] }));
    });
  }

  /**
   * The providers a call of `tenant` runs with: the clinic's own, or the embedded ones once its
   * budget is used up; and `bill`, which counts the call's usage for the kinds a cloud provider serves.
   */
  forCall(tenant: Tenant, providers: Providers): BudgetedCall {
    const chosen = providers.select?.(tenant) ?? providers;
    const embedded = providers.embedded;
    const overBudget = embedded !== undefined && this.exhausted(tenant);
    if (overBudget) this.embeddedCalls.set(tenant.id, (this.embeddedCalls.get(tenant.id) ?? 0) + 1);
    const set = overBudget ? embedded : chosen;
    const billed: Record<BudgetKind, boolean> = {
      agentTokens: set.agent !== embedded?.agent,
      ttsCharacters: set.tts !== embedded?.tts,
      sttSeconds: set.stt !== embedded?.stt,
    };
    const bill = (kind: BudgetKind, amount: number) => {
      if (billed[kind]) this.add(tenant, kind, amount);
    };
    return {
      set,
      overBudget,
      usage: (u) => (u.kind === 'agent' ? bill('agentTokens', u.inputTokens + u.outputTokens) : bill('ttsCharacters', u.characters)),
      event: (e) => {
        if (e.type === 'vad.speechEnd') bill('sttSeconds', e.speechMs / 1000);
      },
    };
  }

  private clinic(id: string): ClinicDay {
    const today = this.today();
    if (today !== this.day) {
      this.day = today;
      this.clinics.clear();
    }
    let day = this.clinics.get(id);
    if (!day) this.clinics.set(id, (day = { used: { agentTokens: 0, ttsCharacters: 0, sttSeconds: 0 }, warned: false, exhausted: false }));
    return day;
  }

  private today(): number {
    return Math.floor((this.opts.now ?? Date.now)() / DAY_MS);
  }
}
