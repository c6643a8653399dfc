/** Promises under way, by key, so that an operation can wait for those of one key (or all) to settle. */
export class PendingByKey {
  readonly #pending = new Map<string, Set<Promise<unknown>>>();

  add(key: string, work: Promise<unknown>): void {
    let set = this.#pending.get(key);
    if (set === undefined) this.#pending.set(key, (set = new Set()));
    set.add(work);
    const done = (): void => {
      set.delete(work);
      if (set.size === 0 && this.#pending.get(key) === set) this.#pending.delete(key);
    };
    work.then(done, done);
  }

  /** Resolves once what was under way for `key` (every key when omitted) has settled, whatever the outcome. */
  async settled(key?: string): Promise<void> {
    const sets = key === undefined ? [...this.#pending.values()] : [this.#pending.get(key) ?? new Set()];
    await Promise.allSettled(sets.flatMap((set) => [...set]));
  }
}
