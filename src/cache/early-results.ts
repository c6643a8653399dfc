interface Waiting<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

/**
 * Results handed out before the work that made them has finished: a source
 * fetched from the origin can be transformed while it is still being written
 * to disk. Waiters get the first of an early publish() or the work's own
 * result (or error); the work itself is unchanged, so callers that need it
 * finished (single-flight joiners, fill leases) still wait for all of it.
 */
export class EarlyResults<T> {
  readonly #waiting = new Map<string, Waiting<T>>();

  /** The value published early for `key`, or whatever `work` settles with, whichever comes first. */
  wait(key: string, work: Promise<T>): Promise<T> {
    let waiting = this.#waiting.get(key);
    if (waiting === undefined) {
      const { promise, resolve, reject } = Promise.withResolvers<T>();
      const created: Waiting<T> = { promise, resolve };
      waiting = created;
      this.#waiting.set(key, created);
      work.then(resolve, reject).finally(() => {
        if (this.#waiting.get(key) === created) this.#waiting.delete(key);
      });
    }
    return waiting.promise;
  }

  /** Hands `value` to the waiters of `key` now (no-op without any). */
  publish(key: string, value: T): void {
    this.#waiting.get(key)?.resolve(value);
  }
}
