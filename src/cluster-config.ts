import { sourceKey } from './cache/cache-key.ts';
import { ClusterCache } from './cache/cluster-cache.ts';
import { normalizeSourceUrl } from './cache/normalize-url.ts';
import { announcePurge, purgeLogKey, type PurgeMessage } from './cache/purge-bus.ts';
import type { Config } from './config/index.ts';
import { resolveRedisUrl } from './config/redis-url.ts';
import { resolveStorageKeys } from './config/storage-keys.ts';
import type { Logger } from './log.ts';
import { EntryCipher } from './storage/entry-cipher.ts';
import { OwedPurgesFile } from './storage/owed-purges-file.ts';
import { PurgeCursorFile } from './storage/purge-cursor-file.ts';
import { RedisConnection } from './storage/redis/connection.ts';
import { RedisSharedTier } from './storage/redis/shared-tier.ts';

export { createSharedRateLimiter } from './storage/redis/shared-rate-limiter.ts';

/** A node's Redis link and the cluster side of its cache; what `redis.url` turns on. */
export interface ClusterParts {
  connection: RedisConnection;
  cache: ClusterCache;
  close(): Promise<void>;
}

/**
 * Opens the Redis link when `redis.url` (or `redis.urlFile`) is set, else
 * undefined. Never waits for Redis: the node starts and serves while the link
 * connects in the background. `cacheDir` (opened) keeps the node's purge cursor
 * and the purges it owes the other nodes.
 */
export function openCluster(config: Config, logger: Logger, cacheDir: string): ClusterParts | undefined {
  const url = resolveRedisUrl(config);
  if (url === undefined) return undefined;
  const connection = new RedisConnection({
    url,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    keyPrefix: config.redis.keyPrefix,
    logger: logger.child({ component: 'redis' }),
  });
  const storageKeys = resolveStorageKeys(config);
  const cache = new ClusterCache({
    connection,
    maxEntryBytes: config.redis.maxEntryBytes,
    entryTtlMs: config.redis.entryTtlSeconds * 1000,
    lockTtlMs: config.redis.lockTtlMs,
    // The elected node's fetch is bounded by the origin deadline; past it (plus a lock's life), fetch here.
    maxWaitMs: config.totalTimeoutMs + config.redis.lockTtlMs,
    logger,
    ...(storageKeys.length === 0 ? {} : { cipher: new EntryCipher(storageKeys) }),
    purgeCursor: new PurgeCursorFile(cacheDir, purgeLogKey(connection)),
    owedPurges: new OwedPurgesFile(cacheDir),
  });
  return {
    connection,
    cache,
    async close() {
      await cache.close();
      await connection.close();
    },
  };
}

/**
 * For `fastimagecache purge` (which works on the cache directory without a
 * server): removes the source, or everything, from the shared tier and tells
 * every node. 'off' without Redis. 'owed' when Redis did not take it in time:
 * the purge is then left in `cacheDir` (opened) as owed by this process, and a
 * server using that directory carries it once Redis is back, as it carries its
 * own (the CLI process is gone by then, so its purges are adopted).
 */
export async function purgeAcrossCluster(
  config: Config,
  cacheDir: string,
  target: { sourceUrl: string } | { all: true },
  logger: Logger,
): Promise<'off' | 'sent' | 'owed'> {
  const url = resolveRedisUrl(config);
  if (url === undefined) return 'off';
  const message: PurgeMessage = 'all' in target ? { kind: 'all' } : { kind: 'source', sourceKey: sourceKey(normalizeSourceUrl(target.sourceUrl)) };
  const connection = new RedisConnection({
    url,
    connectTimeoutMs: config.redis.connectTimeoutMs,
    commandTimeoutMs: config.redis.commandTimeoutMs,
    keyPrefix: config.redis.keyPrefix,
    logger,
  });
  let sent = false;
  try {
    if (await connection.waitUntilUp(config.redis.connectTimeoutMs)) {
      const shared = new RedisSharedTier({ connection, maxEntryBytes: config.redis.maxEntryBytes, logger });
      const cleared = message.kind === 'all' ? await shared.clear() : (await shared.deleteGroup(message.sourceKey)) !== undefined;
      sent = cleared && (await announcePurge(connection, message));
    }
  } finally {
    await connection.close();
  }
  if (sent) return 'sent';
  await new OwedPurgesFile(cacheDir).save([message]);
  return 'owed';
}
