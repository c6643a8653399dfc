/**
 * Results of a pure function of a string, remembered for the hottest inputs
 * (at most `maxEntries`; the oldest are forgotten first). For work a hit would
 * otherwise redo on every request with the same answer: cache keys and entry
 * ids (hashes and HMACs) of a URL, the URL policy's verdict.
 */
export class BoundedMemo<V> {
  readonly #maxEntries: number;
  readonly #values = new Map<string, V>();

  constructor(maxEntries: number) {
    this.#maxEntries = Math.max(0, Math.floor(maxEntries));
  }

  get(key: string): V | undefined {
    return this.#values.get(key);
  }

  set(key: string, value: V): void {
    if (this.#maxEntries === 0) return;
    if (!this.#values.has(key) && this.#values.size >= this.#maxEntries) {
      // Map iterates in insertion order: the first key is the oldest.
      const oldest = this.#values.keys().next().value;
      if (oldest !== undefined) this.#values.delete(oldest);
    }
    this.#values.set(key, value);
  }

  /** The remembered result for `key`, or `compute(key)` remembered now (a throw is not remembered). */
  getOrCompute(key: string, compute: () => V): V {
    const known = this.#values.get(key);
    if (known !== undefined) return known;
    const value = compute();
    this.set(key, value);
    return value;
  }

  get size(): number {
    return this.#values.size;
  }

  clear(): void {
    this.#values.clear();
  }
}
