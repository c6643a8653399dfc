import type { AddressInfo } from 'node:net';
import type { CacheIndexApi } from '../cache/cache-index.ts';
import type { FillLease } from '../cache/fill-lease.ts';
import type { Config } from '../config/index.ts';
import { diffConfig, effectiveAfterReload, type ConfigChange } from '../config/reload.ts';
import { createImageCache, type CacheStats, type ImageCache } from '../image-cache.ts';
import '../image/sharp-setup.ts'; // libvips settings of a serving process
import type { Logger } from '../log.ts';
import { createClientAddressResolver } from './client-address.ts';
import { createFrontDoor, type FrontDoorSettings } from './front-door.ts';
import { startServer, type RunningServer, type ServerLimits } from './http-server.ts';
import { ImageCacheSlot } from './image-cache-slot.ts';
import type { Metrics } from './metrics.ts';
import { OriginHealth } from './origin-health.ts';
import { createClientRateLimiter, type ClientRateLimiter, type RateLimitStore } from './rate-limit.ts';
import { Readiness, type IndexState } from './readiness.ts';
import { validateForReload } from './reload-validation.ts';
import { registerRedisMetrics } from './redis-metrics.ts';

export type ReloadOutcome =
  | { outcome: 'applied'; changes: ConfigChange[]; restartNeeded: string[] }
  | { outcome: 'refused'; reason: string };

export type PurgeTarget = { sourceUrl: string } | { all: true };

export interface ServiceStats {
  pid: number;
  uptimeSeconds: number;
  cache: CacheStats;
  /** Origin hosts whose circuit breaker is open or half-open. */
  unhealthyOrigins: Array<{ host: string; state: string }>;
}

export interface ProxyServiceOptions {
  /** A validated configuration to start with. */
  config: Config;
  logger: Logger;
  metrics: Metrics;
  /** Re-reads the configuration (same file, environment and flags as at start) for a reload. */
  loadConfig?: () => Config;
  /** Where rate limit counters live: this process, or the cluster primary. */
  rateLimitStore?: RateLimitStore;
  /** What /metrics on the main listener answers (in a cluster: the sum over workers); this process's metrics by default. */
  exposition?: () => Promise<{ contentType: string; body: string }>;
  /** State of the cache index, for /readyz. */
  indexState?: () => IndexState;
  /** Environment for credential values (process.env by default). */
  env?: Record<string, string | undefined>;
  /** A cache index owned elsewhere (the cluster primary); each ImageCache keeps its own by default. */
  cacheIndex?: CacheIndexApi;
  /** Fill leases shared with the other workers (the cluster primary's); in-process single-flight only by default. */
  fillLease?: FillLease;
  /** Settings that need a restart here besides the usual ones (with workers: the index's directory and limits). */
  restartSettings?: readonly string[];
}

/** How long after listening a server loads what only misses need (see ImageCache.warmUp). */
const WARM_UP_DELAY_MS = 500;

function limitsOf(config: Config): ServerLimits {
  return {
    headersTimeoutMs: config.server.headersTimeoutMs,
    requestTimeoutMs: config.server.requestTimeoutMs,
    idleTimeoutMs: config.server.idleTimeoutMs,
    maxHeaderBytes: config.server.maxHeaderBytes,
  };
}

/**
 * One serving process: the main listener (front door + image handler), the
 * live ImageCache (swapped on reload), readiness and graceful shutdown. The
 * admin listener and signals are wired around it by the CLI.
 */
export class ProxyService {
  readonly readiness: Readiness;
  readonly #options: ProxyServiceOptions;
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #env: Record<string, string | undefined>;
  readonly #endpoints: Array<{ address: string; port: number }> = [];
  readonly #health = new Map<ImageCache, OriginHealth>();
  readonly #started = Date.now();
  #config: Config;
  #slot!: ImageCacheSlot;
  #front!: FrontDoorSettings;
  #server!: RunningServer;
  #reloading: Promise<unknown> = Promise.resolve();
  #warmUp: NodeJS.Timeout | undefined;

  private constructor(options: ProxyServiceOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#env = options.env ?? process.env;
    this.#config = options.config;
    this.readiness = new Readiness({
      cacheDir: () => this.#config.cacheDir,
      indexState: options.indexState ?? (async () => ((await this.#slot.current.stats()).indexReady ? 'loaded' : 'loading')),
      redis: () => this.#slot.current.redisHealth(),
    });
  }

  static async start(options: ProxyServiceOptions): Promise<ProxyService> {
    const service = new ProxyService(options);
    await service.#start();
    return service;
  }

  get url(): string {
    return this.#server.url;
  }

  get address(): AddressInfo {
    return this.#server.address;
  }

  /** The configuration in effect now. */
  get config(): Config {
    return this.#config;
  }

  get imageCache(): ImageCache {
    return this.#slot.current;
  }

  async #start(): Promise<void> {
    const config = this.#config;
    const imageCache = await this.#build(config);
    this.#slot = new ImageCacheSlot(imageCache, this.#logger);
    this.#front = this.#frontSettings(config, imageCache);
    registerRedisMetrics(this.#metrics.registry, () => this.#slot.current.redisHealth());
    this.#metrics.setCacheSizeSource(memoize(() => this.#slot.current.stats(), 5_000));
    const handler = createFrontDoor({
      settings: () => this.#front,
      metrics: this.#metrics,
      readiness: this.readiness,
      exposition: this.#options.exposition ?? (() => this.#metrics.exposition()),
      logger: this.#logger,
    });
    try {
      this.#server = await startServer(handler, config.host, config.port, limitsOf(config));
    } catch (err) {
      await this.#slot.close();
      throw err;
    }
    this.#endpoints.push({ address: this.#server.address.address, port: this.#server.address.port });
    // Listening: what misses alone need (the origin HTTP client) loads a moment later, so that a restart answers
    // the hits that arrive first without waiting for it (a miss before then loads it itself).
    this.#warmUp = setTimeout(() => {
      imageCache.warmUp().catch((err: unknown) => {
        this.#logger.warn({ err }, 'loading the origin HTTP client failed; the first miss tries again');
      });
    }, WARM_UP_DELAY_MS);
    this.#warmUp.unref();
  }

  async #build(config: Config): Promise<ImageCache> {
    const health = new OriginHealth(this.#metrics);
    const imageCache = await createImageCache({
      config,
      logger: this.#logger,
      env: this.#env,
      selfEndpoints: () => this.#endpoints,
      originObserver: health,
      ...(this.#options.cacheIndex ? { cacheIndex: this.#options.cacheIndex } : {}),
      ...(this.#options.fillLease ? { fillLease: this.#options.fillLease } : {}),
    });
    this.#health.set(imageCache, health);
    return imageCache;
  }

  #frontSettings(config: Config, imageCache: ImageCache): FrontDoorSettings {
    return {
      handler: (req, res) => { this.#slot.handle(req, res); },
      rateLimiter: this.#clientRateLimiter(config, imageCache),
      clientAddress: createClientAddressResolver(config.trustedProxies),
      maxUrlLength: config.server.maxUrlLength,
      metricsOnMainListener: config.metrics.onMainListener,
    };
  }

  /** With redis.url, limits count across all nodes (the workers' shared count in the primary while Redis is away). */
  #clientRateLimiter(config: Config, imageCache: ImageCache): ClientRateLimiter | undefined {
    const redis = imageCache.sharedRateLimiter(config.rateLimit, 'clients');
    return createClientRateLimiter(config.rateLimit, this.#logger, {
      store: this.#options.rateLimitStore ?? 'memory',
      shared: redis && ((clientKey, points) => redis.consume(clientKey, points)),
    });
  }

  /** Re-reads and validates the configuration, then applies it; a bad one is refused and nothing changes. */
  async reload(): Promise<ReloadOutcome> {
    const load = this.#options.loadConfig;
    if (!load) return { outcome: 'refused', reason: 'this server was not started from a configuration that can be re-read' };
    let loaded: Config;
    try {
      loaded = validateForReload(load, this.#env);
    } catch (err) {
      return this.#refused(err);
    }
    return this.apply(loaded);
  }

  /**
   * Applies an already-validated configuration: a new ImageCache for new
   * requests (in-flight ones finish on the old), new limits, new rate limiter.
   * Settings that need a restart keep their running values and are reported.
   */
  apply(loaded: Config): Promise<ReloadOutcome> {
    // One reload at a time: two racing swaps could leave an ImageCache unclosed.
    const run = this.#reloading.then(() => this.#apply(loaded));
    this.#reloading = run.catch(() => {});
    return run;
  }

  async #apply(loaded: Config): Promise<ReloadOutcome> {
    const { config, restartNeeded } = effectiveAfterReload(this.#config, loaded, this.#options.restartSettings);
    const changes = diffConfig(this.#config, loaded);
    let next: ImageCache;
    try {
      next = await this.#build(config);
    } catch (err) {
      return this.#refused(err);
    }
    const previous = this.#slot.current;
    this.#config = config;
    this.#front = this.#frontSettings(config, next);
    this.#server.applyLimits(limitsOf(config));
    this.#logger.level = config.logLevel;
    const previousClosed = this.#slot.swap(next);
    // Once the swapped-out ImageCache has closed, its breakers stop counting.
    void previousClosed.then(() => {
      this.#health.get(previous)?.dispose();
      this.#health.delete(previous);
    });
    this.#logger.info({ changes: changes.map((c) => c.setting), restartNeeded }, 'configuration reloaded');
    if (restartNeeded.length > 0) {
      this.#logger.warn({ restartNeeded }, 'some changed settings take effect only after a restart');
    }
    return { outcome: 'applied', changes, restartNeeded };
  }

  #refused(err: unknown): ReloadOutcome {
    const reason = err instanceof Error ? err.message : String(err);
    this.#logger.error({ reason }, 'configuration reload refused; the running configuration stays');
    return { outcome: 'refused', reason };
  }

  async stats(): Promise<ServiceStats> {
    const imageCache = this.#slot.current;
    return {
      pid: process.pid,
      uptimeSeconds: Math.round((Date.now() - this.#started) / 1000),
      cache: await imageCache.stats(),
      unhealthyOrigins: this.#health.get(imageCache)?.unhealthy() ?? [],
    };
  }

  /** Removes one source's cached entries, or everything. */
  async purge(target: PurgeTarget): Promise<{ removed: number | 'all' }> {
    const imageCache = this.#slot.current;
    if ('all' in target) {
      await imageCache.purgeAll();
      return { removed: 'all' };
    }
    return { removed: await imageCache.purge(target.sourceUrl) };
  }

  /**
   * Graceful stop: /readyz turns 503, the listener stops accepting, in-flight
   * requests get up to `graceMs` to finish, then the ImageCache closes.
   */
  async shutdown(graceMs = this.#config.server.shutdownGraceMs): Promise<void> {
    clearTimeout(this.#warmUp);
    this.readiness.markShuttingDown();
    await this.#server.close(graceMs);
    await this.#slot.close();
    for (const health of this.#health.values()) health.dispose();
    this.#health.clear();
  }
}

/** Caches an async result for `ttlMs`: one scrape reads several gauges, and with workers each read is an IPC call. */
function memoize<T>(fn: () => Promise<T>, ttlMs: number): () => Promise<T> {
  let value: Promise<T> | undefined;
  let at = 0;
  return () => {
    const now = Date.now();
    if (value === undefined || now - at > ttlMs) {
      at = now;
      value = fn();
      value.catch(() => {
        value = undefined;
      });
    }
    return value;
  };
}
