import { createHash } from 'node:crypto';

/**
 * Bumped whenever what a key stands for or how entries are stored changes,
 * so old entries are simply never looked up again (2: sources and variants
 * in groups, freshness in the metadata).
 */
export const FORMAT_VERSION = 2;

/** The variant id of the source bytes as fetched. */
export const SOURCE_VARIANT = '_';

const DOMAIN = 'fastimagecache/cache-key';

/**
 * SHA-256 hex over length-prefixed fields: no two different field lists
 * encode to the same bytes, and the result is always 64 hex chars, so it can
 * never name a path.
 */
function hashFields(fields: readonly string[]): string {
  const hash = createHash('sha256');
  for (const field of fields) {
    const bytes = Buffer.from(field, 'utf8');
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length, 0);
    hash.update(length);
    hash.update(bytes);
  }
  return hash.digest('hex');
}

/** Key of the source bytes of a normalized URL. Encoder versions do not change fetched bytes, so they are not in it. */
export function sourceKey(normalizedUrl: string): string {
  return hashFields([DOMAIN, String(FORMAT_VERSION), 'source', normalizedUrl]);
}

/**
 * Key of the stored source entry of `sourceKeyHex` under the settings that
 * shape stored source bytes (metadata stripping, SVG rasterizing, accepted
 * input formats): changing them makes old sources miss instead of serving
 * bytes prepared under the old settings. The source key itself (its group,
 * what purge and negative caching go by) does not change, so a purge still
 * removes the source under every namespace. An empty fingerprint keeps the
 * plain source key.
 */
export function sourceEntryKey(sourceKeyHex: string, fingerprint: string): string {
  if (fingerprint === '') return sourceKeyHex;
  return hashFields([DOMAIN, String(FORMAT_VERSION), 'source-entry', sourceKeyHex, fingerprint]);
}

/**
 * Key of one variant of a source. `fingerprint` covers whatever changes the
 * bytes a variant is made into (encoder versions, preset definitions), so a
 * change invalidates every variant at once while the fetched sources stay.
 */
export function variantKey(sourceKeyHex: string, variant: string, fingerprint: string): string {
  if (variant === SOURCE_VARIANT) return sourceKeyHex;
  return hashFields([DOMAIN, String(FORMAT_VERSION), 'variant', sourceKeyHex, fingerprint, variant]);
}

/** Key of (url, variant) with a fixed fingerprint: what `get` looks up. */
export function cacheKey(normalizedUrl: string, variant: string, fingerprint = ''): string {
  return variantKey(sourceKey(normalizedUrl), variant, fingerprint);
}
