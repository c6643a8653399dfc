import { createHash } from 'node:crypto';
import type { StoredEntry } from '../../src/storage/types.ts';

export const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** A well-formed stored entry for `url` (keys derived from it), with `body` and correct hashes, for storage tests. */
export function makeEntry(url: string, body: Buffer | string, variant = '_'): StoredEntry {
  const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const sourceKey = sha256(`key:${url}`);
  return {
    meta: {
      key: variant === '_' ? sourceKey : sha256(`key:${url}:${variant}`),
      sourceKey,
      sourceUrl: url,
      variant,
      contentType: 'image/png',
      size: bytes.length,
      sha256: sha256(bytes),
      sourceSha256: sha256(bytes),
      storedAt: Date.now(),
      freshness: { freshUntil: 1, staleWhileRevalidateUntil: 2, staleIfErrorUntil: 3, mustRevalidate: false },
      origin: { etag: '"o1"' },
    },
    body: bytes,
  };
}
