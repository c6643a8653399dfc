import type { BreakerStateName, OriginObserver } from '../download/resilience.ts';
import type { Metrics } from './metrics.ts';

/**
 * The origin observer of one ImageCache generation: feeds the process
 * metrics and remembers which hosts' breakers are not closed, for the admin
 * API. A retired generation is disposed, taking its breakers out of the gauges.
 */
export class OriginHealth implements OriginObserver {
  readonly #metrics: Metrics;
  readonly #states = new Map<string, BreakerStateName>();
  #disposed = false;

  constructor(metrics: Metrics) {
    this.#metrics = metrics;
  }

  fetched(outcome: 'ok' | 'error', seconds: number, kind: string | undefined): void {
    this.#metrics.originFetchDuration.observe({ outcome }, seconds);
    if (kind !== undefined) this.#metrics.originErrors.inc({ kind });
  }

  queueChanged(delta: number): void {
    if (delta > 0) this.#metrics.originQueueDepth.inc(delta);
    else this.#metrics.originQueueDepth.dec(-delta);
  }

  activeChanged(delta: number): void {
    if (delta > 0) this.#metrics.originFetchesActive.inc(delta);
    else this.#metrics.originFetchesActive.dec(-delta);
  }

  refused(reason: 'global_queue_full' | 'host_queue_full' | 'breaker_open'): void {
    if (reason === 'breaker_open') this.#metrics.circuitBreakerRefusals.inc();
    else this.#metrics.overloadRefusals.inc({ scope: reason === 'global_queue_full' ? 'global' : 'host' });
  }

  breakerChanged(host: string, from: BreakerStateName, to: BreakerStateName): void {
    if (this.#disposed) return;
    this.#metrics.breakerChanged(from, to);
    if (to === 'closed') this.#states.delete(host);
    else this.#states.set(host, to);
  }

  /** Hosts whose breaker is open or half-open now. */
  unhealthy(): Array<{ host: string; state: BreakerStateName }> {
    return [...this.#states].map(([host, state]) => ({ host, state }));
  }

  /** The generation is gone: its breakers no longer count as open. */
  dispose(): void {
    if (this.#disposed) return;
    for (const state of this.#states.values()) this.#metrics.breakerForgotten(state);
    this.#states.clear();
    this.#disposed = true;
  }
}
