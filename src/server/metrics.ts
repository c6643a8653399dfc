import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

const PREFIX = 'fastimagecache_';
/**
 * prom-client samples event-loop delay with a timer at this interval (its
 * default, 10 ms, wakes every idle process 100 times a second; a wakeup
 * costs 50-150 µs of CPU on a small VM, so 1-1.5 % of a core per process).
 * The lag percentiles still come from 10 samples a second.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/** What a scrape needs to know about the cache; set by whoever owns the cache. */
export interface CacheSizeSource {
  (): Promise<{ entries: number; bytes: number; evictions?: number } | undefined>;
}

/** Circuit breaker states, as labelled in the metrics. */
export type BreakerState = 'closed' | 'open' | 'half_open';

/**
 * The Prometheus metrics of one process, on a registry of its own (not the
 * global one: several instances may live in one process, e.g. in tests).
 * In a cluster, each worker has one and the primary sums them on scrape.
 */
export class Metrics {
  readonly registry = new Registry();
  #cacheSize: CacheSizeSource | undefined;
  /** Label children of the per-response counters, by label values: prom-client hashes labels on every inc() otherwise. */
  readonly #responseCounters = new Map<string, { requests: Counter.Internal; bytes: Counter.Internal }>();
  readonly #cacheResultCounters = new Map<string, Counter.Internal>();

  readonly httpRequests = new Counter({
    name: `${PREFIX}http_requests_total`,
    help: 'HTTP requests answered, by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly bytesServed = new Counter({
    name: `${PREFIX}http_response_bytes_total`,
    help: 'Response body bytes sent, by route',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly cacheResults = new Counter({
    name: `${PREFIX}cache_results_total`,
    help: 'Image responses by cache result (hit, miss, stale, revalidated)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  /** One answered request: its route and status, its body bytes (0 for none) and, for images, the cache result. */
  countResponse(route: string, status: number, bytes: number, cacheResult: string | undefined): void {
    const key = `${route} ${status}`;
    let counters = this.#responseCounters.get(key);
    if (counters === undefined) {
      counters = { requests: this.httpRequests.labels(route, String(status)), bytes: this.bytesServed.labels(route) };
      this.#responseCounters.set(key, counters);
    }
    counters.requests.inc();
    if (bytes > 0) counters.bytes.inc(bytes);
    if (cacheResult !== undefined) {
      let counter = this.#cacheResultCounters.get(cacheResult);
      if (counter === undefined) {
        counter = this.cacheResults.labels(cacheResult.toLowerCase());
        this.#cacheResultCounters.set(cacheResult, counter);
      }
      counter.inc();
    }
  }

  readonly originFetchDuration = new Histogram({
    name: `${PREFIX}origin_fetch_duration_seconds`,
    help: 'Time of origin fetches (queue wait excluded), by outcome',
    labelNames: ['outcome'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly originErrors = new Counter({
    name: `${PREFIX}origin_errors_total`,
    help: 'Failed origin fetches by kind (timeout, connection, status_5xx, status_4xx, not_found, too_large, denied, protocol)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly originFetchesActive = new Gauge({
    name: `${PREFIX}origin_fetches_active`,
    help: 'Origin fetches running now',
    registers: [this.registry],
  });
  readonly originQueueDepth = new Gauge({
    name: `${PREFIX}origin_queue_depth`,
    help: 'Origin fetches waiting for a free slot',
    registers: [this.registry],
  });
  readonly overloadRefusals = new Counter({
    name: `${PREFIX}overload_refusals_total`,
    help: 'Requests refused with 503 overloaded because the origin fetch queue was full, by scope (global, host)',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });
  readonly rateLimitRefusals = new Counter({
    name: `${PREFIX}rate_limit_refusals_total`,
    help: 'Requests refused with 429 rate_limited, by listener',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly circuitBreakers = new Gauge({
    name: `${PREFIX}circuit_breakers`,
    help: 'Origin hosts whose circuit breaker is open or half-open now, by state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly circuitBreakerTransitions = new Counter({
    name: `${PREFIX}circuit_breaker_transitions_total`,
    help: 'Circuit breaker state changes, by new state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly circuitBreakerRefusals = new Counter({
    name: `${PREFIX}circuit_breaker_refusals_total`,
    help: 'Requests refused with 503 origin_unavailable because the origin host breaker was open',
    registers: [this.registry],
  });
  #evictionsSeen = 0;
  readonly evictions = new Counter({
    name: `${PREFIX}cache_evictions_total`,
    help: 'Cache entries evicted to keep the cache within its limits',
    // One index evicts for the whole cache directory: every worker reports the same count.
    aggregator: 'max',
    registers: [this.registry],
    collect: async () => {
      const total = (await this.#readCacheSize())?.evictions;
      if (total === undefined) return;
      // The index counts since its own start; a new one (reload) starts again from 0.
      if (total > this.#evictionsSeen) this.evictions.inc(total - this.#evictionsSeen);
      this.#evictionsSeen = total;
    },
  });
  readonly cacheBytes = new Gauge({
    name: `${PREFIX}cache_bytes`,
    help: 'Bytes in the cache directory (entries, metadata included)',
    // Workers share one cache directory: the same number from each, not a sum.
    aggregator: 'max',
    registers: [this.registry],
    collect: async () => {
      const size = await this.#readCacheSize();
      if (size) this.cacheBytes.set(size.bytes);
    },
  });
  readonly cacheEntries = new Gauge({
    name: `${PREFIX}cache_entries`,
    help: 'Entries in the cache',
    aggregator: 'max',
    registers: [this.registry],
    collect: async () => {
      const size = await this.#readCacheSize();
      if (size) this.cacheEntries.set(size.entries);
    },
  });
  readonly configReloads = new Counter({
    name: `${PREFIX}config_reloads_total`,
    help: 'Configuration reloads, by outcome (applied, refused)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly adminAuthFailures = new Counter({
    name: `${PREFIX}admin_auth_failures_total`,
    help: 'Admin API requests with a missing or wrong token',
    registers: [this.registry],
  });
  readonly workerRestarts = new Counter({
    name: `${PREFIX}worker_restarts_total`,
    help: 'Worker processes that died and were replaced',
    registers: [this.registry],
  });

  constructor(options: { processMetrics?: boolean } = {}) {
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: PREFIX, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
    // Both states are always present, so "0 open" is visible rather than absent.
    this.circuitBreakers.set({ state: 'open' }, 0);
    this.circuitBreakers.set({ state: 'half_open' }, 0);
  }

  /** Where scrapes read the cache size from (the live image cache, or the cache index). */
  setCacheSizeSource(source: CacheSizeSource | undefined): void {
    this.#cacheSize = source;
  }

  /** One breaker moved from `from` to `to`: keeps the open/half-open gauges and the transition count. */
  breakerChanged(from: BreakerState, to: BreakerState): void {
    if (from !== 'closed') this.circuitBreakers.dec({ state: from });
    if (to !== 'closed') this.circuitBreakers.inc({ state: to });
    this.circuitBreakerTransitions.inc({ state: to });
  }

  /** A breaker that was not closed is gone (its generation retired): no longer counted, no transition. */
  breakerForgotten(state: BreakerState): void {
    if (state !== 'closed') this.circuitBreakers.dec({ state });
  }

  async #readCacheSize(): Promise<{ entries: number; bytes: number; evictions?: number } | undefined> {
    try {
      return await this.#cacheSize?.();
    } catch {
      return undefined; // a scrape must not fail because the cache could not be measured
    }
  }

  /** This process's metrics as JSON, for the cluster primary to aggregate. */
  async snapshot(): Promise<MetricSnapshot> {
    return this.registry.getMetricsAsJSON();
  }

  /** Text exposition of this process alone. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

export type MetricSnapshot = Array<MetricObjectWithValues<MetricValue<string>>>;

/** Several processes' snapshots as one exposition: counters summed, gauges per their aggregator. */
export async function aggregateExposition(snapshots: MetricSnapshot[]): Promise<{ contentType: string; body: string }> {
  const registry = AggregatorRegistry.aggregate(snapshots);
  return { contentType: registry.contentType, body: await registry.metrics() };
}

const ADMIN_ROUTES = new Set(['/admin/stats', '/admin/purge', '/admin/config', '/admin/reload']);

/** The route label of a request path: a fixed small set, so labels cannot explode. */
export function routeLabel(pathname: string): string {
  if (pathname.startsWith('/i/')) return 'image';
  if (pathname === '/') return 'index';
  if (pathname === '/healthz') return 'healthz';
  if (pathname === '/readyz') return 'readyz';
  if (pathname === '/metrics') return 'metrics';
  if (ADMIN_ROUTES.has(pathname)) return pathname.slice(1).replace('/', '_');
  return 'other';
}
