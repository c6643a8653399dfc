import type { Logger } from '../log.ts';
import { LatestWrite } from './latest-write.ts';
import { purgeMessageOf, type PurgeMessage } from './purge-bus.ts';

/**
 * Where owed purges outlive the process (the cache directory): what this
 * process owes, and what processes that are gone left owing.
 */
export interface OwedPurgesStore {
  save(records: readonly unknown[]): Promise<void>;
  adopt(): Promise<{ records: unknown[]; release(): Promise<void> }>;
}

export interface PendingPurgesOptions {
  /** Clears the purge from the shared tier and announces it; false when Redis could not take it. */
  carry: (message: PurgeMessage) => Promise<boolean>;
  /** How often the purges still owed are tried again, ms (the Redis link's cool-down after a failure is 1 s). */
  retryMs: number;
  /** Source purges kept at most; beyond, the oldest is given up (logged). */
  max: number;
  logger: Logger;
  /** Keeps the owed purges across a restart: without it, those owed when the process ends are lost to the other nodes. */
  store?: OwedPurgesStore;
  /**
   * How often the store is looked at again for what processes that ended
   * meanwhile owed (`fastimagecache purge` run while Redis was away), ms;
   * without it, only at start.
   */
  adoptEveryMs?: number;
}

/**
 * Purges this node made while Redis could not take them (down, or skipped
 * for a second after a failed command): tried again until the shared tier
 * has dropped them and the other nodes have heard of them. Without this, a
 * purge made during a Redis hiccup stayed on this node, and the others kept
 * serving the purged image from their disks. A purge is idempotent, so
 * carrying one late only costs the other nodes a refetch of what they cached
 * since; a pending purge of everything covers every source purge.
 */
export class PendingPurges {
  readonly #opts: PendingPurgesOptions;
  /** By source key, or ALL; Map order is the order to carry them in. */
  readonly #owed = new Map<string, PurgeMessage>();
  #timer: NodeJS.Timeout | undefined;
  #carrying = false;
  #closed = false;
  readonly #writes: LatestWrite<PurgeMessage[]> | undefined;
  #adopted: Promise<void>;
  readonly #adoptTimer: NodeJS.Timeout | undefined;

  constructor(opts: PendingPurgesOptions) {
    this.#opts = opts;
    const store = opts.store;
    this.#writes =
      store &&
      new LatestWrite<PurgeMessage[]>(
        (messages) => store.save(messages),
        (err) => {
          opts.logger.warn({ err }, 'could not keep the owed purges in the cache directory');
        },
      );
    this.#adopted = store ? this.#adopt(store) : Promise.resolve();
    if (store && opts.adoptEveryMs !== undefined) {
      this.#adoptTimer = setInterval(() => {
        this.#adopted = this.#adopted.then(() => (this.#closed ? undefined : this.#adopt(store)));
      }, opts.adoptEveryMs);
      this.#adoptTimer.unref();
    }
  }

  get size(): number {
    return this.#owed.size;
  }

  /**
   * Keeps a purge that could not be carried now, and tries again later.
   * Resolves once it is in the store (if any), so a purge acknowledged to its
   * caller survives a crash of this process right after.
   */
  async add(message: PurgeMessage): Promise<void> {
    if (this.#closed) return;
    if (this.#owed.size === 0) this.#opts.logger.warn({ purge: message.kind }, 'redis unavailable: purge applied on this node; the others get it when redis is back');
    this.#keep(message);
    this.#save();
    this.#schedule();
    await this.#writes?.flush();
  }

  /** Resolves once the purges owed by processes found gone so far are owed by this one (and kept, with a store). */
  adopted(): Promise<void> {
    return this.#adopted;
  }

  #keep(message: PurgeMessage): void {
    if (message.kind === 'all') this.#owed.clear();
    else if (this.#owed.has(ALL)) return;
    const key = message.kind === 'all' ? ALL : message.sourceKey;
    this.#owed.delete(key);
    this.#owed.set(key, message);
    if (this.#owed.size > this.#opts.max) {
      const oldest = this.#owed.keys().next().value;
      if (oldest !== undefined) this.#owed.delete(oldest);
      this.#opts.logger.warn({ max: this.#opts.max }, 'too many purges waiting for redis: the oldest will not reach the other nodes');
    }
  }

  /**
   * Stops retrying. With a store, the purges still owed stay in it for the
   * next process started over the cache directory; without one they are lost
   * to the other nodes. Either way it is logged.
   */
  async close(): Promise<void> {
    clearInterval(this.#adoptTimer);
    await this.#adopted;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#owed.size > 0) {
      const owed = this.#owed.size;
      if (this.#writes) {
        this.#writes.request([...this.#owed.values()]);
        if (await this.#writes.flush()) {
          this.#opts.logger.warn({ owed }, 'closing with purges owed to the other nodes: the next start over this cache directory carries them');
        } else this.#opts.logger.warn({ owed }, 'closing with purges the other nodes never heard of');
      } else this.#opts.logger.warn({ owed }, 'closing with purges the other nodes never heard of');
    }
    this.#owed.clear();
    await this.#writes?.flush();
  }

  /** Takes over what processes that are gone owed, keeps it under this process's name, then removes theirs. */
  async #adopt(store: OwedPurgesStore): Promise<void> {
    let adopted: Awaited<ReturnType<OwedPurgesStore['adopt']>>;
    try {
      adopted = await store.adopt();
    } catch (err) {
      this.#opts.logger.warn({ err }, 'could not read the purges owed by earlier processes');
      return;
    }
    const messages = adopted.records.flatMap((record) => purgeMessageOf(record) ?? []);
    if (messages.length > 0) {
      // What this process added meanwhile is newer: the adopted go first, in their order.
      const own = [...this.#owed.values()];
      this.#owed.clear();
      for (const message of [...messages, ...own]) this.#keep(message);
      this.#opts.logger.info({ owed: messages.length }, 'carrying purges that an earlier process owed to the other nodes');
      this.#save();
      this.#schedule();
    }
    if (this.#writes && !(await this.#writes.flush())) return; // not kept under this name: leave theirs for the next start
    await adopted.release().catch((err: unknown) => {
      this.#opts.logger.warn({ err }, 'could not remove the owed purges of earlier processes');
    });
  }

  /** Keeps what is owed now; not after close(), whose last save is what the next process adopts. */
  #save(): void {
    if (!this.#closed) this.#writes?.request([...this.#owed.values()]);
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#carrying) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#retry();
    }, this.#opts.retryMs);
    this.#timer.unref();
  }

  async #retry(): Promise<void> {
    this.#carrying = true;
    try {
      let carried = false;
      for (const [key, message] of [...this.#owed]) {
        if (!(await this.#opts.carry(message).catch(() => false))) break; // Redis still away: keep the order, try later
        if (this.#owed.get(key) === message) this.#owed.delete(key);
        carried = true;
      }
      if (carried) this.#save();
    } finally {
      this.#carrying = false;
    }
    if (this.#closed) return;
    if (this.#owed.size > 0) this.#schedule();
    else this.#opts.logger.info('purges made while redis was away have reached the other nodes');
  }
}

const ALL = '*';
