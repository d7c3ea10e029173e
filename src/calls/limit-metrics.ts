/**
 * Metrics of the cost and abuse bounds (docs/operations.md "Metrics"), in the style of
 * src/metrics.ts: read at scrape time from the running totals of the per-caller limits and the
 * daily provider budgets. Labels: the clinic id and fixed sets only, never a caller.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { CallerLimits } from './caller-limits.js';
import type { ProviderBudget } from './provider-budget.js';

export function registerLimitMetrics(register: Registry, parts: { callers: CallerLimits; budget: ProviderBudget }): void {
  const registers = [register];
  const { callers, budget } = parts;
  new Counter({
    name: 'vetline_caller_limited_total',
    help: 'Calls kept from the assistant by a per-caller limit (concurrent or hourly); each went to the front desk or the key menu.',
    labelNames: ['clinic', 'limit'],
    registers,
    collect() {
      this.reset();
      for (const [clinic, counts] of callers.refused) for (const [limit, n] of counts) this.inc({ clinic, limit }, n);
    },
  });
  new Gauge({
    name: 'vetline_provider_budget_used_ratio',
    help: "Share of the clinic's daily provider budget used today (UTC), by kind: agentTokens, ttsCharacters, sttSeconds. 1 or more: new calls use the embedded providers.",
    labelNames: ['clinic', 'kind'],
    registers,
    collect() {
      for (const { clinic, kind, ratio } of budget.ratios()) this.set({ clinic, kind }, ratio);
    },
  });
  new Counter({
    name: 'vetline_provider_budget_embedded_calls_total',
    help: "Calls that ran on the embedded providers because their clinic's daily provider budget was used up.",
    labelNames: ['clinic'],
    registers,
    collect() {
      this.reset();
      for (const [clinic, n] of budget.embeddedCalls) this.inc({ clinic }, n);
    },
  });
}
