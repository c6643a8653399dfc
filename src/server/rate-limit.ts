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
import { LocalFirstRateLimiter, reportEvery, type SharedCount } from './local-first-rate-limit.ts';

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

/** Where the shared counters live: nowhere (this process alone), or the cluster primary (so N workers share one budget per client). */
export type RateLimitStore = 'memory' | 'cluster';

// Cluster limiters register an IPC listener each and cannot be disposed, so
// one instance per distinct setting is kept for the life of the process.
const clusterLimiters = new Map<string, RateLimiterAbstract>();

function clusterLimiter(keyPrefix: string, points: number, duration: number): RateLimiterAbstract {
  let limiter = clusterLimiters.get(keyPrefix);
  if (limiter === undefined) {
    limiter = new RateLimiterCluster({ keyPrefix, points, duration, timeoutMs: 1000 });
    clusterLimiters.set(keyPrefix, limiter);
  }
  return limiter;
}

type LimiterFactory = (keyPrefix: string, points: number, duration: number) => RateLimiterAbstract;

/**
 * rate-limiter-flexible's limiters for the settings: `perSecond` requests in
 * each one-second window, and when those are spent, up to `burst` more from
 * an allowance that refills every ceil(burst / perSecond) seconds (its
 * BurstyRateLimiter).
 */
function limiterFor(settings: RateLimitSettings, prefix: string, make: LimiterFactory): RateLimiterAbstract | BurstyRateLimiter {
  const sustained = make(`${prefix}-rate`, settings.perSecond, 1);
  if (settings.burst <= 0) return sustained;
  return new BurstyRateLimiter(sustained, make(`${prefix}-burst`, settings.burst, Math.max(1, Math.ceil(settings.burst / settings.perSecond))));
}

/**
 * Per-client limits with rate-limiter-flexible. This process counts every
 * request itself; with a shared count (the cluster primary for `--workers`,
 * Redis for several nodes, Redis first when both), it reports them in batches
 * (LocalFirstRateLimiter), so each client has one budget across processes
 * without a round trip per request. Returns undefined when perSecond is 0
 * (limiting off).
 */
export function createClientRateLimiter(
  settings: RateLimitSettings,
  logger: Logger,
  options: { store?: RateLimitStore; name?: string; shared?: SharedCount | undefined } = {},
): ClientRateLimiter | undefined {
  if (settings.perSecond <= 0) return undefined;
  const prefix = `fic-${options.name ?? 'clients'}-${settings.perSecond}-${settings.burst}`;
  const local = limiterFor(settings, prefix, (keyPrefix, points, duration) => new RateLimiterMemory({ keyPrefix, points, duration }));
  const counted = countOf(local, (err) => {
    // Failing open: a limiter fault must not take the whole service down with it.
    logger.warn({ err }, 'rate limiter failed; letting the request through');
  });
  const own: ClientRateLimiter = { consume: async (clientKey) => (await counted(clientKey, 1)) ?? { allowed: true } };

  // Undefined when the primary does not answer in time (the limiter's IPC timeout): the worker decides alone.
  const primary =
    options.store === 'cluster'
      ? countOf(limiterFor(settings, prefix, clusterLimiter), (err) => {
          logger.warn({ err }, 'the cluster rate limit count failed; this worker decides alone');
        })
      : undefined;
  const { shared } = options;
  const count: SharedCount | undefined =
    shared && primary ? async (clientKey, points) => (await shared(clientKey, points)) ?? primary(clientKey, points) : (shared ?? primary);
  return count === undefined ? own : new LocalFirstRateLimiter(own, count, reportEvery(settings));
}

/**
 * A rate-limiter-flexible limiter as a count that takes `points` requests at
 * once: allowed, over the limit (with Retry-After), or undefined when the
 * limiter itself failed (after `onFault`).
 */
export function countOf(limiter: RateLimiterAbstract | BurstyRateLimiter, onFault: (err: unknown) => void): SharedCount {
  return async (clientKey, points) => {
    try {
      await limiter.consume(clientKey, points);
      return { allowed: true };
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)) };
      onFault(rejection);
      return undefined;
    }
  };
}

/** In the cluster primary: holds the counters that the workers' 'cluster' limiters consult over IPC. */
export function startRateLimitPrimary(): void {
  if (cluster.isPrimary) new RateLimiterClusterMaster();
}
