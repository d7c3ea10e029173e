/**
 * `vetline_deliveries_total{channel,result}` for GET /metrics, in the style of
 * src/metrics.ts: read at scrape time from the outbox's own running totals, labels
 * from fixed sets only (channel: webhook|email|sms; result: delivered|retried|failed). Kept here
 * so the engine's metrics module only has to be handed its registry.
 */
import { Counter, type Registry } from 'prom-client';
import { DELIVERY_CHANNELS, type DeliveryResultKind, type DeliveryStats } from './outbox.js';

const RESULTS: readonly DeliveryResultKind[] = ['delivered', 'retried', 'failed'];

export function registerDeliveryMetrics(register: Registry, outbox: { stats(): DeliveryStats }): void {
  new Counter({
    name: 'vetline_deliveries_total',
    help: 'Delivery attempts to clinics by channel and result: delivered, retried (failed, will be tried again) or failed (gave up).',
    labelNames: ['channel', 'result'],
    registers: [register],
    collect() {
      const stats = outbox.stats();
      this.reset();
      for (const channel of DELIVERY_CHANNELS) {
        for (const result of RESULTS) this.inc({ channel, result }, stats.byChannel[channel][result]);
      }
    },
  });
}
