/** Bodies smaller than this are read into fresh buffers: cheap to allocate, and not what drives the collector. */
export const MIN_LENT_BYTES = 16 * 1024;
/** Bodies larger than this too: a buffer kept idle for them would weigh more than it saves. */
export const MAX_LENT_BYTES = 8 * 1024 * 1024;

/**
 * Buffers lent for one read each and given back once the bytes are sent, so a
 * disk hit that the memory tier does not keep allocates nothing. Why it pays:
 * V8 counts every new ArrayBuffer's bytes against the old generation's limit
 * until the next full collection, so fresh body buffers of disk hits (a few
 * hundred MB/s) started a full mark-compact several times a second per worker;
 * a test run put concurrent marking at about 40 % of a worker's CPU.
 *
 * Sizes are powers of two; at most `maxIdleBytes` wait here. A buffer that is
 * never given back is simply collected. Giving back is the borrower's promise
 * that nothing reads the bytes any more (for a response: its last write has
 * completed), since the next take() overwrites them.
 */
export class ReadBuffers {
  readonly #maxIdleBytes: number;
  /** Idle buffers by size. */
  readonly #idle = new Map<number, ArrayBuffer[]>();
  #idleBytes = 0;
  /** Buffers out on loan: only these are taken back, and each once. */
  readonly #lent = new WeakSet<ArrayBuffer>();

  constructor(maxIdleBytes: number) {
    this.#maxIdleBytes = Math.max(0, maxIdleBytes);
  }

  /** Whether take() lends for a body of `size` bytes (otherwise it allocates one that nothing gives back). */
  lends(size: number): boolean {
    return this.#maxIdleBytes > 0 && size >= MIN_LENT_BYTES && size <= MAX_LENT_BYTES;
  }

  /** A buffer of exactly `size` bytes, contents undefined: lent (see give) when lends(size), else fresh. */
  take(size: number): Buffer {
    if (!this.lends(size)) return Buffer.allocUnsafe(size);
    const capacity = sizeClass(size);
    let ab = this.#idle.get(capacity)?.pop();
    if (ab === undefined) ab = new ArrayBuffer(capacity);
    else this.#idleBytes -= capacity;
    this.#lent.add(ab);
    return Buffer.from(ab, 0, size);
  }

  /** Takes back a buffer from take(); anything else, or the same buffer a second time, is ignored. */
  give(buf: Buffer): void {
    const ab = buf.buffer;
    if (!(ab instanceof ArrayBuffer) || !this.#lent.delete(ab)) return;
    if (this.#idleBytes + ab.byteLength > this.#maxIdleBytes) return;
    let list = this.#idle.get(ab.byteLength);
    if (list === undefined) this.#idle.set(ab.byteLength, (list = []));
    list.push(ab);
    this.#idleBytes += ab.byteLength;
  }

  /** Bytes of the buffers waiting to be lent again. */
  get idleBytes(): number {
    return this.#idleBytes;
  }
}

function sizeClass(size: number): number {
  return 2 ** Math.ceil(Math.log2(size));
}
