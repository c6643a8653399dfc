import { ConfigError } from '../errors.ts';
import type { Config } from './schema.ts';
import { decodeKey, readSecretFile } from './secrets.ts';

/**
 * The keys that encrypt cache entries at rest: from FASTIMAGECACHE_STORAGE_KEY,
 * else from `storageKeyFile` (one per line, a file only its owner can read).
 * The first encrypts, any decrypts (rotation). Empty: entries are stored
 * unencrypted.
 */
export function resolveStorageKeys(config: Config): Buffer[] {
  if (config.storageKey.length > 0) return config.storageKey.map((k) => decodeKey(k, 'storageKey'));
  if (config.storageKeyFile === undefined) return [];
  const lines = readSecretFile(config.storageKeyFile, 'storageKeyFile')
    .split(/[\n,]/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  if (lines.length === 0) throw new ConfigError('storageKeyFile', 'no key found');
  return lines.map((line) => decodeKey(line, 'storageKeyFile'));
}
