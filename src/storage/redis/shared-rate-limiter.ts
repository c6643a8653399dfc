import { BurstyRateLimiter, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisConnection } from './connection.ts';

export interface SharedRateLimitOptions {
  connection: RedisConnection;
  /** Sustained requests per second per client (> 0). */
  perSecond: number;
  /** Extra requests at once above perSecond, refilled over burst/perSecond seconds. */
  burst: number;
  /** Distinguishes limiters (e.g. the main and the admin listener). */
  name: string;
}

export type SharedRateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

export interface SharedRateLimiter {
  /**
   * Counts `points` requests (default one) for `clientKey` in Redis, so every
   * node draws on the same budget. Undefined when Redis is unavailable or
   * failing: the caller then decides with its local limiter.
   */
  consume(clientKey: string, points?: number): Promise<SharedRateDecision | undefined>;
}

/**
 * Per-client limits counted in Redis (rate-limiter-flexible's RateLimiterRedis
 * on our ioredis client), with the same shape as the local limiter: perSecond
 * per one-second window, then a burst allowance. Calls go through the
 * connection's health state, so a slow Redis costs at most one command
 * timeout before every node falls back to its local limits.
 */
export function createSharedRateLimiter(opts: SharedRateLimitOptions): SharedRateLimiter {
  const { connection, perSecond, burst, name } = opts;
  const prefix = connection.key('ratelimit', name, String(perSecond), String(burst));
  const sustained = new RateLimiterRedis({ storeClient: connection.client, keyPrefix: `${prefix}:rate`, points: perSecond, duration: 1, rejectIfRedisNotReady: true });
  const limiter =
    burst > 0
      ? new BurstyRateLimiter(
          sustained,
          new RateLimiterRedis({
            storeClient: connection.client,
            keyPrefix: `${prefix}:burst`,
            points: burst,
            duration: Math.max(1, Math.ceil(burst / perSecond)),
            rejectIfRedisNotReady: true,
          }),
        )
      : sustained;

  return {
    async consume(clientKey, points = 1) {
      const r = await connection.attempt('rate limit', async () => {
        try {
          await limiter.consume(clientKey, points);
          return { allowed: true } as const;
        } catch (rejection) {
          // Over the limit is an answer, not a Redis failure; anything else is a failure.
          if (rejection instanceof RateLimiterRes) {
            return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(rejection.msBeforeNext / 1000)) } as const;
          }
          throw rejection;
        }
      });
      return r.ok ? r.value : undefined;
    },
  };
}
