const ROWS = 4;
const MAX_COUNT = 15;

/**
 * How often each key was asked for lately, approximately and in fixed memory
 * (a count-min sketch, as in TinyLFU): four counters per key in a table of
 * `width` per row, capped at 15, the smallest of the four read as the
 * estimate. Every `10 × width` additions all counters are halved, so the
 * counts describe the recent past and a key that was popular once fades.
 * Collisions can only raise an estimate, never lower it.
 */
export class FrequencySketch {
  readonly #table: Uint8Array;
  readonly #mask: number;
  readonly #sampleSize: number;
  #additions = 0;

  /** `width` is rounded up to a power of two (at least 16). */
  constructor(width: number) {
    const w = 2 ** Math.max(4, Math.ceil(Math.log2(Math.max(1, width))));
    this.#table = new Uint8Array(w * ROWS);
    this.#mask = w - 1;
    this.#sampleSize = 10 * w;
  }

  increment(key: string): void {
    const h = hashOf(key);
    const step = stepOf(h);
    let added = false;
    for (let row = 0, i = h; row < ROWS; row++, i = (i + step) | 0) {
      const slot = row * (this.#mask + 1) + (i & this.#mask);
      const count = this.#table[slot] as number;
      if (count < MAX_COUNT) {
        this.#table[slot] = count + 1;
        added = true;
      }
    }
    if (added && ++this.#additions >= this.#sampleSize) this.#age();
  }

  /** The estimated count of `key` (0–15). */
  frequency(key: string): number {
    const h = hashOf(key);
    const step = stepOf(h);
    let min = MAX_COUNT;
    for (let row = 0, i = h; row < ROWS; row++, i = (i + step) | 0) {
      const count = this.#table[row * (this.#mask + 1) + (i & this.#mask)] as number;
      if (count < min) min = count;
    }
    return min;
  }

  #age(): void {
    for (let i = 0; i < this.#table.length; i++) this.#table[i] = (this.#table[i] as number) >>> 1;
    this.#additions = Math.floor(this.#additions / 2);
  }
}

/** FNV-1a over the UTF-16 code units: keys here are short ids, and this costs well under a microsecond. */
function hashOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h;
}

/** A second, odd hash from the first (double hashing), so each row puts a key somewhere else. */
function stepOf(h: number): number {
  let x = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  x ^= x >>> 16;
  return x | 1;
}
