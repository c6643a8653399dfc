/**
 * Lets a recurring warning through at most once per interval, counting what
 * it held back, so a full disk logs one line a minute instead of one per
 * request.
 */
export class WarnLimiter {
  readonly #intervalMs: number;
  readonly #now: () => number;
  #nextAt = -Infinity;
  #suppressed = 0;

  constructor(intervalMs: number, now: () => number) {
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** undefined when this occurrence is held back; otherwise how many were held back since the last one let through. */
  take(): { suppressed: number } | undefined {
    const now = this.#now();
    if (now < this.#nextAt) {
      this.#suppressed += 1;
      return undefined;
    }
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#nextAt = now + this.#intervalMs;
    return { suppressed };
  }
}
