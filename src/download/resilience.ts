import {
  BrokenCircuitError,
  BulkheadRejectedError,
  bulkhead,
  circuitBreaker,
  CircuitState,
  ConsecutiveBreaker,
  handleWhen,
  type BulkheadPolicy,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Downloader, FetchRequest, FetchResult } from './types.ts';

export interface ResilienceSettings {
  /** Origin fetches running at once, all hosts together. */
  maxConcurrent: number;
  /** Fetches waiting for a global slot at most; more are refused (overloaded). */
  maxQueue: number;
  /** Origin fetches running at once to one host. */
  maxConcurrentPerHost: number;
  /** Fetches waiting for a slot of one host at most. */
  maxQueuePerHost: number;
  /** Consecutive failures (5xx, timeouts, connection failures) that open a host's breaker; 0: no breaker. */
  breakerFailures: number;
  /** How long an open breaker refuses before letting one probe through, ms. */
  breakerCooldownMs: number;
}

/** Why an origin fetch failed, coarsely: metrics label and circuit breaker input. */
export type OriginFailureKind =
  | 'timeout'
  | 'connection'
  | 'status_5xx'
  | 'status_4xx'
  | 'not_found'
  | 'too_large'
  | 'denied'
  | 'protocol';

export type BreakerStateName = 'closed' | 'open' | 'half_open';

/** Hooks for metrics; every one optional. */
export interface OriginObserver {
  /** An origin fetch ended (time spent fetching, queue wait excluded). */
  fetched?(outcome: 'ok' | 'error', seconds: number, kind: OriginFailureKind | undefined): void;
  /** +1 when a fetch starts waiting for a slot, -1 when it stops waiting. */
  queueChanged?(delta: number): void;
  /** +1 when a fetch starts running, -1 when it ends. */
  activeChanged?(delta: number): void;
  /** A fetch was refused without reaching the origin. */
  refused?(reason: 'global_queue_full' | 'host_queue_full' | 'breaker_open'): void;
  breakerChanged?(host: string, from: BreakerStateName, to: BreakerStateName): void;
}

export interface ResilienceOptions {
  observer?: OriginObserver | undefined;
  logger?: Logger | undefined;
}

/** Kinds that say the host itself is unwell (not that one URL is bad): only these count toward opening the breaker. */
const TRIPPING_KINDS: ReadonlySet<OriginFailureKind> = new Set(['timeout', 'connection', 'status_5xx']);

/** Breakers kept for hosts before closed ones are forgotten (they hold no state worth keeping). */
const MAX_TRACKED_HOSTS = 10_000;

/**
 * Classifies a download failure. The downloader's codes are coarse
 * (origin_error covers 5xx, 4xx and broken connections), so its detail
 * line, written by our own code, refines origin_error.
 */
export function originFailureKind(err: unknown): OriginFailureKind {
  if (!(err instanceof FastImageCacheError)) return 'connection';
  switch (err.code) {
    case 'origin_timeout':
      return 'timeout';
    case 'not_found':
      return 'not_found';
    case 'too_large':
      return 'too_large';
    case 'host_denied':
    case 'address_denied':
    case 'scheme_denied':
    case 'port_denied':
    case 'loop_denied':
    case 'bad_url':
      return 'denied';
    case 'origin_error': {
      const status = /^origin said (\d{3})\b/.exec(err.detail ?? '')?.[1];
      if (status !== undefined) {
        // 429 is the origin asking us to back off: treated like a 5xx.
        return status.startsWith('5') || status === '429' ? 'status_5xx' : 'status_4xx';
      }
      if (/redirect|Accept-Encoding/i.test(err.detail ?? '')) return 'protocol';
      return 'connection'; // refused, reset, DNS failure, body cut short
    }
    default:
      return 'protocol';
  }
}

function stateName(state: CircuitState): BreakerStateName {
  if (state === CircuitState.Open || state === CircuitState.Isolated) return 'open';
  if (state === CircuitState.HalfOpen) return 'half_open';
  return 'closed';
}

interface HostGuard {
  bulkhead: BulkheadPolicy;
  breaker: CircuitBreakerPolicy | undefined;
  openedAt: number;
}

export interface ResilientDownloader extends Downloader {
  /** Breakers that are not closed now, for the admin API. */
  unhealthyHosts(): Array<{ host: string; state: BreakerStateName; retryInSeconds: number }>;
}

/**
 * Wraps a Downloader with cockatiel policies: a circuit breaker and a bulkhead
 * per origin host (`url.host`, i.e. host plus any non-default port), inside a
 * global bulkhead. Beyond the queues a fetch is refused with 503 overloaded; a
 * host whose breaker is open gets 503 origin_unavailable until its cool-down
 * ends, then a single probe decides (others wait for its verdict).
 */
export function withResilience(inner: Downloader, settings: ResilienceSettings, options: ResilienceOptions = {}): ResilientDownloader {
  const { observer, logger } = options;
  const global = bulkhead(settings.maxConcurrent, settings.maxQueue);
  const hosts = new Map<string, HostGuard>();

  function guardFor(host: string): HostGuard {
    const guard = hosts.get(host);
    if (guard !== undefined) return guard;
    if (hosts.size >= MAX_TRACKED_HOSTS) forgetIdleHosts();
    const created: HostGuard = {
      bulkhead: bulkhead(settings.maxConcurrentPerHost, settings.maxQueuePerHost),
      breaker: undefined,
      openedAt: 0,
    };
    if (settings.breakerFailures > 0) {
      const breaker = circuitBreaker(
        handleWhen((err) => TRIPPING_KINDS.has(originFailureKind(err))),
        { halfOpenAfter: settings.breakerCooldownMs, breaker: new ConsecutiveBreaker(settings.breakerFailures) },
      );
      let current: BreakerStateName = 'closed';
      breaker.onStateChange((state) => {
        const next = stateName(state);
        if (next === 'open') created.openedAt = Date.now();
        if (next === current) return;
        logger?.warn({ originHost: host, from: current, to: next }, 'origin circuit breaker changed state');
        observer?.breakerChanged?.(host, current, next);
        current = next;
      });
      created.breaker = breaker;
    }
    hosts.set(host, created);
    return created;
  }

  function forgetIdleHosts(): void {
    for (const [host, guard] of hosts) {
      const idle = guard.bulkhead.executionSlots === settings.maxConcurrentPerHost && guard.bulkhead.queueSlots === settings.maxQueuePerHost;
      if (idle && (guard.breaker === undefined || guard.breaker.state === CircuitState.Closed)) hosts.delete(host);
    }
  }

  /** Runs fn in a bulkhead slot, reporting queue waits; a full queue becomes 503 overloaded. */
  async function inSlot<T>(policy: BulkheadPolicy, scope: 'global' | 'host', fn: () => Promise<T>): Promise<T> {
    // execute() decides synchronously whether to run, queue or refuse, so this is exact.
    const willWait = policy.executionSlots <= 0 && policy.queueSlots > 0;
    let waiting = willWait;
    if (willWait) observer?.queueChanged?.(1);
    try {
      return await policy.execute(() => {
        if (waiting) {
          waiting = false;
          observer?.queueChanged?.(-1);
        }
        return fn();
      });
    } catch (err) {
      if (err instanceof BulkheadRejectedError) {
        observer?.refused?.(scope === 'global' ? 'global_queue_full' : 'host_queue_full');
        throw new FastImageCacheError('overloaded', `${scope} origin fetch queue full`, { cause: err, retryAfterSeconds: 1 });
      }
      throw err;
    } finally {
      if (waiting) observer?.queueChanged?.(-1);
    }
  }

  async function timedFetch(req: FetchRequest): Promise<FetchResult> {
    const started = performance.now();
    observer?.activeChanged?.(1);
    try {
      const result = await inner.fetch(req);
      observer?.fetched?.('ok', (performance.now() - started) / 1000, undefined);
      return result;
    } catch (err) {
      observer?.fetched?.('error', (performance.now() - started) / 1000, originFailureKind(err));
      throw err;
    } finally {
      observer?.activeChanged?.(-1);
    }
  }

  async function fetch(req: FetchRequest): Promise<FetchResult> {
    const host = req.url.host;
    const guard = guardFor(host);
    const limited = () => inSlot(guard.bulkhead, 'host', () => inSlot(global, 'global', () => timedFetch(req)));
    if (guard.breaker === undefined) return limited();
    try {
      return await guard.breaker.execute(limited);
    } catch (err) {
      if (err instanceof BrokenCircuitError) {
        observer?.refused?.('breaker_open');
        const remainingMs = settings.breakerCooldownMs - (Date.now() - guard.openedAt);
        throw new FastImageCacheError('origin_unavailable', `circuit breaker open for ${host}`, {
          cause: err,
          retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)),
        });
      }
      throw err;
    }
  }

  return {
    fetch,
    preload: async () => {
      await inner.preload?.();
    },
    close: () => inner.close(),
    unhealthyHosts() {
      const out: Array<{ host: string; state: BreakerStateName; retryInSeconds: number }> = [];
      for (const [host, guard] of hosts) {
        if (guard.breaker === undefined || guard.breaker.state === CircuitState.Closed) continue;
        const remainingMs = settings.breakerCooldownMs - (Date.now() - guard.openedAt);
        out.push({ host, state: stateName(guard.breaker.state), retryInSeconds: Math.max(0, Math.ceil(remainingMs / 1000)) });
      }
      return out;
    },
  };
}
