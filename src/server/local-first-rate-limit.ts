import type { ClientRateLimiter, RateLimitDecision, RateLimitSettings } from './rate-limit.ts';

/**
 * A count of a client's requests kept outside this process (the cluster
 * primary, Redis), taking `points` requests at once. Undefined: the count
 * cannot be reached, and this process's own limiter decides alone.
 */
export type SharedCount = (clientKey: string, points: number) => Promise<RateLimitDecision | undefined>;

/** Requests a process admits for one client before it reports them: at most 5 % of the client's budget, 64 at most. */
export function reportEvery(settings: RateLimitSettings): number {
  return Math.min(64, Math.max(1, Math.floor((settings.perSecond + settings.burst) / 20)));
}

/** Requests admitted but not yet reported are reported on the first request after this long. */
const REPORT_AFTER_MS = 1_000;

/**
 * Per-client limits that several processes share without a round trip per
 * request. This process's own limiter (the same limits) decides each request;
 * every `every`-th request admitted for a client is reported, with the ones
 * before it, to the shared count, which answers for the whole batch. When the
 * shared count says the client is over, this process refuses it until the
 * Retry-After that answer gave, without asking again.
 *
 * At most one report per client is in flight in a process: a request that
 * needs a decision while one is waits for its answer, so concurrent requests
 * cannot run ahead of a refusal on its way back.
 *
 * Bound: a process admits at most every − 1 requests per client that the
 * shared count does not know of yet, so P processes admit at most
 * P × (every − 1) above the limit in a window, however many arrive at once. A batch that crosses the
 * sustained budget is charged whole to the burst allowance, so near the limit
 * the count errs towards refusing.
 */
export class LocalFirstRateLimiter implements ClientRateLimiter {
  readonly #local: ClientRateLimiter;
  readonly #shared: SharedCount;
  readonly #every: number;
  readonly #now: () => number;
  /** Admitted, not yet reported, per client. */
  #unreported = new Map<string, number>();
  /** Clients the shared count refused, until when (ms). */
  #refusedUntil = new Map<string, number>();
  /** The report in flight, per client. */
  #reporting = new Map<string, Promise<unknown>>();
  #reportedAt: number;

  constructor(local: ClientRateLimiter, shared: SharedCount, every: number, now: () => number = Date.now) {
    this.#local = local;
    this.#shared = shared;
    this.#every = every;
    this.#now = now;
    this.#reportedAt = now();
  }

  async consume(clientKey: string): Promise<RateLimitDecision> {
    const now = this.#now();
    if (now - this.#reportedAt >= REPORT_AFTER_MS) this.#reportAll(now);

    const refused = this.#refusal(clientKey);
    if (refused) return refused;

    const local = await this.#local.consume(clientKey);
    if (!local.allowed) return local;

    // Decide only with no report in flight; from here to #report's call nothing awaits, so the count below stays exact.
    for (let pending = this.#reporting.get(clientKey); pending; pending = this.#reporting.get(clientKey)) {
      await pending;
      const refusedMeanwhile = this.#refusal(clientKey);
      if (refusedMeanwhile) return refusedMeanwhile;
    }

    const admitted = (this.#unreported.get(clientKey) ?? 0) + 1;
    if (admitted < this.#every) {
      this.#unreported.set(clientKey, admitted);
      return local;
    }
    this.#unreported.delete(clientKey);
    return this.#report(clientKey, admitted);
  }

  /** The refusal the shared count gave this client, while it lasts. */
  #refusal(clientKey: string): RateLimitDecision | undefined {
    const until = this.#refusedUntil.get(clientKey);
    if (until === undefined) return undefined;
    const now = this.#now();
    if (until > now) return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((until - now) / 1000)) };
    this.#refusedUntil.delete(clientKey);
    return undefined;
  }

  /** Reports `points` admitted requests; the caller has checked that no report for the client is in flight. */
  #report(clientKey: string, points: number): Promise<RateLimitDecision> {
    const answered = this.#shared(clientKey, points).then((answer): RateLimitDecision => {
      if (answer === undefined || answer.allowed) return { allowed: true };
      this.#refusedUntil.set(clientKey, this.#now() + answer.retryAfterSeconds * 1000);
      return answer;
    });
    const settled = answered.finally(() => this.#reporting.delete(clientKey));
    this.#reporting.set(clientKey, settled);
    return settled;
  }

  /** Reports what every client has left unreported (their answers still refuse later requests), and forgets expired refusals. */
  #reportAll(now: number): void {
    this.#reportedAt = now;
    const batches = this.#unreported;
    this.#unreported = new Map();
    for (const [clientKey, points] of batches) {
      // A client with a report in flight keeps its batch for the next one.
      if (this.#reporting.has(clientKey)) this.#unreported.set(clientKey, points);
      else void this.#report(clientKey, points);
    }
    for (const [clientKey, until] of this.#refusedUntil) if (until <= now) this.#refusedUntil.delete(clientKey);
  }
}
