import { ConfigError } from '../errors.ts';
import type { Config } from './schema.ts';
import { readSecretFile } from './secrets.ts';

/**
 * `redis.url` is an ordinary setting until it carries a password: then it is
 * a secret, accepted from the environment or a 0600 file (`redis.urlFile`)
 * only, and never printed whole.
 */

export function redisUrlHasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}

/** Refuses a config file whose `redis.url` holds a password. */
export function rejectRedisPasswordInFile(settings: Record<string, unknown>): void {
  const redis = settings.redis;
  if (typeof redis !== 'object' || redis === null || Array.isArray(redis)) return;
  const url = (redis as Record<string, unknown>).url;
  if (typeof url === 'string' && redisUrlHasPassword(url)) {
    throw new ConfigError(
      'redis.url',
      'a Redis URL with a password is a secret and may not be written in a config file; set FASTIMAGECACHE_REDIS_URL or point redis.urlFile at a file readable only by its owner',
    );
  }
}

/** The URL with its password replaced by `censor`, for printing. */
export function redactRedisUrl(url: string, censor: string): string {
  try {
    const u = new URL(url);
    if (u.password === '') return url;
    // Set a placeholder, then swap it for the censor (URL would percent-encode brackets).
    u.password = 'x';
    return u.toString().replace(':x@', `:${censor}@`);
  } catch {
    return censor;
  }
}

/** Whether Redis is on: `redis.url` or `redis.urlFile` is set (without reading the file; resolveRedisUrl does). */
export function redisConfigured(config: Config): boolean {
  return config.redis.url !== undefined || config.redis.urlFile !== undefined;
}

/** The Redis URL to use (from `redis.url`, else the 0600 `redis.urlFile`), or undefined when Redis is off. */
export function resolveRedisUrl(config: Config): string | undefined {
  if (config.redis.url !== undefined) return config.redis.url;
  if (config.redis.urlFile === undefined) return undefined;
  const url = readSecretFile(config.redis.urlFile, 'redis.urlFile').trim();
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new ConfigError('redis.urlFile', 'the file must hold one redis:// or rediss:// URL');
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    throw new ConfigError('redis.urlFile', 'the file must hold one redis:// or rediss:// URL');
  }
  return url;
}
