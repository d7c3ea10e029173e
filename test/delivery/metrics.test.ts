import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { registerDeliveryMetrics } from '../../src/delivery/metrics.js';
import type { DeliveryStats } from '../../src/delivery/outbox.js';

describe('vetline_deliveries_total', () => {
  it('exposes the outbox totals by channel and result at scrape time', async () => {
    const register = new Registry();
    const stats: DeliveryStats = {
      delivered: 3,
      retried: 2,
      failed: 1,
      byChannel: { webhook: { delivered: 2, retried: 2, failed: 0 }, email: { delivered: 1, retried: 0, failed: 1 }, sms: { delivered: 0, retried: 0, failed: 0 } },
    };
    registerDeliveryMetrics(register, { stats: () => stats });
    const text = await register.metrics();
    expect(text).toContain('# TYPE vetline_deliveries_total counter');
    expect(text).toContain('vetline_deliveries_total{channel="webhook",result="delivered"} 2');
    expect(text).toContain('vetline_deliveries_total{channel="webhook",result="retried"} 2');
    expect(text).toContain('vetline_deliveries_total{channel="email",result="failed"} 1');
    expect(text).toContain('vetline_deliveries_total{channel="sms",result="delivered"} 0');
    stats.byChannel.sms.delivered = 5;
    expect(await register.metrics()).toContain('vetline_deliveries_total{channel="sms",result="delivered"} 5');
  });
});
