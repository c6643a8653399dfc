import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { rateLimitKey } from './client-address.ts';
import { routeLabel, type Metrics } from './metrics.ts';
import type { ClientRateLimiter } from './rate-limit.ts';
import type { Readiness } from './readiness.ts';
import { responseNote } from './response-note.ts';
import { sendError, sendJson, sendText } from './responses.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** What the front door applies now; replaced as a whole on reload. */
export interface FrontDoorSettings {
  /** Serves everything that passes the checks (the image cache's handler). */
  handler: Handler;
  /** Undefined when rate limiting is off. */
  rateLimiter: ClientRateLimiter | undefined;
  /** The client's address from the socket and, for trusted proxies, X-Forwarded-For. */
  clientAddress: (socketAddress: string | undefined, forwardedFor: string | string[] | undefined) => string;
  maxUrlLength: number;
  /** Also answer GET /metrics here. */
  metricsOnMainListener: boolean;
}

export interface FrontDoorOptions {
  settings: () => FrontDoorSettings;
  metrics: Metrics;
  readiness: Readiness;
  /** The exposition /metrics answers with (in a cluster: every worker's, summed). */
  exposition: () => Promise<{ contentType: string; body: string }>;
  logger: Logger;
}

/**
 * Counts a response in the metrics when it is done: route, status, body
 * bytes and cache result, as its writer noted them (noteResponse), else from
 * headers set with setHeader().
 */
export function observeResponse(res: ServerResponse, route: string, metrics: Metrics, head: boolean): void {
  res.once('finish', () => {
    const note = responseNote(res);
    const bytes = note === undefined ? Number(res.getHeader('content-length') ?? 0) : note.bytes;
    const counted = !head && res.statusCode !== 304 && Number.isFinite(bytes) && bytes > 0 ? bytes : 0;
    let cache: string | undefined;
    if (route === 'image') {
      const header = note?.cache ?? res.getHeader('x-cache');
      if (typeof header === 'string') cache = header;
    }
    metrics.countResponse(route, res.statusCode, counted, cache);
  });
}

/**
 * The main listener's first stop, before the image handler: URL length
 * (414), health and readiness (never limited), the per-client rate limit
 * (cache hits count too: the limit is per client, not per origin fetch),
 * metrics if configured, then the image handler. Every response is counted.
 */
export function createFrontDoor(options: FrontDoorOptions): Handler {
  const { metrics, readiness, logger } = options;

  return function frontDoor(req, res) {
    const settings = options.settings();
    const head = req.method === 'HEAD';
    const target = req.url ?? '/';

    // Checked before anything else, so an oversized URL is never parsed or logged whole.
    if (target.length > settings.maxUrlLength) {
      observeResponse(res, 'other', metrics, head);
      const requestId = randomUUID();
      sendError(res, new FastImageCacheError('uri_too_long'), requestId, head);
      logger.warn({ reqId: requestId, code: 'uri_too_long', length: target.length }, 'request refused');
      return;
    }

    const pathname = target.split('?', 1)[0] ?? '/';
    const route = routeLabel(pathname);
    observeResponse(res, route, metrics, head);
    const readOnly = req.method === 'GET' || head;

    if (pathname === '/healthz' && readOnly) {
      sendText(res, 200, 'ok\n', randomUUID(), head);
      return;
    }
    if (pathname === '/readyz' && readOnly) {
      const requestId = randomUUID();
      readiness
        .report()
        .then((report) => { sendJson(res, report.ready ? 200 : 503, report, requestId, { head }); })
        .catch((err: unknown) => sendError(res, err, requestId, head));
      return;
    }

    // Who the client is matters only to the rate limit: not worked out (address parsing) when it is off.
    const limiter = settings.rateLimiter;
    if (limiter === undefined && !(pathname === '/metrics' && settings.metricsOnMainListener)) {
      settings.handler(req, res);
      return;
    }
    const client = limiter ? settings.clientAddress(req.socket.remoteAddress, req.headers['x-forwarded-for']) : '';
    const admitted = limiter ? limiter.consume(rateLimitKey(client)) : Promise.resolve({ allowed: true as const });
    admitted
      .then((decision) => {
        if (!decision.allowed) {
          metrics.rateLimitRefusals.inc({ listener: 'main' });
          const requestId = randomUUID();
          sendError(res, new FastImageCacheError('rate_limited', undefined, { retryAfterSeconds: decision.retryAfterSeconds }), requestId, head);
          logger.warn({ reqId: requestId, code: 'rate_limited', client }, 'request refused');
          return;
        }
        if (pathname === '/metrics' && settings.metricsOnMainListener && readOnly) {
          const requestId = randomUUID();
          options
            .exposition()
            .then(({ contentType, body }) => {
              res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store', 'X-Request-Id': requestId });
              res.end(head ? undefined : body);
            })
            .catch((err: unknown) => sendError(res, err, requestId, head));
          return;
        }
        settings.handler(req, res);
      })
      .catch((err: unknown) => {
        const requestId = randomUUID();
        logger.error({ reqId: requestId, err }, 'front door failed');
        sendError(res, err, requestId, head);
      });
  };
}
