import { FastImageCacheError, type ErrorCode } from '../errors.ts';

/**
 * Refusals that say something lasting about a source: the origin does not
 * have it, or what it has is not an image we accept. Origin 5xx and timeouts
 * are passing trouble (the circuit breaker's business), and refusals of bad
 * client input say nothing about the source: neither is remembered.
 */
export const NEGATIVE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['not_found', 'not_an_image', 'too_large']);

/** Sources remembered at most; the oldest go first (a flood of distinct bad URLs must not grow memory). */
const DEFAULT_MAX_ENTRIES = 10_000;

interface Remembered {
  code: ErrorCode;
  detail: string | undefined;
  until: number;
}

/**
 * Remembers recent lasting refusals per source key for a short TTL, so a
 * flood of requests for a missing or bad image does not reach the origin.
 * Only a refusal is kept, never bytes.
 */
export class NegativeCache {
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #maxEntries: number;
  // Map keeps insertion order: the first key is the oldest.
  readonly #entries = new Map<string, Remembered>();

  constructor(opts: { ttlMs: number; now: () => number; maxEntries?: number }) {
    this.#ttlMs = opts.ttlMs;
    this.#now = opts.now;
    this.#maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
  }

  /** Remembers `err` for `key` when it is a lasting refusal; true if it was remembered. */
  remember(key: string, err: unknown): boolean {
    if (this.#ttlMs <= 0 || !(err instanceof FastImageCacheError) || !NEGATIVE_CODES.has(err.code)) return false;
    this.#entries.delete(key);
    this.#entries.set(key, { code: err.code, detail: err.detail, until: this.#now() + this.#ttlMs });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
    return true;
  }

  /** The remembered refusal for `key` as a new error, or undefined. */
  recall(key: string): FastImageCacheError | undefined {
    const hit = this.#entries.get(key);
    if (hit === undefined) return undefined;
    if (this.#now() >= hit.until) {
      this.#entries.delete(key);
      return undefined;
    }
    return new FastImageCacheError(hit.code, `remembered refusal (negative cache): ${hit.detail ?? hit.code}`);
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
