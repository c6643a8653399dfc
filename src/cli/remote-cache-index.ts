import type { CacheIndexApi, CacheIndexStats } from '../cache/cache-index.ts';
import type { Logger } from '../log.ts';
import type { IpcRpc, RpcHandler } from './ipc-rpc.ts';

/** Reserving may wait for victims to be deleted; the rest is bookkeeping. */
const RESERVE_TIMEOUT_MS = 30_000;
const CALL_TIMEOUT_MS = 10_000;

/**
 * The cache index of the cluster primary, as a worker sees it: every call
 * goes over IPC, so all workers account and evict in one place. Only
 * `reserve` and `stats` can fail the caller; a lost commit, release, touch or
 * removal costs accuracy (logged), never a response.
 */
export class RemoteCacheIndex implements CacheIndexApi {
  readonly #rpc: IpcRpc;
  readonly #logger: Logger;

  constructor(rpc: IpcRpc, logger: Logger) {
    this.#rpc = rpc;
    this.#logger = logger;
  }

  reserve(id: string, bytes: number): Promise<number | null> {
    return this.#rpc.call<number | null>('index.reserve', { id, bytes }, RESERVE_TIMEOUT_MS);
  }

  commit(token: number): Promise<void> {
    return this.#quiet('index.commit', { token });
  }

  release(token: number): Promise<void> {
    return this.#quiet('index.release', { token });
  }

  touch(id: string): Promise<void> {
    return this.#quiet('index.touch', { id });
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

  async #quiet(method: string, params: unknown): Promise<void> {
    try {
      await this.#rpc.call(method, params, CALL_TIMEOUT_MS);
    } catch (err) {
      this.#logger.warn({ err, method }, 'cache index call to the primary failed');
    }
  }
}

/** The primary's side: answers the workers' index calls from the one real index. */
export function cacheIndexHandlers(index: CacheIndexApi): Record<string, RpcHandler> {
  const p = (params: unknown) => (params ?? {}) as Record<string, unknown>;
  return {
    'index.reserve': (params) => index.reserve(String(p(params).id), Number(p(params).bytes)),
    'index.commit': (params) => index.commit(Number(p(params).token)),
    'index.release': (params) => index.release(Number(p(params).token)),
    'index.touch': (params) => index.touch(String(p(params).id)),
    'index.remove': (params) => index.remove((p(params).ids as string[] | undefined) ?? []),
    'index.clear': () => index.clear(),
    'index.stats': () => index.stats(),
  };
}
