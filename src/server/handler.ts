import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/index.ts';
import { FastImageCacheError } from '../errors.ts';
import type { ImageCache, ImageRequestOptions, LentImageResult } from '../image-cache.ts';
import type { Logger } from '../log.ts';
import { parseOptionsSegment } from '../image/options.ts';
import { indexPage } from './index-page.ts';
import { assertNotExpired } from './options.ts';
import { decodeSource, parseImagePath } from './image-path.ts';
import { BoundedMemo } from '../cache/bounded-memo.ts';
import { nextRequestId } from './request-id.ts';
import { noteResponse } from './response-note.ts';
import { etagMatches, SECURITY_HEADERS, sendError, sendText } from './responses.ts';
import { UNSAFE_SIGNATURE, verifySignature } from './signature.ts';

/** Verified image paths remembered per handler (a few MB at most: paths are bounded by maxUrlLength). */
const VERIFIED_PATHS_REMEMBERED = 8192;

export interface HandlerDeps {
  imageCache: ImageCache;
  config: Config;
  keys: readonly Buffer[];
  logger: Logger;
  /** The clock for `exp:` (ms since epoch); injectable for tests. */
  now?: () => number;
  /**
   * imageCache.get for a body that is dropped once written: its `release`,
   * when set, is called after the response's last write completes (and at
   * once when no body is sent), never earlier. Default: imageCache.get.
   */
  getImage?: (sourceUrl: string, options: ImageRequestOptions) => Promise<LentImageResult>;
}

/**
 * The client interface over HTTP: validates the request (signature, options,
 * source) and hands the source URL to the image cache. Only headers set here
 * reach the client; nothing from the origin passes through.
 */
export function createRequestHandler(deps: HandlerDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { imageCache, config, keys, logger } = deps;
  const getImage: NonNullable<HandlerDeps['getImage']> = deps.getImage ?? ((sourceUrl: string, options: ImageRequestOptions) => imageCache.get(sourceUrl, options));
  const index = indexPage(config.requireSignature);

  // The same on every response of this handler: built once, not per request.
  const cacheControl = `public, max-age=${config.clientMaxAge}`;
  // Paths whose signature verified: a hot URL is not HMACed again on every request.
  const verifiedPaths = new BoundedMemo<true>(VERIFIED_PATHS_REMEMBERED);

  async function serveImage(req: IncomingMessage, res: ServerResponse, pathname: string, requestId: string): Promise<void> {
    const head = req.method === 'HEAD';
    const { signature, options, encodedSource } = parseImagePath(pathname);

    const unsafeAllowed = !config.requireSignature && signature === UNSAFE_SIGNATURE;
    if (!unsafeAllowed && verifiedPaths.get(pathname) === undefined) {
      if (!verifySignature(keys, signature, options, encodedSource)) {
        throw new FastImageCacheError('bad_signature', 'signature does not match any configured key');
      }
      // Only paths that verified are remembered (with these keys: a reload makes a new handler).
      verifiedPaths.set(pathname, true);
    }
    // Verified as sent, then parsed: bad_options names the key, exp: past is 410.
    const requested = parseOptionsSegment(options);
    assertNotExpired(requested.expires, (deps.now ?? Date.now)());
    // A request carrying our own User-Agent is this proxy fetching from itself.
    if (req.headers['user-agent'] === config.userAgent) {
      throw new FastImageCacheError('loop_denied', 'request carries this proxy\'s own User-Agent');
    }
    const sourceUrl = decodeSource(encodedSource);

    const image = await getImage(sourceUrl, { ...requested, accept: req.headers.accept });
    const release = image.release;
    // Misses (and stale or revalidated answers) are worth a line each; a hit is logged only at debug.
    if (image.cacheStatus !== 'HIT') {
      logger.info({ reqId: requestId, status: image.cacheStatus, size: image.size, type: image.contentType }, 'image served');
    } else if (logger.isLevelEnabled('debug')) {
      logger.debug({ reqId: requestId, status: image.cacheStatus, size: image.size, type: image.contentType }, 'image served');
    }
    const headers: Record<string, string | number> = {
      ...SECURITY_HEADERS,
      ETag: image.etag,
      'Cache-Control': cacheControl,
      'X-Cache': image.cacheStatus,
      'X-Request-Id': requestId,
      ...(image.vary ? { Vary: image.vary } : {}),
    };
    noteResponse(res, image.size, image.cacheStatus);
    if (etagMatches(req.headers['if-none-match'], image.etag)) {
      res.writeHead(304, headers);
      res.end();
      release?.();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': image.contentType, 'Content-Length': image.size });
    if (head) {
      res.end();
      release?.();
    } else {
      // 'finish': the last write has completed, so the socket holds no reference to the body any more. A response
      // cut short never finishes: its buffer is then left to the collector instead of being lent again.
      res.end(image.body, release);
    }
  }

  return function handle(req, res) {
    const requestId = nextRequestId();
    const head = req.method === 'HEAD';
    const pathname = (req.url ?? '/').split('?', 1)[0] ?? '/';

    const fail = (err: unknown): void => {
      const error = sendError(res, err, requestId, head);
      const fields = { reqId: requestId, code: error.code, status: error.status, detail: error.detail, method: req.method };
      if (error.status >= 500) logger.error(fields, 'request failed');
      else logger.warn(fields, 'request refused');
    };

    if (req.method !== 'GET' && req.method !== 'HEAD') {
      fail(new FastImageCacheError('method_not_allowed', `method ${req.method ?? ''}`));
      return;
    }
    if (pathname === '/') {
      sendText(res, 200, index, requestId, head);
      return;
    }
    if (pathname === '/healthz') {
      sendText(res, 200, 'ok\n', requestId, head);
      return;
    }
    if (pathname.startsWith('/i/')) {
      serveImage(req, res, pathname, requestId).catch(fail);
      return;
    }
    fail(new FastImageCacheError('not_found', `no route for ${pathname.slice(0, 128)}`));
  };
}
