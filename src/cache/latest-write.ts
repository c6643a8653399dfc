/**
 * Keeps the latest value written somewhere slow (a file): one write at a
 * time, and of the values asked for meanwhile only the last is written, once
 * the write under way is done. A failed write is reported and not retried;
 * the next value asked for tries again.
 */
export class LatestWrite<T> {
  readonly #write: (value: T) => Promise<void>;
  readonly #onError: (err: unknown) => void;
  #running: Promise<void> | undefined;
  #next: { value: T } | undefined;
  #lastFailed = false;

  constructor(write: (value: T) => Promise<void>, onError: (err: unknown) => void) {
    this.#write = write;
    this.#onError = onError;
  }

  /** Writes `value` now, or after the write under way (replacing any value still waiting). */
  request(value: T): void {
    this.#next = { value };
    this.#running ??= this.#drain();
  }

  /** Resolves once everything asked for so far is written (or has failed): true when the last write succeeded. */
  async flush(): Promise<boolean> {
    while (this.#running) await this.#running;
    return !this.#lastFailed;
  }

  async #drain(): Promise<void> {
    try {
      for (let next = this.#next; next; next = this.#next) {
        this.#next = undefined;
        try {
          await this.#write(next.value);
          this.#lastFailed = false;
        } catch (err) {
          this.#lastFailed = true;
          this.#onError(err);
        }
      }
    } finally {
      this.#running = undefined;
    }
  }
}
