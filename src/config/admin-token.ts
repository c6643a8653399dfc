import { ConfigError } from '../errors.ts';
import type { Config } from './schema.ts';
import { readSecretFile } from './secrets.ts';

/** Shortest admin token accepted (the same floor the schema puts on admin.token). */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

/**
 * The admin API's bearer token: from FASTIMAGECACHE_ADMIN_TOKEN, else from
 * `admin.tokenFile` (a file only its owner can read). Undefined when neither
 * is set: the admin listener then stays off.
 */
export function resolveAdminToken(config: Config): string | undefined {
  if (config.admin.token !== undefined) return config.admin.token;
  if (config.admin.tokenFile === undefined) return undefined;
  const token = readSecretFile(config.admin.tokenFile, 'admin.tokenFile').trim();
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError('admin.tokenFile', `the token must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`);
  }
  return token;
}
