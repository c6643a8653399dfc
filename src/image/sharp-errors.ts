import { FastImageCacheError } from '../errors.ts';

/** sharp/libvips messages that mean "too big to decode or encode", not "broken". */
const LIMIT_ERROR = /exceeds (?:the )?(?:pixel|channel) limit|security limit exceeded|too large/i;
/** sharp's timeout() failure: "timeout: 12% complete". */
const TIMEOUT_ERROR = /^timeout\b/i;

/**
 * A sharp failure as the refusal a client gets: limits and timeouts are
 * too_large (the image costs more than we allow), anything else not_an_image.
 * The message goes to the log detail only.
 */
export function sharpError(err: unknown): FastImageCacheError {
  if (err instanceof FastImageCacheError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (TIMEOUT_ERROR.test(message)) return new FastImageCacheError('too_large', `timeout: sharp: ${message}`, { cause: err });
  const code = LIMIT_ERROR.test(message) ? 'too_large' : 'not_an_image';
  return new FastImageCacheError(code, `sharp: ${message}`, { cause: err });
}
