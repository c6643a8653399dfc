import { FastImageCacheError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';

/**
 * Single-flight across the processes sharing one cache directory (cluster
 * workers): before a process fetches a source from the origin it takes the
 * fill lease of its key; the others wait for the holder's verdict and then
 * read the entry from disk, as nginx's proxy_cache_lock does, but woken at
 * once instead of polling. Every value here survives structured cloning, so
 * the lease table can live in the cluster primary and be reached over IPC.
 */

/** How the holder's fill ended: `filled` (look on disk), or `failed` with the origin's verdict when others may share it. */
export type FillVerdict = { outcome: 'filled' } | { outcome: 'failed'; code?: ErrorCode };

export type LeaseAnswer =
  /** This process fills the key; keep the lease renewed every `renewEveryMs` until release. */
  | { kind: 'lead'; token: number; renewEveryMs: number }
  /** Another process filled it (or failed) while this one waited. */
  | { kind: 'done'; verdict: FillVerdict }
  /** Waited as long as allowed (or the table is closing): fill here. */
  | { kind: 'gave_up' };

/** What a cache manager needs: one acquire, one release per lead (renewing is the implementation's business). */
export interface FillLease {
  acquire(key: string): Promise<LeaseAnswer>;
  release(key: string, token: number, verdict: FillVerdict): Promise<void>;
}

/** One process's view of the table: what the IPC handlers call. */
export interface LeaseOwnerView {
  acquire(key: string, waitMs: number): Promise<LeaseAnswer>;
  renew(key: string, token: number): boolean;
  release(key: string, token: number, verdict: FillVerdict): void;
}

/** Refusals about the origin or its image, not the process that met them: waiters take them as their own. */
const SHAREABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['not_found', 'too_large', 'not_an_image', 'origin_error', 'origin_timeout']);

interface Waiter {
  owner: number;
  answer: (a: LeaseAnswer) => void;
  timer: NodeJS.Timeout;
}

interface Lease {
  owner: number;
  token: number;
  expiry: NodeJS.Timeout;
  waiters: Waiter[];
}

export interface FillLeaseTableOptions {
  /** A lease not renewed for this long is taken from its holder (alive but stuck) and given to the next waiter. */
  ttlMs: number;
  /** Told when an owner is granted a lease (to fetch the source of `key`). */
  onGrant?: (key: string, owner: number) => void;
  /** Told when an owner starts waiting for a key another owner holds. */
  onWait?: (key: string, owner: number) => void;
  /** Told when a lease changes hands because its holder died or stopped renewing it. */
  onHandOver?: (key: string, from: number, to: number | undefined, why: 'expired' | 'owner_gone') => void;
}

/**
 * The fill leases of one cache directory, kept by the cluster primary. At
 * most one owner (a worker) holds a key's lease; the others' acquire calls
 * wait for its release (and get its verdict), for its death or expiry (the
 * first waiter then leads), or for their own wait limit.
 */
export class FillLeaseTable {
  readonly #ttlMs: number;
  readonly #onGrant: FillLeaseTableOptions['onGrant'];
  readonly #onWait: FillLeaseTableOptions['onWait'];
  readonly #onHandOver: FillLeaseTableOptions['onHandOver'];
  readonly #leases = new Map<string, Lease>();
  #nextToken = 1;
  #closed = false;

  constructor(opts: FillLeaseTableOptions) {
    this.#ttlMs = opts.ttlMs;
    this.#onGrant = opts.onGrant;
    this.#onWait = opts.onWait;
    this.#onHandOver = opts.onHandOver;
  }

  /** The calls of one owner (its id must be unique for its lifetime, e.g. a cluster worker id). */
  viewFor(owner: number): LeaseOwnerView {
    return {
      acquire: (key, waitMs) => this.#acquire(key, owner, waitMs),
      renew: (key, token) => this.#renew(key, token),
      release: (key, token, verdict) => {
        this.#release(key, token, verdict);
      },
    };
  }

  /** Keys leased now. */
  get size(): number {
    return this.#leases.size;
  }

  /** An owner is gone (a worker exited): its waits are dropped and its leases go to the next waiter at once. */
  dropOwner(owner: number): void {
    for (const [key, lease] of [...this.#leases]) {
      for (const w of lease.waiters.filter((x) => x.owner === owner)) this.#dropWaiter(lease, w, { kind: 'gave_up' });
      if (lease.owner === owner) this.#handOver(key, lease, 'owner_gone');
    }
  }

  /** Stops: every waiter is told to fill by itself; no lease is granted any more. */
  close(): void {
    this.#closed = true;
    for (const lease of this.#leases.values()) {
      clearTimeout(lease.expiry);
      for (const w of [...lease.waiters]) this.#dropWaiter(lease, w, { kind: 'gave_up' });
    }
    this.#leases.clear();
  }

  #acquire(key: string, owner: number, waitMs: number): Promise<LeaseAnswer> {
    if (this.#closed) return Promise.resolve({ kind: 'gave_up' });
    const lease = this.#leases.get(key);
    if (lease === undefined) return Promise.resolve(this.#grant(key, owner, []));
    return new Promise<LeaseAnswer>((resolve) => {
      const waiter: Waiter = {
        owner,
        answer: resolve,
        timer: setTimeout(() => {
          const current = this.#leases.get(key);
          if (current !== undefined) this.#dropWaiter(current, waiter, { kind: 'gave_up' });
        }, waitMs),
      };
      waiter.timer.unref();
      lease.waiters.push(waiter);
      this.#onWait?.(key, owner);
    });
  }

  #grant(key: string, owner: number, waiters: Waiter[]): LeaseAnswer {
    const token = this.#nextToken++;
    const lease: Lease = { owner, token, waiters, expiry: this.#expiryTimer(key, token) };
    this.#leases.set(key, lease);
    this.#onGrant?.(key, owner);
    return { kind: 'lead', token, renewEveryMs: Math.max(10, Math.floor(this.#ttlMs / 3)) };
  }

  #expiryTimer(key: string, token: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const lease = this.#leases.get(key);
      if (lease?.token === token) this.#handOver(key, lease, 'expired');
    }, this.#ttlMs);
    timer.unref();
    return timer;
  }

  #renew(key: string, token: number): boolean {
    const lease = this.#leases.get(key);
    if (lease?.token !== token) return false;
    clearTimeout(lease.expiry);
    lease.expiry = this.#expiryTimer(key, token);
    return true;
  }

  #release(key: string, token: number, verdict: FillVerdict): void {
    const lease = this.#leases.get(key);
    // A holder whose lease expired and went to another must not end the new holder's.
    if (lease?.token !== token) return;
    clearTimeout(lease.expiry);
    this.#leases.delete(key);
    const shared: FillVerdict = verdict.outcome === 'failed' && (verdict.code === undefined || !SHAREABLE_CODES.has(verdict.code)) ? { outcome: 'failed' } : verdict;
    for (const w of lease.waiters) {
      clearTimeout(w.timer);
      w.answer({ kind: 'done', verdict: shared });
    }
  }

  /** The holder is gone or stuck: the first waiter leads now, the others keep waiting for it. */
  #handOver(key: string, lease: Lease, why: 'expired' | 'owner_gone'): void {
    clearTimeout(lease.expiry);
    this.#leases.delete(key);
    const next = lease.waiters.shift();
    this.#onHandOver?.(key, lease.owner, next?.owner, why);
    if (next === undefined) return;
    clearTimeout(next.timer);
    next.answer(this.#grant(key, next.owner, lease.waiters));
  }

  #dropWaiter(lease: Lease, waiter: Waiter, answer: LeaseAnswer): void {
    const at = lease.waiters.indexOf(waiter);
    if (at === -1) return;
    lease.waiters.splice(at, 1);
    clearTimeout(waiter.timer);
    waiter.answer(answer);
  }
}

export interface LeasedFillSteps<T> {
  /** The entry another process stored, read from disk; undefined if it is not there. */
  lookup(): Promise<T | undefined>;
  /** Fetches and stores it here. */
  produce(): Promise<T>;
}

/**
 * Fills `key` at most once across the processes sharing `lease`: the holder
 * looks once more (the previous holder may have just finished), then
 * produces; a waiter reads what the holder stored, takes its refusal as its
 * own, or produces by itself when there is nothing to read (not storable,
 * not admitted) or it waited too long. A lease that cannot be reached
 * (the primary gone) never fails a request: the process then fills alone.
 */
export async function fillUnderLease<T>(lease: FillLease, key: string, steps: LeasedFillSteps<T>, logger: Logger): Promise<T> {
  let answer: LeaseAnswer;
  try {
    answer = await lease.acquire(key);
  } catch (err) {
    logger.warn({ err, cacheKey: key }, 'fill lease unavailable; fetching without it');
    return steps.produce();
  }

  if (answer.kind === 'lead') {
    let verdict: FillVerdict = { outcome: 'failed' };
    try {
      const found = await steps.lookup();
      const value = found ?? (await steps.produce());
      verdict = { outcome: 'filled' };
      return value;
    } catch (err) {
      verdict = err instanceof FastImageCacheError ? { outcome: 'failed', code: err.code } : { outcome: 'failed' };
      throw err;
    } finally {
      await lease.release(key, answer.token, verdict).catch((err: unknown) => {
        logger.warn({ err, cacheKey: key }, 'could not release the fill lease (it expires by itself)');
      });
    }
  }

  if (answer.kind === 'done') {
    const { verdict } = answer;
    if (verdict.outcome === 'failed' && verdict.code !== undefined) {
      throw new FastImageCacheError(verdict.code, 'another worker fetching this image was refused');
    }
    if (verdict.outcome === 'filled') {
      const found = await steps.lookup();
      if (found !== undefined) return found;
    }
  }
  // Nothing stored to read (not storable, not admitted, failed there), or waited too long: fetch here.
  return steps.produce();
}
