/**
 * The index's memory: a segmented LRU over entry ids, in typed arrays rather
 * than objects and strings, so a million entries cost tens of megabytes.
 *
 * An id `"<16 hex>/<8 hex>"` is held as three 32-bit words; slots hold the
 * words, size, write time and list links; an open-addressing hash table
 * (linear probing, backward-shift deletion) maps words to slots.
 *
 * Segments: new entries enter PROBATION; an entry used again is promoted to
 * PROTECTED. Victims come from the probation end first, so a scan of
 * one-hit wonders cycles through probation without flushing the hot set.
 * When PROTECTED outgrows its share, its least recently used entries are
 * demoted back to probation (they get one more chance before eviction).
 */

export const NONE = -1;
export const PROBATION = 1;
export const PROTECTED = 2;
export type Segment = typeof PROBATION | typeof PROTECTED;

const FREE = 0;
const ID_LENGTH = 25;
const SLASH = 0x2f;
const INITIAL_CAPACITY = 1024;
/** Flag: loaded by a rebuild and not used since; ordered by write time when the rebuild ends. */
const FLAG_REBUILT = 1;

/** ArrayBuffer.prototype.transfer (ES2024, in Node since 21; this project's TypeScript lib is ES2023). */
type TransferableBuffer = ArrayBuffer & { transfer(newByteLength: number): ArrayBuffer };

/** One segment's list ends (most / least recently used), entry count and bytes. */
class SegmentState {
  head = NONE;
  tail = NONE;
  count = 0;
  bytes = 0;
}

/** An element of a typed array (indices are always in range here; 0 keeps the type a number). */
function at(array: Uint32Array | Int32Array | Uint8Array, index: number): number {
  return array[index] ?? 0;
}

export class SlruTable {
  #capacity = 0;
  #k0 = new Uint32Array(0);
  #k1 = new Uint32Array(0);
  #k2 = new Uint32Array(0);
  #size = new Uint32Array(0);
  /** Last write, seconds since epoch. */
  #written = new Uint32Array(0);
  #prev = new Int32Array(0);
  #next = new Int32Array(0);
  #segment = new Uint8Array(0);
  #flags = new Uint8Array(0);
  /** slot + 1, 0 = empty. */
  #buckets = new Int32Array(0);
  #mask = 0;
  #freeHead = NONE;
  #used = 0;
  /** The words of the id last parsed by #parse (no array per lookup). */
  #p0 = 0;
  #p1 = 0;
  #p2 = 0;
  readonly #probation = new SegmentState();
  readonly #protected = new SegmentState();

  constructor() {
    this.#grow(INITIAL_CAPACITY);
  }

  get entries(): number {
    return this.#probation.count + this.#protected.count;
  }

  get totalBytes(): number {
    return this.#probation.bytes + this.#protected.bytes;
  }

  segmentCount(segment: Segment): number {
    return this.#state(segment).count;
  }

  segmentBytes(segment: Segment): number {
    return this.#state(segment).bytes;
  }

  #state(segment: Segment): SegmentState {
    return segment === PROBATION ? this.#probation : this.#protected;
  }

  /** Bytes held by the arrays (the index's whole memory apart from a few objects). */
  get memoryBytes(): number {
    return this.#capacity * (4 * 3 + 4 + 4 + 4 * 2 + 1 + 1) + this.#buckets.byteLength;
  }

  /** The slot of `id`, or NONE. */
  find(id: string): number {
    return this.#parse(id) ? this.#find(this.#p0, this.#p1, this.#p2) : NONE;
  }

  idOf(slot: number): string {
    return `${hex8(at(this.#k0, slot))}${hex8(at(this.#k1, slot))}/${hex8(at(this.#k2, slot))}`;
  }

  sizeOf(slot: number): number {
    return at(this.#size, slot);
  }

  writtenOf(slot: number): number {
    return at(this.#written, slot) * 1000;
  }

  segmentOf(slot: number): Segment {
    return this.#segment[slot] as Segment;
  }

  /**
   * Adds `id` (or updates it: new size and write time, moved to the most
   * recently used end of its segment). New entries enter probation, at the
   * most recently used end, or at the least recently used end when `rebuilt`.
   */
  upsert(id: string, bytes: number, writtenMs: number, rebuilt = false): number {
    if (!this.#parse(id)) throw new Error('malformed cache entry id');
    const w0 = this.#p0;
    const w1 = this.#p1;
    const w2 = this.#p2;
    let slot = this.#find(w0, w1, w2);
    if (slot !== NONE) {
      const segment = this.segmentOf(slot);
      this.#state(segment).bytes += bytes - at(this.#size, slot);
      this.#size[slot] = bytes;
      this.#written[slot] = Math.floor(writtenMs / 1000);
      this.#flags[slot] = 0;
      this.#unlink(slot);
      this.#linkHead(slot, segment);
      return slot;
    }
    slot = this.#allocate();
    this.#k0[slot] = w0;
    this.#k1[slot] = w1;
    this.#k2[slot] = w2;
    this.#size[slot] = bytes;
    this.#written[slot] = Math.floor(writtenMs / 1000);
    this.#flags[slot] = rebuilt ? FLAG_REBUILT : 0;
    this.#insertBucket(slot);
    this.#probation.bytes += bytes;
    this.#probation.count += 1;
    if (rebuilt) this.#linkTail(slot, PROBATION);
    else this.#linkHead(slot, PROBATION);
    return slot;
  }

  /** A use: probation → protected, protected → its most recently used end. */
  touch(slot: number): void {
    const from = this.segmentOf(slot);
    this.#flags[slot] = 0;
    this.#unlink(slot);
    if (from === PROBATION) this.#move(slot, this.#probation, this.#protected);
    this.#linkHead(slot, PROTECTED);
  }

  /** Moves protected entries back to probation, least recently used first, until protected holds at most `maxBytes`. */
  demoteOver(maxBytes: number): void {
    while (this.#protected.bytes > maxBytes && this.#protected.tail !== NONE) {
      const slot = this.#protected.tail;
      this.#unlink(slot);
      this.#move(slot, this.#protected, this.#probation);
      this.#linkHead(slot, PROBATION);
    }
  }

  /** The next eviction victim (probation's least recently used, else protected's), or NONE. */
  victim(): number {
    return this.#probation.tail !== NONE ? this.#probation.tail : this.#protected.tail;
  }

  remove(slot: number): void {
    const state = this.#state(this.segmentOf(slot));
    this.#unlink(slot);
    state.count -= 1;
    state.bytes -= at(this.#size, slot);
    this.#removeBucket(slot);
    this.#segment[slot] = FREE;
    this.#next[slot] = this.#freeHead;
    this.#freeHead = slot;
    this.#used -= 1;
  }

  /** Entries loaded by a rebuild and not used since, put in write-time order at the eviction end of probation. */
  orderRebuilt(): void {
    let n = 0;
    for (let s = this.#probation.tail; s !== NONE; s = at(this.#prev, s)) {
      if ((at(this.#flags, s) & FLAG_REBUILT) !== 0) n += 1;
    }
    // A typed array: a million slot numbers in 4 MB, not a growing array of numbers.
    const slots = new Int32Array(n);
    n = 0;
    for (let s = this.#probation.tail; s !== NONE; s = at(this.#prev, s)) {
      if ((at(this.#flags, s) & FLAG_REBUILT) !== 0) slots[n++] = s;
    }
    for (const s of slots) this.#unlink(s);
    // Newest first, each appended at the eviction end: the oldest ends up evicted first.
    slots.sort((a, b) => at(this.#written, b) - at(this.#written, a));
    for (const s of slots) {
      this.#flags[s] = 0;
      this.#linkTail(s, PROBATION);
    }
  }

  /** The earliest write time of any entry (ms), or undefined when empty. */
  oldestWrite(): number | undefined {
    let oldest = Infinity;
    for (let s = 0; s < this.#capacity; s++) {
      if (this.#segment[s] !== FREE && at(this.#written, s) < oldest) oldest = at(this.#written, s);
    }
    return oldest === Infinity ? undefined : oldest * 1000;
  }

  clear(): void {
    this.#capacity = 0;
    this.#buckets = new Int32Array(0);
    this.#freeHead = NONE;
    this.#used = 0;
    for (const state of [this.#probation, this.#protected]) {
      state.head = NONE;
      state.tail = NONE;
      state.count = 0;
      state.bytes = 0;
    }
    this.#grow(INITIAL_CAPACITY);
  }

  /** Parses `id` into #p0..#p2; false when it is not an id. */
  #parse(id: string): boolean {
    if (id.length !== ID_LENGTH || id.charCodeAt(16) !== SLASH) return false;
    const w0 = hexWord(id, 0);
    const w1 = hexWord(id, 8);
    const w2 = hexWord(id, 17);
    if (w0 < 0 || w1 < 0 || w2 < 0) return false;
    this.#p0 = w0;
    this.#p1 = w1;
    this.#p2 = w2;
    return true;
  }

  #find(w0: number, w1: number, w2: number): number {
    let b = bucketOf(w0, w2) & this.#mask;
    for (;;) {
      const v = at(this.#buckets, b);
      if (v === 0) return NONE;
      const s = v - 1;
      if (this.#k0[s] === w0 && this.#k1[s] === w1 && this.#k2[s] === w2) return s;
      b = (b + 1) & this.#mask;
    }
  }

  #insertBucket(slot: number): void {
    let b = bucketOf(at(this.#k0, slot), at(this.#k2, slot)) & this.#mask;
    while (this.#buckets[b] !== 0) b = (b + 1) & this.#mask;
    this.#buckets[b] = slot + 1;
  }

  /** Backward-shift deletion keeps every probe chain unbroken without tombstones. */
  #removeBucket(slot: number): void {
    const mask = this.#mask;
    let hole = bucketOf(at(this.#k0, slot), at(this.#k2, slot)) & mask;
    while (this.#buckets[hole] !== slot + 1) hole = (hole + 1) & mask;
    let probe = hole;
    for (;;) {
      this.#buckets[hole] = 0;
      for (;;) {
        probe = (probe + 1) & mask;
        const v = at(this.#buckets, probe);
        if (v === 0) return;
        const home = bucketOf(at(this.#k0, v - 1), at(this.#k2, v - 1)) & mask;
        // Stays if its home lies cyclically in (hole, probe]; otherwise it moves into the hole.
        const stays = hole <= probe ? hole < home && home <= probe : hole < home || home <= probe;
        if (!stays) break;
      }
      this.#buckets[hole] = at(this.#buckets, probe);
      hole = probe;
    }
  }

  #allocate(): number {
    if (this.#freeHead === NONE) this.#grow(this.#capacity * 2);
    const slot = this.#freeHead;
    this.#freeHead = at(this.#next, slot);
    this.#used += 1;
    // Keep the hash table at most half full: short probe chains.
    if (this.#used * 2 > this.#buckets.length) this.#rehash(this.#buckets.length * 2);
    return slot;
  }

  #grow(capacity: number): void {
    const old = this.#capacity;
    // transfer() moves the bytes into a larger (zero-filled) buffer and frees the old one at once, where a copy would
    // leave it to the next full GC: a rebuild doubles the table many times. After clear() (old = 0) it starts afresh.
    const grown = <T extends Uint32Array | Int32Array | Uint8Array>(from: T, make: (buffer: ArrayBuffer) => T): T => {
      const bytes = capacity * from.BYTES_PER_ELEMENT;
      return make(old === 0 ? new ArrayBuffer(bytes) : (from.buffer as TransferableBuffer).transfer(bytes));
    };
    this.#k0 = grown(this.#k0, (b) => new Uint32Array(b));
    this.#k1 = grown(this.#k1, (b) => new Uint32Array(b));
    this.#k2 = grown(this.#k2, (b) => new Uint32Array(b));
    this.#size = grown(this.#size, (b) => new Uint32Array(b));
    this.#written = grown(this.#written, (b) => new Uint32Array(b));
    this.#prev = grown(this.#prev, (b) => new Int32Array(b));
    this.#next = grown(this.#next, (b) => new Int32Array(b));
    this.#segment = grown(this.#segment, (b) => new Uint8Array(b));
    this.#flags = grown(this.#flags, (b) => new Uint8Array(b));
    // New slots join the free list, lowest first.
    for (let s = capacity - 1; s >= old; s--) {
      this.#next[s] = this.#freeHead;
      this.#freeHead = s;
    }
    this.#capacity = capacity;
    if (this.#buckets.length < capacity) this.#rehash(Math.max(capacity, this.#buckets.length * 2));
  }

  #rehash(buckets: number): void {
    this.#buckets = new Int32Array(buckets);
    this.#mask = buckets - 1;
    for (let s = 0; s < this.#capacity; s++) {
      if (this.#segment[s] !== FREE) this.#insertBucket(s);
    }
  }

  /** Moves a slot's count and bytes from one segment's totals to another's (not its links). */
  #move(slot: number, from: SegmentState, to: SegmentState): void {
    const size = at(this.#size, slot);
    from.count -= 1;
    from.bytes -= size;
    to.count += 1;
    to.bytes += size;
  }

  #linkHead(slot: number, segment: Segment): void {
    const state = this.#state(segment);
    this.#segment[slot] = segment;
    this.#prev[slot] = NONE;
    this.#next[slot] = state.head;
    if (state.head !== NONE) this.#prev[state.head] = slot;
    state.head = slot;
    if (state.tail === NONE) state.tail = slot;
  }

  #linkTail(slot: number, segment: Segment): void {
    const state = this.#state(segment);
    this.#segment[slot] = segment;
    this.#next[slot] = NONE;
    this.#prev[slot] = state.tail;
    if (state.tail !== NONE) this.#next[state.tail] = slot;
    state.tail = slot;
    if (state.head === NONE) state.head = slot;
  }

  #unlink(slot: number): void {
    const state = this.#state(this.segmentOf(slot));
    const p = at(this.#prev, slot);
    const n = at(this.#next, slot);
    if (p !== NONE) this.#next[p] = n;
    else state.head = n;
    if (n !== NONE) this.#prev[n] = p;
    else state.tail = p;
    this.#prev[slot] = NONE;
    this.#next[slot] = NONE;
  }
}

/** The three words of an id, or undefined when it is not one. */
export function parseId(id: string): [number, number, number] | undefined {
  if (id.length !== ID_LENGTH || id.charCodeAt(16) !== SLASH) return undefined;
  const words: [number, number, number] = [hexWord(id, 0), hexWord(id, 8), hexWord(id, 17)];
  return words.every((w) => w >= 0) ? words : undefined;
}

/**
 * The value of the 8 lowercase hex digits of `s` at `start`, or -1: without a
 * regex or substrings, since a rebuild parses every id of the cache.
 */
function hexWord(s: string, start: number): number {
  let value = 0;
  for (let i = start; i < start + 8; i++) {
    const c = s.charCodeAt(i);
    const digit = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

function bucketOf(w0: number, w2: number): number {
  // w0 is already uniform (an HMAC); mixing in w2 spreads the items of one group.
  return (w0 ^ Math.imul(w2, 0x9e3779b1)) >>> 0;
}

function hex8(word: number): string {
  return word.toString(16).padStart(8, '0');
}
