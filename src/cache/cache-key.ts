import { createHash } from 'node:crypto';

/**
 * Bumped whenever what a key stands for changes (e.g. how variants are
 * produced), so old entries are simply never looked up again.
 */
export const FORMAT_VERSION = 1;

const DOMAIN = 'fastimagecache/cache-key';

/**
 * SHA-256 hex over length-prefixed fields: no two different (url, options)
 * pairs encode to the same bytes, and the result is always 64 hex chars, so
 * it can never name a path.
 */
export function cacheKey(normalizedUrl: string, options: string): string {
  const hash = createHash('sha256');
  for (const field of [DOMAIN, String(FORMAT_VERSION), normalizedUrl, options]) {
    const bytes = Buffer.from(field, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length, 0);
    hash.update(length);
    hash.update(bytes);
  }
  return hash.digest('hex');
}
