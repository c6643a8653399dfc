import cluster from 'node:cluster';
import {
  BurstyRateLimiter,
  RateLimiterCluster,
  RateLimiterClusterMaster,
  RateLimiterMemory,
  RateLimiterRes,
  type RateLimiterAbstract,
} from 'rate-limiter-flexible';
import type { Logger } from '../log.ts';

export interface RateLimitSettings {
  /** Sustained requests per second per client; 0 turns limiting off. */
  perSecond: number;
  /** Extra requests allowed at once above perSecond, refilled over burst/perSecond seconds. */
  burst: number;
}

export type RateLimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface ClientRateLimiter {
  /** Counts one request for `clientKey`. Never rejects: a broken limiter lets requests through (and logs). */
  consume(clientKey: string): Promise<RateLimitDecision>;
}

/** Where the counters live: this process, or the cluster primary (so N workers share one budget per client). */
export type RateLimitStore = 'memory' | 'cluster';

interface Limiters {
  sustained: RateLimiterAbstract;
  burst: RateLimiterAbstract | undefined;
}

// Cluster limiters register an IPC listener each and cannot be disposed, so
// one instance per distinct setting is kept for the life of the process.
const clusterLimiters = new Map<string, RateLimiterAbstract>();

function makeLimiter(store: RateLimitStore, keyPrefix: string, points: number, duration: number): RateLimiterAbstract {
  if (store === 'memory') return new RateLimiterMemory({ keyPrefix, points, duration });
  let limiter = clusterLimiters.get(keyPrefix);
  if (limiter === undefined) {
    limiter = new RateLimiterCluster({ keyPrefix, points, duration, timeoutMs: 1000 });
    clusterLimiters.set(keyPrefix, limiter);
  }
  return limiter;
}

/**
 * Per-client limits with rate-limiter-flexible (its store can later be Redis
 * or the cluster primary): `perSecond` requests in each one-second window,
 * and when those are spent, up to `burst` more from an allowance that
 * refills every ceil(burst / perSecond) seconds (its BurstyRateLimiter).
 * Returns undefined when perSecond is 0 (limiting off).
 */
export function createClientRateLimiter(
  settings: RateLimitSettings,
  logger: Logger,
  options: { store?: RateLimitStore; name?: string } = {},
): ClientRateLimiter | undefined {
  if (settings.perSecond <= 0) return undefined;
  const store = options.store ?? 'memory';
  const prefix = `fic-${options.name ?? 'clients'}-${settings.perSecond}-${settings.burst}`;
  const limiters: Limiters = {
    sustained: makeLimiter(store, `${prefix}-rate`, settings.perSecond, 1),
    burst:
      settings.burst > 0
        ? makeLimiter(store, `${prefix}-burst`, settings.burst, Math.max(1, Math.ceil(settings.burst / settings.perSecond)))
        : undefined,
  };
  const limiter = limiters.burst ? new BurstyRateLimiter(limiters.sustained, limiters.burst) : limiters.sustained;

  return {
    async consume(clientKey) {
      try {
        await limiter.consume(clientKey, 1);
        return { allowed: true };
      } catch (rejection) {
        if (rejection instanceof RateLimiterRes) {
          return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)) };
        }
        // Failing open: a limiter fault must not take the whole service down with it.
        logger.warn({ err: rejection }, 'rate limiter failed; letting the request through');
        return { allowed: true };
      }
    },
  };
}

/** In the cluster primary: holds the counters that the workers' 'cluster' limiters consult over IPC. */
export function startRateLimitPrimary(): void {
  if (cluster.isPrimary) new RateLimiterClusterMaster();
}
