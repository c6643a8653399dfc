interface Flight<T> {
  promise: Promise<T>;
  /** Callers given this flight's promise so far; final once it settles (the key is freed just before). */
  callers: number;
}

/**
 * Collapses concurrent calls per key: while one `fn` for a key is running,
 * other callers of that key get its promise (same value or same error).
 * The key is freed just before the call settles, so failures are not
 * remembered, and a caller that sees the value knows how many share it.
 */
export class SingleFlight<T> {
  readonly #inFlight = new Map<string, Flight<T>>();

  run(key: string, fn: () => Promise<T>): Promise<T> {
    return this.#join(key, fn).promise;
  }

  /**
   * run(), also telling whether this caller is the only one that got the
   * value: only then may it treat the value as its own (e.g. give back a
   * buffer in it once it is done with it).
   */
  async runAlone(key: string, fn: () => Promise<T>): Promise<{ value: T; alone: boolean }> {
    const flight = this.#join(key, fn);
    const value = await flight.promise;
    return { value, alone: flight.callers === 1 };
  }

  #join(key: string, fn: () => Promise<T>): Flight<T> {
    const existing = this.#inFlight.get(key);
    if (existing !== undefined) {
      existing.callers += 1;
      return existing;
    }
    const flight: Flight<T> = { promise: Promise.resolve() as Promise<T>, callers: 1 };
    // In the map before fn runs, so a synchronous throw from fn (a rejection here) frees the key too.
    this.#inFlight.set(key, flight);
    flight.promise = (async () => {
      try {
        return await fn();
      } finally {
        if (this.#inFlight.get(key) === flight) this.#inFlight.delete(key);
      }
    })();
    return flight;
  }

  /** Number of keys with a call running. */
  get size(): number {
    return this.#inFlight.size;
  }

  /** Resolves once every call running now has settled (whatever the outcome). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#inFlight.values()].map((f) => f.promise));
  }
}
