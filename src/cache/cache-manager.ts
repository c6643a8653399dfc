import { createHash } from 'node:crypto';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { EntryMeta, StorageBackend, StoredEntry } from '../storage/types.ts';
import { cacheKey } from './cache-key.ts';
import { normalizeSourceUrl } from './normalize-url.ts';
import { SingleFlight } from './single-flight.ts';

export type CacheStatus = 'HIT' | 'MISS';

export interface LoadedImage {
  body: Buffer;
  contentType: string;
  origin: EntryMeta['origin'];
}

/** Fetches + verifies (+ later transforms) the image on a miss; supplied by the composition root. */
export type Loader = (normalizedSourceUrl: string, options: string) => Promise<LoadedImage>;

export interface CacheResult {
  body: Buffer;
  contentType: string;
  size: number;
  sha256: string;
  /** Strong validator derived from the content hash. */
  etag: string;
  status: CacheStatus;
  meta: EntryMeta;
}

export interface CacheManagerOptions {
  storage: StorageBackend;
  loader: Loader;
  logger: Logger;
}

export interface CacheManagerStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

/** Options segment meaning "the original image, untransformed". */
export const DEFAULT_OPTIONS = '_';

interface Outcome {
  entry: StoredEntry;
  status: CacheStatus;
}

/**
 * Decides keys, serves verified entries and fills misses once per key.
 * Knows nothing of HTTP: the loader brings the bytes, the storage keeps them.
 */
export class CacheManager {
  readonly #storage: StorageBackend;
  readonly #loader: Loader;
  readonly #logger: Logger;
  // Lookup and fill both run inside the flight, so a caller arriving after a
  // fill settled reads the stored entry instead of loading again.
  readonly #flights = new SingleFlight<Outcome>();
  #hits = 0;
  #misses = 0;
  #closed = false;

  constructor(opts: CacheManagerOptions) {
    this.#storage = opts.storage;
    this.#loader = opts.loader;
    this.#logger = opts.logger;
  }

  async get(sourceUrl: string | URL, options: string = DEFAULT_OPTIONS): Promise<CacheResult> {
    if (this.#closed) throw new FastImageCacheError('internal_error', 'cache manager is closed');
    const url = normalizeSourceUrl(sourceUrl);
    const key = cacheKey(url, options);
    const { entry, status } = await this.#flights.run(key, () => this.#lookupOrLoad(key, url, options));
    if (status === 'HIT') this.#hits += 1;
    else this.#misses += 1;
    return toResult(entry, status);
  }

  /** Removes the cached original of `sourceUrl`; returns how many entries were removed. */
  async purge(sourceUrl: string | URL): Promise<number> {
    const key = cacheKey(normalizeSourceUrl(sourceUrl), DEFAULT_OPTIONS);
    return (await this.#storage.delete(key)) ? 1 : 0;
  }

  async purgeAll(): Promise<void> {
    await this.#storage.clear();
  }

  async stats(): Promise<CacheManagerStats> {
    const { entries, bytes } = await this.#storage.stats();
    return { entries, bytes, hits: this.#hits, misses: this.#misses };
  }

  /** Refuses new gets, lets running ones finish, then closes the storage. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#flights.idle();
    await this.#storage.close();
  }

  async #lookupOrLoad(key: string, url: string, options: string): Promise<Outcome> {
    const stored = await this.#readVerified(key, url, options);
    if (stored !== undefined) return { entry: stored, status: 'HIT' };

    // A loader error propagates unchanged to every waiter; nothing is stored.
    const loaded = await this.#loader(url, options);
    const body = loaded.body;
    const entry: StoredEntry = {
      meta: {
        key,
        sourceUrl: url,
        options,
        contentType: loaded.contentType,
        size: body.length,
        sha256: sha256Hex(body),
        storedAt: Date.now(),
        origin: { ...loaded.origin },
      },
      body,
    };
    try {
      await this.#storage.write(entry);
    } catch (err) {
      // A full or read-only disk costs us the cache, not the response.
      this.#logger.warn({ cacheKey: key, err }, 'could not store cache entry; serving it uncached');
    }
    return { entry, status: 'MISS' };
  }

  /** The stored entry if it is intact and really is the one for this key; otherwise undefined. */
  async #readVerified(key: string, url: string, options: string): Promise<StoredEntry | undefined> {
    let stored: StoredEntry | undefined;
    try {
      stored = await this.#storage.read(key);
    } catch (err) {
      this.#logger.warn({ cacheKey: key, err }, 'cache read failed; treating as a miss');
      return undefined;
    }
    if (stored === undefined) return undefined;

    const problem = integrityProblem(stored, key, url, options);
    if (problem === undefined) return stored;

    // Logged by key only: the URL may carry credentials in its query.
    this.#logger.warn({ cacheKey: key, problem }, 'cache entry failed its integrity check; discarding it');
    try {
      await this.#storage.delete(key);
    } catch (err) {
      this.#logger.warn({ cacheKey: key, err }, 'could not delete damaged cache entry');
    }
    return undefined;
  }
}

/** Why a stored entry must not be served, or undefined when it is sound. */
function integrityProblem(entry: StoredEntry, key: string, url: string, options: string): string | undefined {
  const { meta, body } = entry;
  if (meta.key !== key || meta.sourceUrl !== url || meta.options !== options) return 'entry belongs to another key';
  if (meta.size !== body.length) return 'size mismatch';
  if (sha256Hex(body) !== meta.sha256) return 'sha256 mismatch';
  return undefined;
}

function toResult(entry: StoredEntry, status: CacheStatus): CacheResult {
  const { meta, body } = entry;
  return {
    body,
    contentType: meta.contentType,
    size: meta.size,
    sha256: meta.sha256,
    etag: etagFor(meta.sha256),
    status,
    meta,
  };
}

/** A strong ETag: same bytes, same tag, whatever the URL. */
export function etagFor(sha256: string): string {
  return `"${sha256.slice(0, 32)}"`;
}

function sha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}
