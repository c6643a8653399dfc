import { FastImageCacheError } from '../errors.ts';

/** Longest request target accepted for an image URL (the source itself may be 8 KB, base64 grows it by 4/3). */
export const MAX_IMAGE_PATH = 12 * 1024;

export interface ImagePath {
  signature: string;
  options: string;
  /** The source segment as it appears in the URL (base64url). */
  encodedSource: string;
}

/** Splits `/i/{signature}/{options}/{source}`; anything else is bad_url. */
export function parseImagePath(pathname: string): ImagePath {
  if (pathname.length > MAX_IMAGE_PATH) throw new FastImageCacheError('bad_url', 'request path too long');
  const parts = pathname.split('/');
  // ['', 'i', signature, options, source]
  if (parts.length !== 5 || parts[1] !== 'i') {
    throw new FastImageCacheError('bad_url', 'expected /i/{signature}/{options}/{source}');
  }
  const [, , signature = '', options = '', encodedSource = ''] = parts;
  if (signature === '' || options === '' || encodedSource === '') {
    throw new FastImageCacheError('bad_url', 'empty path segment');
  }
  return { signature, options, encodedSource };
}

/** The source URL from its base64url segment; rejects anything that is not clean base64url of UTF-8 text. */
export function decodeSource(encodedSource: string): string {
  if (!/^[A-Za-z0-9_-]+$/.test(encodedSource)) {
    throw new FastImageCacheError('bad_url', 'source is not base64url');
  }
  const bytes = Buffer.from(encodedSource, 'base64url');
  const text = bytes.toString('utf8');
  // Round-trip so that invalid UTF-8 (decoded as U+FFFD) and non-canonical encodings are refused.
  if (Buffer.from(text, 'utf8').toString('base64url') !== encodedSource) {
    throw new FastImageCacheError('bad_url', 'source is not canonical base64url of UTF-8 text');
  }
  return text;
}
