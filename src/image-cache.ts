import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { CacheManager, type CacheStatus, type LoadedImage } from './cache/index.ts';
import { loadConfig, resolveSigningKeys, type Config, type LoadConfigOptions, type SigningKeys } from './config/index.ts';
import { checkSourceUrl, createDownloader, type Downloader, type DownloadPolicy } from './download/index.ts';
import { FastImageCacheError } from './errors.ts';
import { verifyImage } from './image/index.ts';
import { silentLogger, type Logger } from './log.ts';
import { createRequestHandler } from './server/handler.ts';
import { buildImagePath } from './server/signature.ts';
import { FsStorage } from './storage/index.ts';

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
}

/** Options of one image request. Transforms come later; today only the original is served. */
export type ImageRequestOptions = Record<string, never>;

export interface ImageResult {
  body: Buffer;
  /** The real type, sniffed from the bytes. */
  contentType: string;
  size: number;
  /** Strong validator from the content hash, quoted. */
  etag: string;
  cacheStatus: CacheStatus;
  /** The body as a stream, for piping. */
  stream(): Readable;
}

export interface CacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

export interface ImageCache {
  /** Fetch (once), verify, store and return an image; the same URL policy as the server applies. */
  get(sourceUrl: string, options?: ImageRequestOptions): Promise<ImageResult>;
  /** Removes every cached variant of a source; resolves to the number of entries removed. */
  purge(sourceUrl: string): Promise<number>;
  /** Removes everything. */
  purgeAll(): Promise<void>;
  stats(): Promise<CacheStats>;
  /** A signed `/i/...` path for a source URL, with the first configured key. */
  sign(sourceUrl: string, options?: string): string;
  /** A Node `(req, res)` handler serving `/`, `/healthz` and `/i/...`. */
  handler(): (req: IncomingMessage, res: ServerResponse) => void;
  close(): Promise<void>;
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
    ...(selfEndpoints ? { selfEndpoints } : {}),
  };
}

/**
 * The composition root: config → storage → cache manager, whose loader is
 * download → verify. The server, the CLI and embedding apps all use this.
 */
export async function createImageCache(options: ImageCacheOptions = {}): Promise<ImageCache> {
  const config =
    options.config ??
    loadConfig({ configFile: options.configFile, env: options.env, overrides: options.settings ?? {} }).config;
  const logger = options.logger ?? silentLogger();
  const signingKeys = resolveSigningKeys(config);
  const policy = downloadPolicyFrom(config, options.selfEndpoints);

  const storage = await FsStorage.open({ dir: config.cacheDir, publicDir: config.publicDir, logger });
  const downloader: Downloader = createDownloader(policy, logger);

  const loader = async (sourceUrl: string): Promise<LoadedImage> => {
    const fetched = await downloader.fetch({ url: new URL(sourceUrl) });
    const image = await verifyImage(fetched.body);
    return { body: fetched.body, contentType: image.mime, origin: fetched.headers };
  };
  const cache = new CacheManager({ storage, loader, logger });

  const imageCache: ImageCache = {
    config,
    signingKeys,
    async get(sourceUrl, requestOptions) {
      if (requestOptions && Object.keys(requestOptions).length > 0) {
        throw new FastImageCacheError('bad_options', 'transform options are not supported yet');
      }
      // Policy first: a host denied today is not served from yesterday's cache either.
      const url = checkSourceUrl(sourceUrl, policy);
      const result = await cache.get(url, '_');
      return {
        body: result.body,
        contentType: result.contentType,
        size: result.size,
        etag: result.etag,
        cacheStatus: result.status,
        stream: () => Readable.from([result.body]),
      };
    },
    purge: (sourceUrl) => cache.purge(sourceUrl),
    purgeAll: () => cache.purgeAll(),
    stats: () => cache.stats(),
    sign(sourceUrl, signOptions = '_') {
      const key = signingKeys.keys[0];
      if (!key) throw new Error('no signing key configured');
      return buildImagePath(key, sourceUrl, signOptions);
    },
    handler() {
      return createRequestHandler({ imageCache, config, keys: signingKeys.keys, logger });
    },
    async close() {
      await downloader.close();
      await cache.close();
    },
  };
  return imageCache;
}
