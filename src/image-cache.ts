import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { CacheManager, type CacheManagerStats, type CacheStatus, type Loader } from './cache/index.ts';
import { BoundedMemo } from './cache/bounded-memo.ts';
import type { CacheIndexApi } from './cache/cache-index.ts';
import type { FillLease } from './cache/fill-lease.ts';
import type { LoadConfigOptions } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { resolveSigningKeys, type SigningKeys } from './config/secrets.ts';
import { redisConfigured } from './config/redis-url.ts';
import { createDownloader } from './download/downloader.ts';
import type { Downloader, DownloadPolicy } from './download/types.ts';
import { checkSourceUrl } from './download/url-policy.ts';
import { credentialHeadersFor } from './download/origin-credentials.ts';
import { withResilience, type OriginObserver, type ResilienceSettings } from './download/resilience.ts';
import { resolveOriginCredentials } from './config/origin-credentials.ts';
import type { ByteReservation } from './image/byte-budget.ts';
import { ImageProcessor } from './image/processor.ts';
import { getImageVariant } from './image-request.ts';
import { formatOptionsSegment, parseOptionsSegment, type ImageOptions } from './image/options.ts';
import { assertNotExpired } from './server/options.ts';
import { silentLogger, type Logger } from './log.ts';
import { createRequestHandler } from './server/handler.ts';
import { buildImagePath } from './server/signature.ts';
import { cacheOptionsFrom, openCacheDirectory } from './cache-config.ts';
import type { RedisHealth } from './storage/redis/connection.ts';
import type { SharedRateLimiter } from './storage/redis/shared-rate-limiter.ts';

/** What an embedding app may pass: any setting, plus where else to read settings from. */
export interface ImageCacheOptions extends Omit<LoadConfigOptions, 'overrides' | 'flags'> {
  /** Settings in code (see README's configuration reference); the environment still overrides them. */
  settings?: Record<string, unknown>;
  /** A pino logger; by default the library logs nothing. */
  logger?: Logger;
  /** Already-loaded configuration (the CLI uses this); skips file and environment. */
  config?: Config;
  /** Addresses the embedding server listens on, so sources pointing there are refused as loops. */
  selfEndpoints?: () => ReadonlyArray<{ address: string; port: number }>;
  /** Told about origin fetches, queues and circuit breakers (the server's metrics). */
  originObserver?: OriginObserver;
  /** A cache index owned elsewhere (a cluster primary, over IPC); by default the cache keeps its own. */
  cacheIndex?: CacheIndexApi;
  /** Fill leases shared with other processes on the cache directory (a cluster primary's, over IPC): one origin fetch per cold source. */
  fillLease?: FillLease;
}

/**
 * Options of one image request: the URL's options as an object (`{ width: 300, format: 'webp' }`,
 * `{ preset: 'thumb' }`), plus the client's Accept header for `format: 'auto'`.
 */
export interface ImageRequestOptions extends ImageOptions {
  accept?: string | undefined;
}

/** Internal (the server's handler): an ImageResult whose body may be lent; call `release` once it is written. */
export interface LentImageResult extends ImageResult {
  release?: (() => void) | undefined;
}

export interface ImageResult {
  body: Buffer;
  /** The real type, sniffed from the bytes. */
  contentType: string;
  size: number;
  /** Strong validator from the content hash, quoted. */
  etag: string;
  cacheStatus: CacheStatus;
  /** 'Accept' when the format was negotiated from it (`format: 'auto'`): send it as the Vary header. */
  vary?: 'Accept';
  /** The body as a stream, for piping. */
  stream(): Readable;
}

/** Entries, bytes, limits, hit ratio, evictions, oldest entry… (see CacheManagerStats). */
export type CacheStats = CacheManagerStats;

export interface ImageCache {
  /** Fetch (once), verify, store and return an image; the same URL policy as the server applies. A new variant's disk write may end just after this resolves (close() waits for it). */
  get(sourceUrl: string, options?: ImageRequestOptions): Promise<ImageResult>;
  /** Removes every cached variant of a source; resolves to the number of entries removed. */
  purge(sourceUrl: string): Promise<number>;
  /** Removes everything. */
  purgeAll(): Promise<void>;
  stats(): Promise<CacheStats>;
  /** A signed `/i/...` path for a source URL, with the first configured key. */
  sign(sourceUrl: string, options?: string | ImageOptions): string;
  /**
   * Loads what the first miss needs and hits do not (the HTTP client for origins), ahead of that miss. Optional:
   * a miss loads it anyway; the server calls it once it listens, so that it listens sooner after a restart.
   */
  warmUp(): Promise<void>;
  /** A Node `(req, res)` handler serving `/`, `/healthz` and `/i/...`. */
  handler(): (req: IncomingMessage, res: ServerResponse) => void;
  close(): Promise<void>;
  /** State of the Redis link (shared tier, locks, purges) when `redis.url` is set; undefined otherwise. */
  redisHealth(): RedisHealth | undefined;
  /** Per-client limits counted in Redis across all nodes, when `redis.url` is set (perSecond > 0); undefined otherwise. */
  sharedRateLimiter(limits: { perSecond: number; burst: number }, name: string): SharedRateLimiter | undefined;
  readonly config: Readonly<Config>;
  readonly signingKeys: Readonly<SigningKeys>;
}

export function downloadPolicyFrom(config: Config, selfEndpoints?: DownloadPolicy['selfEndpoints']): DownloadPolicy {
  return {
    allowHttp: config.allowHttp,
    allowedPorts: config.allowedPorts,
    allowedHosts: config.allowedHosts,
    deniedHosts: config.deniedHosts,
    allowPrivateNetworks: config.allowPrivateNetworks,
    allowedPrivateRanges: config.allowedPrivateRanges,
    maxRedirects: config.maxRedirects,
    maxBytes: config.maxSourceBytes,
    connectTimeoutMs: config.connectTimeoutMs,
    headersTimeoutMs: config.headersTimeoutMs,
    totalTimeoutMs: config.totalTimeoutMs,
    userAgent: config.userAgent,
    originTls: config.originTls,
    ...(selfEndpoints ? { selfEndpoints } : {}),
  };
}

/** Origin fetch limits and circuit breaker, from the config. */
export function resilienceSettingsFrom(config: Config): ResilienceSettings {
  return {
    maxConcurrent: config.originLimits.maxConcurrent,
    maxQueue: config.originLimits.maxQueue,
    maxConcurrentPerHost: config.originLimits.maxConcurrentPerHost,
    maxQueuePerHost: config.originLimits.maxQueuePerHost,
    breakerFailures: config.circuitBreaker.failures,
    breakerCooldownMs: config.circuitBreaker.cooldownMs,
  };
}

/**
 * The composition root: config → storage → cache manager, whose loader is
 * download → verify. The server, the CLI and embedding apps all use this.
 */
export async function createImageCache(options: ImageCacheOptions = {}): Promise<ImageCache> {
  // The schema (zod) and the Redis client load only when needed: a cluster worker gets its configuration
  // validated from the primary, and most caches have no Redis (each costs MBs of heap in every worker).
  const config =
    options.config ??
    (await import('./config/load.ts')).loadConfig({ configFile: options.configFile, env: options.env, overrides: options.settings ?? {} }).config;
  const logger = options.logger ?? silentLogger();
  const signingKeys = resolveSigningKeys(config);
  const credentials = resolveOriginCredentials(config, options.env ?? process.env);
  const policy: DownloadPolicy = {
    ...downloadPolicyFrom(config, options.selfEndpoints),
    originHeaders: (url) => credentialHeadersFor(credentials, url),
  };

  const directory = await openCacheDirectory(config, logger);
  // Several nodes, one cache: on when redis.url is set; connects in the background, never blocks a request.
  const clusterParts = redisConfigured(config) ? await import('./cluster-config.ts') : undefined;
  const cluster = clusterParts?.openCluster(config, logger, directory.storage.dir);
  const downloader: Downloader = withResilience(createDownloader(policy, logger), resilienceSettingsFrom(config), {
    observer: options.originObserver,
    logger,
  });

  const images = new ImageProcessor({ ...config, logger });
  const loader: Loader = async ({ url, conditional }) => {
    // A body is read only when there is room for it (transforms.sourceBytesInFlight), and the room is held until
    // the source is checked: sources queued for a transform slot are what a miss storm would otherwise pile up.
    let held: ByteReservation | undefined;
    const beforeBody = async (declared: number | undefined, signal: AbortSignal) => {
      held?.release(); // once per fetch today; never two reservations for one source
      held = await images.reserveSourceBytes(declared, signal);
    };
    try {
      const fetched = await downloader.fetch({ url: new URL(url), ...(conditional ? { conditional } : {}), beforeBody });
      if (fetched.status === 304) return { status: 304, origin: fetched.headers };
      held?.resize(fetched.body.length);
      const source = await images.prepareSource(fetched.body);
      return { status: 200, body: source.body, contentType: source.contentType, origin: fetched.headers, decoded: source.decoded };
    } finally {
      held?.release();
    }
  };
  const cache = new CacheManager({
    ...directory,
    ...cacheOptionsFrom(config),
    ...(options.cacheIndex ? { index: options.cacheIndex } : {}),
    ...(options.fillLease ? { fillLease: options.fillLease } : {}),
    ...(cluster ? { cluster: cluster.cache } : {}),
    loader,
    logger,
    namespace: images.fingerprint,
  });

  // The policy is fixed for this instance (a reload builds a new one): a URL it allowed once it allows again.
  const allowedSources = new BoundedMemo<string>(8192);

  async function getImage(sourceUrl: string, requestOptions: ImageRequestOptions, lend: boolean): Promise<LentImageResult> {
    const { accept, expires, ...transformOptions } = requestOptions;
    assertNotExpired(expires, Date.now());
    const plan = images.plan(transformOptions, accept);
    // Policy first: a host denied today is not served from yesterday's cache either.
    const url = allowedSources.getOrCompute(sourceUrl, () => checkSourceUrl(sourceUrl, policy).href);
    const result = await getImageVariant(cache, images, url, plan, lend);
    return {
      ...(plan.varyAccept ? { vary: 'Accept' as const } : {}),
      body: result.body,
      contentType: result.contentType,
      size: result.size,
      etag: result.etag,
      cacheStatus: result.status,
      stream: () => Readable.from([result.body]),
      release: result.release,
    };
  }

  const imageCache: ImageCache = {
    config,
    signingKeys,
    // An embedding app keeps what it gets: its bodies are never lent.
    get: (sourceUrl, requestOptions = {}) => getImage(sourceUrl, requestOptions, false),
    purge: (sourceUrl) => cache.purge(sourceUrl),
    purgeAll: () => cache.purgeAll(),
    stats: () => cache.stats(),
    sign(sourceUrl, signOptions = '_') {
      const key = signingKeys.keys[0];
      if (!key) throw new Error('no signing key configured');
      // Sign only what the server would accept (throws bad_options naming the key otherwise).
      const transformOptions = typeof signOptions === 'string' ? parseOptionsSegment(signOptions) : { ...signOptions };
      delete transformOptions.expires;
      images.plan(transformOptions, undefined);
      return buildImagePath(key, sourceUrl, typeof signOptions === 'string' ? signOptions : formatOptionsSegment(signOptions));
    },
    async warmUp() {
      await downloader.preload?.();
    },
    handler() {
      // The handler gives a disk hit's lent body back once it is written (see CacheRequest.lend).
      return createRequestHandler({ imageCache, config, keys: signingKeys.keys, logger, getImage: (url, opts) => getImage(url, opts, true) });
    },
    redisHealth: () => cluster?.connection.health(),
    sharedRateLimiter: (limits, name) =>
      cluster === undefined || clusterParts === undefined || limits.perSecond <= 0 ? undefined : clusterParts.createSharedRateLimiter({ connection: cluster.connection, ...limits, name }),
    async close() {
      await downloader.close();
      await cache.close();
      await cluster?.close();
    },
  };
  return imageCache;
}
