/**
 * Prometheus metrics of the shared state (REDIS_URL only; docs/operations.md "Metrics"): whether
 * this process's Redis connection is up, and the live-update and directory failures it absorbed.
 */
import { Gauge, type Registry } from 'prom-client';

export function registerSharedMetrics(register: Registry, shared: { connected(): boolean }): void {
  new Gauge({
    name: 'vetline_redis_connected',
    help: 'Whether the connection to the Redis in REDIS_URL is up (1) or not (0); with WORKERS, the lowest of the workers.',
    registers: [register],
    // Summing over workers would hide one cut off: the cluster aggregate is the minimum.
    aggregator: 'min',
    collect() {
      this.set(shared.connected() ? 1 : 0);
    },
  });
}
