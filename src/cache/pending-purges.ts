import type { Logger } from '../log.ts';
import type { PurgeMessage } from './purge-bus.ts';

export interface PendingPurgesOptions {
  /** Clears the purge from the shared tier and announces it; false when Redis could not take it. */
  carry: (message: PurgeMessage) => Promise<boolean>;
  /** How often the purges still owed are tried again, ms (the Redis link's cool-down after a failure is 1 s). */
  retryMs: number;
  /** Source purges kept at most; beyond, the oldest is given up (logged). */
  max: number;
  logger: Logger;
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

  constructor(opts: PendingPurgesOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#owed.size;
  }

  /** Keeps a purge that could not be carried now, and tries again later. */
  add(message: PurgeMessage): void {
    if (this.#closed) return;
    if (this.#owed.size === 0) this.#opts.logger.warn({ purge: message.kind }, 'redis unavailable: purge applied on this node; the others get it when redis is back');
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
    this.#schedule();
  }

  /** Stops retrying; purges still owed are lost to the other nodes (logged). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#owed.size > 0) this.#opts.logger.warn({ owed: this.#owed.size }, 'closing with purges the other nodes never heard of');
    this.#owed.clear();
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
      for (const [key, message] of [...this.#owed]) {
        if (!(await this.#opts.carry(message).catch(() => false))) break; // Redis still away: keep the order, try later
        if (this.#owed.get(key) === message) this.#owed.delete(key);
      }
    } finally {
      this.#carrying = false;
    }
    if (this.#closed) return;
    if (this.#owed.size > 0) this.#schedule();
    else this.#opts.logger.info('purges made while redis was away have reached the other nodes');
  }
}

const ALL = '*';
