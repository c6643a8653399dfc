import type { ClientRateLimiter } from './rate-limit.ts';

/** Per-client limits counted in Redis; undefined answers mean "Redis unavailable, decide locally". */
export interface SharedLimits {
  consume(clientKey: string): Promise<{ allowed: true } | { allowed: false; retryAfterSeconds: number } | undefined>;
}

/**
 * The per-client limits of several nodes: counted in Redis while it answers
 * (so every node draws on one budget per client), in this process when it
 * does not. Limiting off (no local limiter) stays off.
 */
export function withSharedLimits(local: ClientRateLimiter | undefined, shared: SharedLimits | undefined): ClientRateLimiter | undefined {
  if (local === undefined || shared === undefined) return local;
  return {
    async consume(clientKey) {
      return (await shared.consume(clientKey)) ?? local.consume(clientKey);
    },
  };
}
