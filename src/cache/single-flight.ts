/**
 * Collapses concurrent calls per key: while one `fn` for a key is running,
 * other callers of that key get its promise (same value or same error).
 * The key is freed as soon as it settles, so failures are not remembered.
 */
export class SingleFlight<T> {
  readonly #inFlight = new Map<string, Promise<T>>();

  run(key: string, fn: () => Promise<T>): Promise<T> {
    const existing = this.#inFlight.get(key);
    if (existing !== undefined) return existing;

    // The async wrapper turns a synchronous throw from fn into a rejection.
    const flight = (async () => fn())().finally(() => {
      if (this.#inFlight.get(key) === flight) this.#inFlight.delete(key);
    });
    this.#inFlight.set(key, flight);
    return flight;
  }

  /** Number of keys with a call running. */
  get size(): number {
    return this.#inFlight.size;
  }

  /** Resolves once every call running now has settled (whatever the outcome). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#inFlight.values()]);
  }
}
