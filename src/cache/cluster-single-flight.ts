import { FastImageCacheError, type ErrorCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RedisConnection } from '../storage/redis/connection.ts';
import type { DistributedLock, LockHandle } from './distributed-lock.ts';
import { parseJsonRecord } from './pubsub-message.ts';

export interface ClusterFlightSteps<T> {
  /** Looks for the result another node already made (the shared tier); undefined if it is not there. */
  lookup(): Promise<T | undefined>;
  /** Makes the result (the origin fetch) and shares it; `shared` tells whether `lookup` can now find it. */
  produce(): Promise<{ value: T; shared: boolean }>;
}

export interface ClusterSingleFlightOptions {
  connection: RedisConnection;
  lock: DistributedLock;
  /** A waiter that missed the notification looks again this often, ms. */
  pollIntervalMs: number;
  /** Longest a waiter waits for another node before fetching by itself, ms. */
  maxWaitMs: number;
  logger: Logger;
  now?: () => number;
}

/** What the elected node announces when it is done with a key. */
interface FlightDone {
  key: string;
  /** shared: in the shared tier now; unshared: made but not shareable (too large, Redis failing); failed: refused. */
  outcome: 'shared' | 'unshared' | 'failed';
  /** For `failed`: the origin's verdict, which the waiters get too instead of asking the origin again. */
  code?: ErrorCode;
}

/** Refusals that describe the origin or its image, not the node: waiters may take them as their own. */
const SHAREABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['not_found', 'too_large', 'not_an_image', 'origin_error', 'origin_timeout']);

/** Messages for one key, buffered from the start of a flight so none slips by between two steps. */
class Mailbox {
  readonly #queue: FlightDone[] = [];
  #wake: (() => void) | undefined;

  put(message: FlightDone): void {
    this.#queue.push(message);
    this.#wake?.();
  }

  /** The next message, or undefined after `timeoutMs` (or on `interrupt`). */
  async next(timeoutMs: number): Promise<FlightDone | undefined> {
    if (this.#queue.length === 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        this.#wake = done;
      });
    }
    return this.#queue.shift();
  }

  interrupt(): void {
    this.#wake?.();
  }
}

/**
 * Single-flight across nodes: for a key that no node has, one node is elected
 * by a Redis lock to produce it while the others wait for its announcement
 * (pub/sub, with a bounded poll as a fallback) and then read the shared tier.
 * If the elected node dies, its lock expires and a waiter takes over. If Redis
 * is unavailable, every node simply produces on its own.
 *
 * Within one node, callers are expected to be collapsed already (SingleFlight).
 */
export class ClusterSingleFlight {
  readonly #redis: RedisConnection;
  readonly #lock: DistributedLock;
  readonly #pollIntervalMs: number;
  readonly #maxWaitMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #channel: string;
  readonly #mailboxes = new Map<string, Set<Mailbox>>();
  readonly #unsubscribe: () => void;
  #closed = false;

  constructor(opts: ClusterSingleFlightOptions) {
    this.#redis = opts.connection;
    this.#lock = opts.lock;
    this.#pollIntervalMs = opts.pollIntervalMs;
    this.#maxWaitMs = opts.maxWaitMs;
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
    this.#channel = opts.connection.key('flight-done');
    this.#unsubscribe = opts.connection.subscribe(this.#channel, (raw) => {
      this.#deliver(raw);
    });
  }

  async run<T>(key: string, steps: ClusterFlightSteps<T>): Promise<T> {
    const found = await steps.lookup();
    if (found !== undefined) return found;
    if (this.#closed || !this.#redis.available) return (await steps.produce()).value;

    const mailbox = new Mailbox();
    let boxes = this.#mailboxes.get(key);
    if (boxes === undefined) {
      boxes = new Set();
      this.#mailboxes.set(key, boxes);
    }
    boxes.add(mailbox);
    try {
      return await this.#elect(key, steps, mailbox);
    } finally {
      boxes.delete(mailbox);
      if (boxes.size === 0 && this.#mailboxes.get(key) === boxes) this.#mailboxes.delete(key);
    }
  }

  /** Stops waiting for other nodes: current waiters go on by themselves. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe();
    for (const boxes of this.#mailboxes.values()) for (const box of boxes) box.interrupt();
  }

  async #elect<T>(key: string, steps: ClusterFlightSteps<T>, mailbox: Mailbox): Promise<T> {
    const deadline = this.#now() + this.#maxWaitMs;
    for (;;) {
      const attempt = await this.#lock.acquire(key);
      if (attempt.status === 'acquired') return this.#lead(key, attempt.handle, steps);
      if (attempt.status === 'unavailable' || this.#closed) return (await steps.produce()).value;
      if (this.#now() >= deadline) {
        this.#logger.warn({ cacheKey: key, waitedMs: this.#maxWaitMs }, 'another node is still fetching; fetching here too');
        return (await steps.produce()).value;
      }

      // Another node is on it: wait for its word, or look again after a poll interval.
      const done = await mailbox.next(Math.min(this.#pollIntervalMs, Math.max(1, deadline - this.#now())));
      if (done?.outcome === 'failed' && done.code !== undefined) {
        throw new FastImageCacheError(done.code, 'the node that fetched this image was refused by the origin');
      }
      if (done === undefined || done.outcome === 'shared') {
        const found = await steps.lookup();
        if (found !== undefined) return found;
      }
      // Made but not shareable, or failed on its node: no point waiting for anyone, fetch here.
      if (done !== undefined && done.outcome !== 'shared') return (await steps.produce()).value;
      // Otherwise the holder is still working, or died (its lock will expire): try to take over.
    }
  }

  async #lead<T>(key: string, handle: LockHandle, steps: ClusterFlightSteps<T>): Promise<T> {
    // Keep the lock while the fetch runs; if this node dies, extensions stop and the lock expires.
    const every = Math.max(10, Math.floor(this.#lock.ttlMs / 3));
    const keepAlive = setInterval(() => void this.#lock.extend(handle), every);
    keepAlive.unref();
    let announcement: FlightDone = { key, outcome: 'unshared' };
    try {
      // The previous holder may have finished between our lookup and our lock.
      const found = await steps.lookup();
      if (found !== undefined) {
        announcement = { key, outcome: 'shared' };
        return found;
      }
      const made = await steps.produce();
      announcement = { key, outcome: made.shared ? 'shared' : 'unshared' };
      return made.value;
    } catch (err) {
      const code = err instanceof FastImageCacheError && SHAREABLE_CODES.has(err.code) ? err.code : undefined;
      announcement = code !== undefined ? { key, outcome: 'failed', code } : { key, outcome: 'failed' };
      throw err;
    } finally {
      clearInterval(keepAlive);
      await this.#lock.release(handle);
      await this.#redis.publish(this.#channel, JSON.stringify(announcement));
    }
  }

  #deliver(raw: string): void {
    const message = parseFlightDone(raw);
    if (message === undefined) return;
    for (const box of this.#mailboxes.get(message.key) ?? []) box.put(message);
  }
}

function parseFlightDone(raw: string): FlightDone | undefined {
  const value = parseJsonRecord(raw);
  if (!value) return undefined;
  const { key, outcome, code } = value;
  if (typeof key !== 'string' || (outcome !== 'shared' && outcome !== 'unshared' && outcome !== 'failed')) return undefined;
  if (code !== undefined && !(typeof code === 'string' && SHAREABLE_CODES.has(code as ErrorCode))) return undefined;
  return code === undefined ? { key, outcome } : { key, outcome, code: code as ErrorCode };
}
