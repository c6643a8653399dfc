import type { CacheIndexApi, CacheIndexStats } from '../cache/cache-index.ts';
import type { Logger } from '../log.ts';
import type { IpcRpc, RpcHandler } from './ipc-rpc.ts';

/** Reserving may wait for victims to be deleted; the rest is bookkeeping. */
const RESERVE_TIMEOUT_MS = 30_000;
const CALL_TIMEOUT_MS = 10_000;
/**
 * Touches (a hit's "used now") are sent in batches this often: one IPC call
 * per hit cost the primary and the worker more than serving the hit. An LRU
 * a fraction of a second behind loses nothing that matters.
 */
const TOUCH_BATCH_MS = 250;
/** A batch is sent at once when it holds this many distinct entries. */
const TOUCH_BATCH_MAX = 1024;

/**
 * The cache index of the cluster primary, as a worker sees it: every call
 * goes over IPC, so all workers account and evict in one place. Only
 * `reserve` and `stats` can fail the caller; a lost commit, release, touch or
 * removal costs accuracy (logged), never a response. Commits, releases and
 * touches are notifications (one message, no answer): the primary handles a
 * worker's messages in order, so this worker's next reserve or stats already
 * sees them, and a cold request saves a round trip per entry it stores.
 */
export class RemoteCacheIndex implements CacheIndexApi {
  readonly #rpc: IpcRpc;
  readonly #logger: Logger;
  // Ids touched since the last batch, most recently used last.
  readonly #touched = new Set<string>();
  #touchTimer: NodeJS.Timeout | undefined;

  constructor(rpc: IpcRpc, logger: Logger) {
    this.#rpc = rpc;
    this.#logger = logger;
  }

  reserve(id: string, bytes: number): Promise<number | null> {
    return this.#rpc.call<number | null>('index.reserve', { id, bytes }, RESERVE_TIMEOUT_MS);
  }

  commit(token: number): Promise<void> {
    this.#note('index.commit', { token });
    return Promise.resolve();
  }

  release(token: number): Promise<void> {
    this.#note('index.release', { token });
    return Promise.resolve();
  }

  touch(id: string): Promise<void> {
    this.#touched.delete(id);
    this.#touched.add(id);
    if (this.#touched.size >= TOUCH_BATCH_MAX) this.#flushTouches();
    else if (this.#touchTimer === undefined) {
      this.#touchTimer = setTimeout(() => { this.#flushTouches(); }, TOUCH_BATCH_MS);
      this.#touchTimer.unref();
    }
    return Promise.resolve();
  }

  #flushTouches(): void {
    clearTimeout(this.#touchTimer);
    this.#touchTimer = undefined;
    if (this.#touched.size === 0) return;
    const ids = [...this.#touched];
    this.#touched.clear();
    this.#note('index.touchMany', { ids });
  }

  remove(ids: readonly string[]): Promise<void> {
    return this.#quiet('index.remove', { ids: [...ids] });
  }

  clear(): Promise<void> {
    return this.#quiet('index.clear', null);
  }

  stats(): Promise<CacheIndexStats> {
    return this.#rpc.call<CacheIndexStats>('index.stats', null, CALL_TIMEOUT_MS);
  }

  #note(method: string, params: unknown): void {
    try {
      this.#rpc.notify(method, params);
    } catch (err) {
      this.#logger.warn({ err, method }, 'cache index call to the primary failed');
    }
  }

  async #quiet(method: string, params: unknown): Promise<void> {
    try {
      await this.#rpc.call(method, params, CALL_TIMEOUT_MS);
    } catch (err) {
      this.#logger.warn({ err, method }, 'cache index call to the primary failed');
    }
  }
}

/**
 * The reservations one worker has made in the primary's index and not yet
 * committed or released. When the worker dies mid-write, releaseAll() gives
 * their bytes back; they would otherwise stay reserved until the primary
 * restarts, and enough crashed writes would leave no room to write at all.
 */
export class HeldReservations {
  readonly #index: CacheIndexApi;
  readonly #tokens = new Set<number>();
  #closed = false;

  constructor(index: CacheIndexApi) {
    this.#index = index;
  }

  get size(): number {
    return this.#tokens.size;
  }

  /** A reservation made for the worker; one answered after it exited is released at once. */
  add(token: number): void {
    if (this.#closed) void this.#index.release(token).catch(() => {});
    else this.#tokens.add(token);
  }

  settle(token: number): void {
    this.#tokens.delete(token);
  }

  /** The worker exited: releases what it still held, and anything reserved for it later. */
  async releaseAll(): Promise<void> {
    this.#closed = true;
    const tokens = [...this.#tokens];
    this.#tokens.clear();
    await Promise.all(tokens.map((token) => this.#index.release(token)));
  }
}

/** The primary's side: answers one worker's index calls from the one real index, keeping track of what it holds. */
export function cacheIndexHandlers(index: CacheIndexApi, held = new HeldReservations(index)): Record<string, RpcHandler> {
  const p = (params: unknown) => (params ?? {}) as Record<string, unknown>;
  return {
    'index.reserve': async (params) => {
      const token = await index.reserve(String(p(params).id), Number(p(params).bytes));
      if (token !== null) held.add(token);
      return token;
    },
    'index.commit': (params) => {
      const token = Number(p(params).token);
      held.settle(token);
      return index.commit(token);
    },
    'index.release': (params) => {
      const token = Number(p(params).token);
      held.settle(token);
      return index.release(token);
    },
    'index.touchMany': async (params) => {
      const ids = p(params).ids;
      if (!Array.isArray(ids)) return;
      for (const id of ids) await index.touch(String(id));
    },
    'index.remove': (params) => index.remove((p(params).ids as string[] | undefined) ?? []),
    'index.clear': () => index.clear(),
    'index.stats': () => index.stats(),
  };
}
