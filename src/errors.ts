/**
 * Every refusal fastimagecache makes is a FastImageCacheError with a stable
 * code. The code decides the HTTP status and the generic message a client
 * sees; `detail` is for the log only and never leaves the process.
 */

export const ERROR_CODES = {
  bad_url: { status: 400, message: 'The source URL is not acceptable.' },
  bad_options: { status: 400, message: 'The options segment is not acceptable.' },
  bad_signature: { status: 403, message: 'The URL signature is missing or wrong.' },
  host_denied: { status: 403, message: 'The source host is not allowed.' },
  address_denied: { status: 403, message: 'The source address is not allowed.' },
  scheme_denied: { status: 403, message: 'The source scheme is not allowed.' },
  port_denied: { status: 403, message: 'The source port is not allowed.' },
  loop_denied: { status: 403, message: 'The source points back at this proxy.' },
  not_found: { status: 404, message: 'Not found.' },
  expired: { status: 410, message: 'This signed URL has expired.' },
  method_not_allowed: { status: 405, message: 'Method not allowed.' },
  too_large: { status: 413, message: 'The image is too large.' },
  not_an_image: { status: 415, message: 'The source is not a supported image.' },
  origin_error: { status: 502, message: 'The origin did not return a usable response.' },
  origin_timeout: { status: 504, message: 'The origin did not answer in time.' },
  internal_error: { status: 500, message: 'Internal error.' },
  unauthorized: { status: 401, message: 'Missing or wrong credentials.' },
  uri_too_long: { status: 414, message: 'The request URL is too long.' },
  rate_limited: { status: 429, message: 'Too many requests; retry later.' },
  overloaded: { status: 503, message: 'The server is busy; retry later.' },
  origin_unavailable: { status: 503, message: 'The origin is failing; retry later.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class FastImageCacheError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Internal detail for logs; never sent to a client. */
  readonly detail: string | undefined;
  /** For refusals that pass (429, 503): seconds after which a retry may succeed, sent as Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; retryAfterSeconds?: number }) {
    super(ERROR_CODES[code].message, options);
    this.name = 'FastImageCacheError';
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.detail = detail;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  /** The body a client sees: code and generic message, nothing else. */
  toJSON(): { error: ErrorCode; message: string } {
    return { error: this.code, message: ERROR_CODES[this.code].message };
  }
}

/** A configuration problem: names the setting and why. Not an HTTP error. */
export class ConfigError extends Error {
  readonly key: string;
  constructor(key: string, reason: string) {
    super(`${key}: ${reason}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

export function isFastImageCacheError(err: unknown): err is FastImageCacheError {
  return err instanceof FastImageCacheError;
}

/** Wraps anything thrown into a FastImageCacheError, keeping the original as cause. */
export function toFastImageCacheError(err: unknown): FastImageCacheError {
  if (err instanceof FastImageCacheError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new FastImageCacheError('internal_error', detail, { cause: err });
}
