/** Bytes held under a ByteBudget; give them back with release() (idempotent). */
export interface ByteReservation {
  readonly bytes: number;
  /** Holds `bytes` from now on, at once, even beyond the limit: for a body longer than first reserved. */
  resize(bytes: number): void;
  release(): void;
}

interface Waiter {
  bytes: number;
  grant: (reservation: ByteReservation) => void;
}

/**
 * A weighted semaphore over bytes, first come first served: acquire(n) waits
 * until n more bytes fit under the limit. A request alone is always granted,
 * however large, so one body over the limit is held by itself rather than
 * never; and a waiter is never overtaken by smaller ones behind it, so large
 * bodies are not starved. limit 0: no limit (acquire never waits).
 */
export class ByteBudget {
  readonly limit: number;
  readonly #waiting: Waiter[] = [];
  #used = 0;

  constructor(limit: number) {
    if (!(Number.isSafeInteger(limit) && limit >= 0)) throw new RangeError('limit must be a whole number ≥ 0');
    this.limit = limit;
  }

  /** Bytes held now (may exceed the limit: see resize() and the lone large request). */
  get used(): number {
    return this.#used;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Resolves once `bytes` are held; rejects with the signal's reason if it aborts first (nothing is then held). */
  acquire(bytes: number, signal?: AbortSignal): Promise<ByteReservation> {
    if (!(Number.isSafeInteger(bytes) && bytes >= 0)) return Promise.reject(new RangeError('bytes must be a whole number ≥ 0'));
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.#waiting.length === 0 && this.#fits(bytes)) return Promise.resolve(this.#hold(bytes));
    return new Promise<ByteReservation>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        grant: (reservation) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(reservation);
        },
      };
      const onAbort = () => {
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) this.#waiting.splice(at, 1);
        // The head may have been what held the others back.
        if (at === 0) this.#grantWaiting();
        reject(signal?.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiting.push(waiter);
    });
  }

  #fits(bytes: number): boolean {
    return this.limit === 0 || this.#used === 0 || this.#used + bytes <= this.limit;
  }

  #hold(bytes: number): ByteReservation {
    let held = bytes;
    let released = false;
    this.#used += held;
    return {
      get bytes() {
        return held;
      },
      resize: (next) => {
        if (released) return;
        if (!(Number.isSafeInteger(next) && next >= 0)) throw new RangeError('bytes must be a whole number ≥ 0');
        const shrinks = next < held;
        this.#used += next - held;
        held = next;
        if (shrinks) this.#grantWaiting();
      },
      release: () => {
        if (released) return;
        released = true;
        this.#used -= held;
        this.#grantWaiting();
      },
    };
  }

  #grantWaiting(): void {
    for (let head = this.#waiting[0]; head !== undefined && this.#fits(head.bytes); head = this.#waiting[0]) {
      this.#waiting.shift();
      head.grant(this.#hold(head.bytes));
    }
  }
}
