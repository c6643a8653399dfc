import { Agent, errors as undiciErrors } from 'undici';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createGuardedConnector } from './guarded-connector.ts';
import type { OriginTls } from './tls-options.ts';
import { checkSourceUrl } from './url-policy.ts';
import type { Downloader, DownloadPolicy, FetchRequest, FetchResult, OriginHeaders } from './types.ts';

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

type ResponseHeaders = Record<string, string | string[] | undefined>;

/** The headers kept from a response (a single value each; repeated ones are joined). */
const KEPT_HEADERS: ReadonlyArray<[keyof OriginHeaders, string]> = [
  ['contentType', 'content-type'],
  ['etag', 'etag'],
  ['lastModified', 'last-modified'],
  ['cacheControl', 'cache-control'],
  ['expires', 'expires'],
  ['date', 'date'],
  ['age', 'age'],
];

function single(headers: ResponseHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

function originHeaders(headers: ResponseHeaders): OriginHeaders {
  const kept: OriginHeaders = {};
  for (const [key, name] of KEPT_HEADERS) {
    const value = single(headers, name);
    if (value !== undefined) kept[key] = value;
  }
  return kept;
}

/** The only headers an origin ever sees from us; nothing from the client is forwarded. */
function requestHeaders(policy: DownloadPolicy, req: FetchRequest): Record<string, string> {
  const headers: Record<string, string> = {
    'user-agent': policy.userAgent,
    accept: 'image/*,*/*;q=0.8',
    'accept-encoding': 'identity',
  };
  if (req.conditional?.etag) headers['if-none-match'] = req.conditional.etag;
  if (req.conditional?.lastModified) headers['if-modified-since'] = req.conditional.lastModified;
  return headers;
}

/** Finds our own error in whatever undici wrapped it in (cause chains, AggregateError). */
function findOwnError(err: unknown, depth = 0): FastImageCacheError | undefined {
  if (err instanceof FastImageCacheError) return err;
  if (depth > 8 || typeof err !== 'object' || err === null) return undefined;
  if (err instanceof AggregateError) {
    for (const inner of err.errors) {
      const found = findOwnError(inner, depth + 1);
      if (found) return found;
    }
  }
  return findOwnError((err as { cause?: unknown }).cause, depth + 1);
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Drops a response body unread. undici reports the early close as an error on
 * the stream; nobody is reading it any more, so that error is swallowed here.
 */
function discard(body: { on(event: 'error', listener: () => void): unknown; destroy(): unknown }): void {
  body.on('error', () => {});
  body.destroy();
}

/**
 * The downloader itself, on undici (see downloader.ts, which loads this
 * module when the first fetch needs it). Every hop is checked by URL policy,
 * then by the connector at connect time, and the response is bounded in time
 * and size.
 */
export function createUndiciDownloader(policy: DownloadPolicy, logger: Logger, originTls: OriginTls | undefined): Downloader {
  // Our own Agent: the global dispatcher (and any proxy it may take from the
  // environment) is never used, so HTTP_PROXY and friends cannot reroute us.
  const agent = new Agent({
    connect: createGuardedConnector({ policy, logger, tls: originTls }),
    headersTimeout: policy.headersTimeoutMs,
    bodyTimeout: policy.totalTimeoutMs,
  });

  async function readBody(
    body: AsyncIterable<Buffer> & { on(event: 'error', listener: () => void): unknown; destroy(): unknown },
    declared: number | undefined,
  ): Promise<Buffer> {
    // With a Content-Length (already checked against maxBytes), chunks are copied into their final buffer as
    // they arrive: no second copy of the whole body at the end. Untouched pages of it take no memory. (Slow:
    // not a slice of the shared pool, which a cached small image would keep alive.)
    const whole = declared === undefined ? undefined : Buffer.allocUnsafeSlow(declared);
    const chunks: Buffer[] = [];
    let received = 0;
    for await (const chunk of body) {
      if (received + chunk.length > policy.maxBytes) {
        discard(body);
        throw new FastImageCacheError('too_large', `body exceeds ${policy.maxBytes} bytes`);
      }
      if (whole === undefined) chunks.push(chunk);
      else if (received + chunk.length <= whole.length) chunk.copy(whole, received);
      received += chunk.length;
    }
    if (declared !== undefined && received !== declared) {
      throw new FastImageCacheError('origin_error', `body of ${received} bytes, Content-Length said ${declared}`);
    }
    return whole ?? Buffer.concat(chunks, received);
  }

  async function fetchWithin(req: FetchRequest, signal: AbortSignal): Promise<FetchResult> {
    let url = checkSourceUrl(req.url.href, policy);
    const headers = requestHeaders(policy, req);

    for (let redirects = 0; ; redirects++) {
      // Credentials are chosen per hop for this hop's host: a redirect elsewhere never carries them.
      const response = await agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { ...(policy.originHeaders?.(url) ?? {}), ...headers },
        signal,
      });
      const { statusCode, body } = response;
      const resHeaders: ResponseHeaders = response.headers;

      if (REDIRECT_STATUSES.has(statusCode)) {
        discard(body);
        const location = resHeaders['location'];
        if (typeof location !== 'string' || location === '') {
          throw new FastImageCacheError('origin_error', `redirect ${statusCode} without a single Location`);
        }
        if (redirects >= policy.maxRedirects) {
          throw new FastImageCacheError('origin_error', `more than ${policy.maxRedirects} redirects`);
        }
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new FastImageCacheError('bad_url', 'unparsable redirect Location');
        }
        url = checkSourceUrl(next.href, policy);
        logger.debug({ hop: redirects + 1, to: url.origin }, 'following redirect');
        continue;
      }

      if (statusCode === 304 && req.conditional) {
        discard(body);
        return { status: 304, body: Buffer.alloc(0), finalUrl: url.href, headers: originHeaders(resHeaders), redirects };
      }

      if (statusCode !== 200) {
        discard(body); // the origin's error page is never read
        if (statusCode === 404 || statusCode === 410) throw new FastImageCacheError('not_found', `origin said ${statusCode}`);
        throw new FastImageCacheError('origin_error', `origin said ${statusCode}`);
      }

      const encoding = single(resHeaders, 'content-encoding');
      if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
        discard(body);
        throw new FastImageCacheError('origin_error', `origin ignored Accept-Encoding: identity (${encoding})`);
      }

      const lengthHeader = single(resHeaders, 'content-length');
      const declared = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
      if (declared !== undefined && declared > policy.maxBytes) {
        discard(body);
        throw new FastImageCacheError('too_large', `Content-Length ${declared} over ${policy.maxBytes}`);
      }

      if (req.beforeBody) {
        try {
          await req.beforeBody(declared, signal);
          signal.throwIfAborted(); // room came just as the deadline passed: still our wait
        } catch (err) {
          discard(body);
          if (signal.aborted && !req.signal?.aborted) {
            throw new FastImageCacheError('overloaded', 'deadline passed waiting to read the body', { cause: err, retryAfterSeconds: 1 });
          }
          throw err;
        }
      }
      const data = await readBody(body, declared);
      return { status: 200, body: data, finalUrl: url.href, headers: originHeaders(resHeaders), redirects };
    }
  }

  async function fetch(req: FetchRequest): Promise<FetchResult> {
    const deadline = new AbortController();
    const timer = setTimeout(() => {
      deadline.abort(new FastImageCacheError('origin_timeout', 'total deadline'));
    }, policy.totalTimeoutMs);
    const signal = req.signal ? AbortSignal.any([deadline.signal, req.signal]) : deadline.signal;
    try {
      return await fetchWithin(req, signal);
    } catch (err) {
      throw classifyFailure(err, deadline.signal, req.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  function classifyFailure(err: unknown, deadline: AbortSignal, callerSignal: AbortSignal | undefined): FastImageCacheError {
    // Our own refusal (beforeBody's wait), even when the deadline is what ended it.
    if (err instanceof FastImageCacheError && err.code === 'overloaded') return err;
    if (deadline.aborted) return new FastImageCacheError('origin_timeout', `over ${policy.totalTimeoutMs} ms`, { cause: err });
    if (callerSignal?.aborted) {
      const reason: unknown = callerSignal.reason;
      if (reason instanceof FastImageCacheError) return reason;
      const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
      return new FastImageCacheError(timedOut ? 'origin_timeout' : 'origin_error', 'aborted by caller', { cause: err });
    }
    const own = findOwnError(err);
    if (own) return own;
    const code = errorCode(err);
    if (code !== undefined && TIMEOUT_CODES.has(code)) return new FastImageCacheError('origin_timeout', code, { cause: err });
    if (err instanceof undiciErrors.ResponseContentLengthMismatchError) {
      return new FastImageCacheError('origin_error', 'truncated body', { cause: err });
    }
    const detail = err instanceof Error ? `${code ?? err.name}: ${err.message}` : String(err);
    return new FastImageCacheError('origin_error', detail, { cause: err });
  }

  return {
    fetch,
    async close() {
      await agent.close();
    },
  };
}
