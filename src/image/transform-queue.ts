import { availableParallelism } from 'node:os';
import { FastImageCacheError } from '../errors.ts';

export interface TransformQueueOptions {
  /** Tasks running at once. */
  concurrency: number;
  /** Tasks waiting at most; one more is refused with 503 overloaded. */
  maxQueue: number;
  /** Retry-After sent with the refusal. */
  retryAfterSeconds?: number;
}

/** libuv's default pool size, used when UV_THREADPOOL_SIZE is unset or unreadable. */
const LIBUV_DEFAULT_POOL = 4;

/** The size of libuv's thread pool in this process, as Node sized it at start-up. */
export function threadPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const size = Number(env.UV_THREADPOOL_SIZE);
  return Number.isInteger(size) && size >= 1 ? Math.min(size, 1024) : LIBUV_DEFAULT_POOL;
}

/**
 * Default transform concurrency: one per CPU (shared out between `processes`
 * serving on one machine), but always two pool threads short of libuv's
 * pool. Each running sharp pipeline holds a pool thread for its whole run,
 * and fs reads (cache hits) and DNS lookups share that pool, so a burst of
 * resizes must leave them threads to run on.
 */
export function defaultTransformConcurrency(poolSize = threadPoolSize(), processes = 1): number {
  return Math.max(1, Math.min(Math.floor(availableParallelism() / processes), poolSize - 2));
}

/**
 * Bounded concurrency with a bounded wait queue, so a burst of transforms
 * neither starves the rest of the process nor piles up memory: beyond the
 * queue, callers get FastImageCacheError('overloaded') at once.
 */
export class TransformQueue {
  readonly concurrency: number;
  readonly maxQueue: number;
  readonly #retryAfterSeconds: number;
  readonly #waiting: Array<() => void> = [];
  #running = 0;

  constructor(options: TransformQueueOptions) {
    if (!(Number.isInteger(options.concurrency) && options.concurrency >= 1)) throw new RangeError('concurrency must be ≥ 1');
    if (!(Number.isInteger(options.maxQueue) && options.maxQueue >= 0)) throw new RangeError('maxQueue must be ≥ 0');
    this.concurrency = options.concurrency;
    this.maxQueue = options.maxQueue;
    this.#retryAfterSeconds = options.retryAfterSeconds ?? 1;
  }

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `task` when a slot is free; refuses at once when the queue is full. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.maxQueue) {
        throw new FastImageCacheError(
          'overloaded',
          `transform queue full (${this.#running} running, ${this.#waiting.length} waiting)`,
          { retryAfterSeconds: this.#retryAfterSeconds },
        );
      }
      // The slot is handed over by the finishing task, so #running never drops and rises again in between.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running += 1;
    }
    try {
      return await task();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running -= 1;
    }
  }
}
