import { FastImageCacheError } from '../errors.ts';

/**
 * `exp:UNIX_SECONDS` in a signed URL: after that second the URL answers 410
 * expired, so an operator can hand out links that stop working. The
 * signature covers the options segment, so the time cannot be changed.
 */
export function assertNotExpired(expires: number | undefined, nowMs: number): void {
  if (expires === undefined) return;
  if (!Number.isSafeInteger(expires) || expires < 0) throw new FastImageCacheError('bad_options', 'exp: expected UNIX seconds');
  if (nowMs >= expires * 1000) {
    throw new FastImageCacheError('expired', `exp:${expires} is ${Math.floor(nowMs / 1000) - expires} s in the past`);
  }
}
