import { Gauge, type Registry } from 'prom-client';

/** What a scrape needs to know about this process's Redis link; undefined when Redis is not configured. */
export interface RedisHealthSource {
  (): { state: 'connecting' | 'up' | 'degraded' | 'down'; failedCommands: number; resubscriptions: number } | undefined;
}

const STATES = ['connecting', 'up', 'degraded', 'down'] as const;

/**
 * Redis gauges on `registry`, read from `source` at scrape time. Absent
 * values (Redis off) leave the gauges empty rather than reporting "down".
 */
export function registerRedisMetrics(registry: Registry, source: RedisHealthSource): void {
  new Gauge({
    name: 'fastimagecache_redis_up',
    help: 'Whether Redis (shared tier, locks, purges, shared rate limits) is in use now: 1 up, 0 down, degraded or connecting',
    // With several workers, "up" only if every one of them is.
    aggregator: 'min',
    registers: [registry],
    collect() {
      const health = source();
      if (health === undefined) return;
      this.set(health.state === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'fastimagecache_redis_state',
    help: 'Redis link state of this process (1 for the current state)',
    labelNames: ['state'] as const,
    aggregator: 'sum',
    registers: [registry],
    collect() {
      const health = source();
      if (health === undefined) return;
      for (const state of STATES) this.set({ state }, health.state === state ? 1 : 0);
    },
  });
  new Gauge({
    name: 'fastimagecache_redis_failed_commands',
    help: 'Redis commands that failed or timed out since start (each one sent its request on with local tiers only)',
    aggregator: 'sum',
    registers: [registry],
    collect() {
      const health = source();
      if (health !== undefined) this.set(health.failedCommands);
    },
  });
  new Gauge({
    name: 'fastimagecache_redis_subscriptions_established',
    help: 'Times the pub/sub subscription was (re)established since start (each one dropped the memory tier)',
    aggregator: 'sum',
    registers: [registry],
    collect() {
      const health = source();
      if (health !== undefined) this.set(health.resubscriptions);
    },
  });
}
