import { constants } from 'node:fs';
import { access } from 'node:fs/promises';

/** State of the cache index (size accounting): 'none' when this build keeps no index. */
export type IndexState = 'loaded' | 'loading' | 'failed' | 'none';

export interface ReadinessReport {
  ready: boolean;
  checks: {
    cacheDirWritable: boolean;
    index: IndexState;
    shuttingDown: boolean;
    /** Redis link state when `redis.url` is set. Never makes the node unready: it serves from its own tiers meanwhile. */
    redis?: 'connecting' | 'up' | 'degraded' | 'down';
  };
}

export interface ReadinessOptions {
  /** The cache directory in use now (it may change on reload). */
  cacheDir: () => string;
  /** State of the cache index, if there is one. */
  indexState?: () => Promise<IndexState> | IndexState;
  /** State of the Redis link, if one is configured. */
  redis?: () => { state: 'connecting' | 'up' | 'degraded' | 'down' } | undefined;
}

/**
 * Answers /readyz: ready while the cache directory is writable, the index is
 * loaded or still loading (requests are served meanwhile), and the process is
 * not shutting down, so a load balancer stops sending before we stop accepting.
 */
export class Readiness {
  readonly #options: ReadinessOptions;
  #shuttingDown = false;

  constructor(options: ReadinessOptions) {
    this.#options = options;
  }

  markShuttingDown(): void {
    this.#shuttingDown = true;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  async report(): Promise<ReadinessReport> {
    let cacheDirWritable = true;
    try {
      await access(this.#options.cacheDir(), constants.W_OK);
    } catch {
      cacheDirWritable = false;
    }
    let index: IndexState;
    try {
      index = (await this.#options.indexState?.()) ?? 'none';
    } catch {
      index = 'failed';
    }
    const ready = cacheDirWritable && index !== 'failed' && !this.#shuttingDown;
    const redis = this.#options.redis?.()?.state;
    return { ready, checks: { cacheDirWritable, index, shuttingDown: this.#shuttingDown, ...(redis === undefined ? {} : { redis }) } };
  }
}
