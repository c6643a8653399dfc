import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { auditableUrl, type AuditLog } from './audit-log.ts';
import { auditedReload } from './audited-reload.ts';
import { parseHopAddress } from './client-address.ts';
import { observeResponse } from './front-door.ts';
import { startServer, type RunningServer } from './http-server.ts';
import { routeLabel, type Metrics } from './metrics.ts';
import { redactConfig } from '../config/redact.ts';
import type { ProxyService, PurgeTarget, ReloadOutcome } from './proxy-service.ts';
import { sendError, sendJson } from './responses.ts';

/** What the admin API acts on: one process, or (in the cluster primary) every worker. */
export interface AdminBackend {
  stats(): Promise<unknown>;
  purge(target: PurgeTarget): Promise<{ removed: number | 'all' }>;
  /** The running configuration, secrets redacted. */
  config(): Record<string, unknown>;
  reload(): Promise<ReloadOutcome>;
  metrics(): Promise<{ contentType: string; body: string }>;
}

/** The admin backend of a single-process server: everything acts on this one ProxyService. */
export function serviceAdminBackend(service: ProxyService, metrics: Metrics): AdminBackend {
  return {
    stats: () => service.stats(),
    purge: (target) => service.purge(target),
    config: () => redactConfig(service.config),
    reload: () => service.reload(),
    metrics: () => metrics.exposition(),
  };
}

export interface AdminLockout {
  /** Failed attempts from one address within `windowSeconds` before it is locked out. */
  failures: number;
  windowSeconds: number;
  /** How long a locked-out address is refused, whatever token it sends. */
  lockSeconds: number;
}

export interface AdminServerOptions {
  host: string;
  port: number;
  /** The current token (it may change on reload); undefined refuses everyone. */
  token: () => string | undefined;
  backend: AdminBackend;
  audit: AuditLog;
  metrics: Metrics;
  logger: Logger;
  lockout?: AdminLockout;
}

const DEFAULT_LOCKOUT: AdminLockout = { failures: 5, windowSeconds: 600, lockSeconds: 600 };

/** Largest admin request body (a purge naming one URL). */
const MAX_BODY_BYTES = 16 * 1024;

/** Compares in constant time: both sides are hashed first, so neither length nor content leaks through timing. */
export function tokenMatches(given: string | undefined, expected: string | undefined): boolean {
  if (given === undefined || expected === undefined) return false;
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return match?.[1];
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new FastImageCacheError('too_large', 'admin request body too large');
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new FastImageCacheError('bad_url', 'admin request body is not JSON');
  }
}

/** `{"url": "..."}` purges one source (every variant), `{"all": true}` everything. */
function purgeTargetOf(body: unknown): PurgeTarget {
  const record = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  if (record.all === true && record.url === undefined) return { all: true };
  if (typeof record.url === 'string' && record.all === undefined) {
    try {
      new URL(record.url);
    } catch {
      throw new FastImageCacheError('bad_url', 'purge url is not an absolute URL');
    }
    return { sourceUrl: record.url };
  }
  throw new FastImageCacheError('bad_url', 'purge expects {"url": "..."} or {"all": true}');
}

/**
 * The admin API, on its own listener (loopback by default). Every request
 * needs `Authorization: Bearer <admin token>`; a wrong or missing token is
 * 401, logged and audited, and an address that keeps failing is locked out
 * (429 with Retry-After, whatever it sends) for a while.
 */
export async function startAdminServer(options: AdminServerOptions): Promise<RunningServer> {
  const { backend, audit, metrics, logger } = options;
  const lockout = options.lockout ?? DEFAULT_LOCKOUT;
  // The limiter rejects (and blocks for lockSeconds) the attempt that goes past its points:
  // with failures - 1 points, that is the failures-th failure.
  const allowedFailures = Math.max(0, lockout.failures - 1);
  const failures = new RateLimiterMemory({
    keyPrefix: 'fic-admin-auth',
    points: allowedFailures,
    duration: lockout.windowSeconds,
    blockDuration: lockout.lockSeconds,
  });

  async function lockedFor(address: string): Promise<number> {
    const state = await failures.get(address);
    return state !== null && state.consumedPoints > allowedFailures ? Math.max(1, state.msBeforeNext) : 0;
  }

  /** Counts a failure; true when it is the one that locks the address out. */
  async function recordFailure(address: string): Promise<boolean> {
    try {
      await failures.consume(address);
      return false;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return true;
      throw rejection;
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse, pathname: string, actor: string, requestId: string): Promise<void> {
    const method = req.method ?? 'GET';
    const expect = (wanted: string) => {
      if (method !== wanted) throw new FastImageCacheError('method_not_allowed', `${method} ${pathname}`);
    };
    switch (pathname) {
      case '/admin/stats':
        expect('GET');
        sendJson(res, 200, await backend.stats(), requestId, { pretty: true });
        return;
      case '/admin/config':
        expect('GET');
        sendJson(res, 200, backend.config(), requestId, { pretty: true });
        return;
      case '/admin/purge': {
        expect('POST');
        const target = purgeTargetOf(await readJsonBody(req));
        const shownTarget = 'all' in target ? 'all' : auditableUrl(target.sourceUrl);
        try {
          const result = await backend.purge(target);
          await audit.record({ actor, action: 'purge', outcome: 'ok', target: shownTarget });
          logger.info({ reqId: requestId, actor, target: shownTarget, removed: result.removed }, 'admin purge');
          sendJson(res, 200, result, requestId, { pretty: true });
        } catch (err) {
          await audit.record({ actor, action: 'purge', outcome: 'failed', target: shownTarget, reason: (err as Error).message });
          throw err;
        }
        return;
      }
      case '/admin/reload': {
        expect('POST');
        const outcome = await auditedReload(() => backend.reload(), actor, audit, metrics);
        sendJson(res, outcome.outcome === 'applied' ? 200 : 422, outcome, requestId, { pretty: true });
        return;
      }
      case '/metrics': {
        expect('GET');
        const { contentType, body } = await backend.metrics();
        res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store', 'X-Request-Id': requestId });
        res.end(body);
        return;
      }
      default:
        throw new FastImageCacheError('not_found', `no admin route ${pathname.slice(0, 128)}`);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const pathname = (req.url ?? '/').split('?', 1)[0] ?? '/';
    observeResponse(res, routeLabel(pathname), metrics, req.method === 'HEAD');
    // The admin listener is reached directly: the socket address is the actor, whatever headers say.
    const actor = parseHopAddress(req.socket.remoteAddress ?? '')?.toString() ?? 'unknown';
    const log = logger.child({ reqId: requestId, actor });
    try {
      const lockedMs = await lockedFor(actor);
      if (lockedMs > 0) {
        metrics.rateLimitRefusals.inc({ listener: 'admin' });
        log.warn('admin request refused: address locked out after failed logins');
        sendError(res, new FastImageCacheError('rate_limited', 'admin lockout', { retryAfterSeconds: lockedMs / 1000 }), requestId);
        return;
      }
      if (!tokenMatches(bearerToken(req.headers.authorization), options.token())) {
        metrics.adminAuthFailures.inc();
        const lockedNow = await recordFailure(actor);
        const missing = req.headers.authorization === undefined;
        log.warn({ missing, lockedOut: lockedNow }, 'admin authentication failed');
        await audit.record({
          actor,
          action: 'admin_auth_failure',
          outcome: lockedNow ? 'locked_out' : 'denied',
          reason: missing ? 'missing token' : 'wrong token',
        });
        res.setHeader('WWW-Authenticate', 'Bearer');
        sendError(res, new FastImageCacheError('unauthorized'), requestId);
        return;
      }
      await route(req, res, pathname, actor, requestId);
    } catch (err) {
      const error = sendError(res, err, requestId);
      if (error.status >= 500) log.error({ code: error.code, detail: error.detail }, 'admin request failed');
      else log.warn({ code: error.code, detail: error.detail }, 'admin request refused');
    }
  }

  return startServer(
    (req, res) => {
      void handle(req, res);
    },
    options.host,
    options.port,
  );
}
