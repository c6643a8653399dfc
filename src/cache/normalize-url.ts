import { FastImageCacheError } from '../errors.ts';

/**
 * The one spelling of a source URL that the cache key is built from.
 * WHATWG URL parsing lowercases scheme and host, drops the default port,
 * turns IDN hosts into punycode and resolves dot segments; the fragment never
 * reaches the origin, so it is dropped too.
 */
export function normalizeSourceUrl(input: string | URL): string {
  let url: URL;
  try {
    url = new URL(typeof input === 'string' ? input : input.href);
  } catch (err) {
    // The URL itself stays out of `detail`: its query may carry credentials.
    throw new FastImageCacheError('bad_url', 'source URL is not a parsable absolute URL', { cause: err });
  }
  url.hash = '';
  return url.href;
}
