import type { CacheManagerOptions } from './cache/index.ts';
import { resolveStorageKeys } from './config/storage-keys.ts';
import type { Config } from './config/index.ts';
import type { Logger } from './log.ts';
import { EntryCipher } from './storage/entry-cipher.ts';
import { FsStorage } from './storage/fs-storage.ts';
import { RemovalJournal } from './storage/removal-journal.ts';
import { StatusBoard } from './storage/status-board.ts';

/** The cache lifecycle settings of a config, as CacheManager options (seconds become ms). */
export function cacheOptionsFrom(config: Config): Pick<
  CacheManagerOptions,
  'freshness' | 'negativeTtlMs' | 'maxCacheBytes' | 'maxEntries' | 'memoryCacheBytes' | 'sourceNamespace'
> {
  return {
    sourceNamespace: sourceNamespaceFrom(config),
    freshness: {
      minTtlMs: config.minTtl * 1000,
      maxTtlMs: config.maxTtl * 1000,
      defaultTtlMs: config.defaultTtl * 1000,
      staleWhileRevalidateMs: config.staleWhileRevalidate * 1000,
      staleIfErrorMs: config.staleIfError * 1000,
      ignoreOriginCacheControl: config.ignoreOriginCacheControl,
    },
    negativeTtlMs: config.negativeTtl * 1000,
    maxCacheBytes: config.maxCacheBytes,
    maxEntries: config.maxEntries,
    memoryCacheBytes: config.memoryCacheBytes,
  };
}

/**
 * The settings that change what is stored for a fetched source (cleaned or
 * as sent, SVG rendered or refused, which formats are accepted at all), as
 * the cache's source namespace: changing one makes cached sources (and their
 * variants) miss and be fetched again, instead of serving bytes prepared
 * under the old settings. Order and repeats of `inputFormats` do not matter.
 */
export function sourceNamespaceFrom(config: Pick<Config, 'stripMetadata' | 'svg' | 'inputFormats'>): string {
  const inputFormats = [...new Set(config.inputFormats)].sort();
  return JSON.stringify({ stripMetadata: config.stripMetadata, svg: config.svg, inputFormats });
}

/** The cache directory of a config, opened (and encrypted at rest when storage keys are set). */
export async function openCacheStorage(config: Config, logger: Logger): Promise<FsStorage> {
  const keys = resolveStorageKeys(config);
  return FsStorage.open({
    dir: config.cacheDir,
    logger,
    fsync: config.fsyncWrites,
    ...(config.publicDir === undefined ? {} : { publicDir: config.publicDir }),
    ...(keys.length === 0 ? {} : { cipher: new EntryCipher(keys) }),
  });
}

/** Storage plus the cross-process signals of a cache directory (removal notices, published counters). */
export async function openCacheDirectory(
  config: Config,
  logger: Logger,
): Promise<Pick<CacheManagerOptions, 'storage' | 'removals' | 'statusBoard'> & { storage: FsStorage }> {
  const storage = await openCacheStorage(config, logger);
  return { storage, removals: new RemovalJournal(storage.dir), statusBoard: new StatusBoard(storage.dir) };
}
