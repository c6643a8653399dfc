import type { Logger } from '../log.ts';
import type { EntryId, ScannedEntry } from '../storage/types.ts';
import { NONE, PROBATION, PROTECTED, SlruTable } from './slru-table.ts';

export interface CacheIndexStats {
  entries: number;
  /** Bytes of the entries on disk, metadata included. */
  bytes: number;
  /** Bytes reserved by writes in progress. */
  reservedBytes: number;
  maxBytes: number;
  maxEntries: number | null;
  /** Entries evicted to make room since start, and their bytes. */
  evictions: number;
  evictedBytes: number;
  /** Writes refused because the space left was all reserved by writes in progress (served uncached). */
  denied: number;
  probationEntries: number;
  protectedEntries: number;
  /** False while the start-up rebuild is still reading the directory. */
  ready: boolean;
  /** Entries found by the rebuild, and how long it took (ms); null until it is done. */
  rebuiltEntries: number;
  rebuildMs: number | null;
  /** Earliest write time of an entry (ms since epoch), null when empty. */
  oldestMs: number | null;
  /** Memory held by the index's tables. */
  indexMemoryBytes: number;
}

/**
 * Accounting and eviction, as an interface of plain values: every argument
 * and result survives structured cloning and no method takes a callback, so
 * one index can live in a cluster primary and be reached from workers by
 * IPC. Reservation tokens are plain numbers.
 */
export interface CacheIndexApi {
  /**
   * Admission: makes room for `bytes` now (evicting and deleting least
   * recently used entries before it resolves) and holds them for `id` until
   * commit or release. Resolves to a token, or null when the entry may not be
   * written: larger than the whole limit, or the room left is all reserved by
   * writes in progress (so usage never exceeds the limit).
   */
  reserve(id: EntryId, bytes: number): Promise<number | null>;
  /** The write of a reservation is on disk: account for it. */
  commit(token: number): Promise<void>;
  /** The write of a reservation failed: give the bytes back. */
  release(token: number): Promise<void>;
  /** A use of the entry (moves it up its LRU, promotes it to the protected segment). */
  touch(id: EntryId): Promise<void>;
  /** Entries removed by someone else (purge, damaged, pruned). */
  remove(ids: readonly EntryId[]): Promise<void>;
  /** Everything was removed. */
  clear(): Promise<void>;
  stats(): Promise<CacheIndexStats>;
}

/** What the index needs of the storage: deleting victims, and a listing to rebuild from. */
export interface IndexedStorage {
  delete(id: EntryId): Promise<boolean>;
  scan(): AsyncIterable<ScannedEntry[]>;
}

export interface CacheIndexOptions {
  storage: IndexedStorage;
  maxBytes: number;
  maxEntries?: number | undefined;
  /** Share of maxBytes the protected (used more than once) segment may hold; default 0.8. */
  protectedShare?: number;
  logger: Logger;
  now?: () => number;
}

interface Reservation {
  id: EntryId;
  bytes: number;
}

/**
 * The one index of a cache directory: how many bytes and entries it holds,
 * and which to evict first (segmented LRU, see SlruTable). Eviction is
 * synchronous with admission: a write first reserves its bytes, victims are
 * taken out of the accounting at once and deleted before the reservation
 * resolves, and a write that would only fit by evicting other writes still in
 * progress is refused (served uncached), so committed plus reserved bytes
 * never exceed the limit. Lookups never need it: it is rebuilt from the directory in the
 * background at start while the cache already serves.
 */
export class CacheIndex implements CacheIndexApi {
  readonly #storage: IndexedStorage;
  readonly #maxBytes: number;
  readonly #maxEntries: number | undefined;
  readonly #protectedMax: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #table = new SlruTable();
  readonly #reservations = new Map<number, Reservation>();
  #nextToken = 1;
  #reservedBytes = 0;
  #evictions = 0;
  #evictedBytes = 0;
  #denied = 0;
  #rebuilding = false;
  #generation = 0;
  /** Ids removed while a rebuild runs, so the scan does not bring them back. */
  readonly #removedDuringRebuild = new Set<EntryId>();
  #rebuiltEntries = 0;
  #rebuildMs: number | null = null;

  constructor(opts: CacheIndexOptions) {
    this.#storage = opts.storage;
    this.#maxBytes = opts.maxBytes;
    this.#maxEntries = opts.maxEntries;
    this.#protectedMax = Math.floor(opts.maxBytes * (opts.protectedShare ?? 0.8));
    this.#logger = opts.logger;
    this.#now = opts.now ?? Date.now;
  }

  async reserve(id: EntryId, bytes: number): Promise<number | null> {
    if (bytes > this.#maxBytes || bytes > 0xffff_ffff) return null;
    // Victims leave the accounting synchronously, so concurrent reservations never count the same space twice.
    const victims = this.#takeVictims(bytes, 1);
    if (this.#over(bytes, 1)) {
      // Only writes in progress are left to evict: admitting this one would overshoot the limit. Serve it uncached.
      this.#denied += 1;
      await this.#deleteVictims(victims);
      return null;
    }
    const token = this.#nextToken++;
    this.#reservations.set(token, { id, bytes });
    this.#reservedBytes += bytes;
    await this.#deleteVictims(victims);
    return token;
  }

  async commit(token: number): Promise<void> {
    const reservation = this.#settle(token);
    if (reservation === undefined) return;
    this.#removedDuringRebuild.delete(reservation.id);
    this.#table.upsert(reservation.id, reservation.bytes, this.#now());
    this.#table.demoteOver(this.#protectedMax);
    // A rewrite of an existing entry was reserved on top of its old size; anything still over goes now.
    await this.#deleteVictims(this.#takeVictims(0, 0));
  }

  // The methods below are synchronous here, but async in the interface: over IPC they are not.
  release(token: number): Promise<void> {
    this.#settle(token);
    return Promise.resolve();
  }

  touch(id: EntryId): Promise<void> {
    const slot = this.#table.find(id);
    if (slot !== NONE) {
      this.#table.touch(slot);
      this.#table.demoteOver(this.#protectedMax);
    }
    return Promise.resolve();
  }

  remove(ids: readonly EntryId[]): Promise<void> {
    for (const id of ids) {
      const slot = this.#table.find(id);
      if (slot !== NONE) this.#table.remove(slot);
      if (this.#rebuilding) this.#removedDuringRebuild.add(id);
    }
    return Promise.resolve();
  }

  clear(): Promise<void> {
    this.#table.clear();
    // A rebuild still scanning would bring back what was just removed.
    this.#generation += 1;
    this.#rebuilding = false;
    this.#removedDuringRebuild.clear();
    return Promise.resolve();
  }

  stats(): Promise<CacheIndexStats> {
    const oldest = this.#table.oldestWrite();
    return Promise.resolve({
      entries: this.#table.entries,
      bytes: this.#table.totalBytes,
      reservedBytes: this.#reservedBytes,
      maxBytes: this.#maxBytes,
      maxEntries: this.#maxEntries ?? null,
      evictions: this.#evictions,
      evictedBytes: this.#evictedBytes,
      denied: this.#denied,
      probationEntries: this.#table.segmentCount(PROBATION),
      protectedEntries: this.#table.segmentCount(PROTECTED),
      ready: !this.#rebuilding,
      rebuiltEntries: this.#rebuiltEntries,
      rebuildMs: this.#rebuildMs,
      oldestMs: oldest ?? null,
      indexMemoryBytes: this.#table.memoryBytes,
    });
  }

  /**
   * Reads the directory into the index (write times give the initial LRU
   * order), then enforces the limits, resolving to the ids evicted. Meant to
   * run in the background at start.
   */
  async rebuild(): Promise<EntryId[]> {
    const generation = ++this.#generation;
    this.#rebuilding = true;
    this.#removedDuringRebuild.clear();
    const started = performance.now();
    let found = 0;
    try {
      for await (const batch of this.#storage.scan()) {
        if (generation !== this.#generation) return []; // cleared meanwhile
        for (const e of batch) {
          if (this.#removedDuringRebuild.has(e.id) || this.#table.find(e.id) !== NONE) continue;
          this.#table.upsert(e.id, e.bytes, e.mtimeMs, true);
          found += 1;
        }
      }
    } finally {
      if (generation === this.#generation) {
        this.#table.orderRebuilt();
        this.#rebuilding = false;
        this.#removedDuringRebuild.clear();
        this.#rebuiltEntries = found;
        this.#rebuildMs = performance.now() - started;
      }
    }
    this.#logger.info({ entries: found, ms: Math.round(this.#rebuildMs ?? 0) }, 'cache index rebuilt');
    return this.enforceLimits();
  }

  /** Stops a running rebuild (at close): the index stays as far as it got. */
  stopRebuild(): void {
    if (!this.#rebuilding) return;
    this.#generation += 1;
    this.#rebuilding = false;
    this.#removedDuringRebuild.clear();
  }

  /** Evicts until the limits hold (they may not after a restart with lower limits); resolves to the ids evicted. */
  async enforceLimits(): Promise<EntryId[]> {
    const victims = this.#takeVictims(0, 0);
    await this.#deleteVictims(victims);
    return victims;
  }

  #over(extraBytes: number, extraEntries: number): boolean {
    if (this.#table.totalBytes + this.#reservedBytes + extraBytes > this.#maxBytes) return true;
    return this.#maxEntries !== undefined && this.#table.entries + this.#reservations.size + extraEntries > this.#maxEntries;
  }

  #takeVictims(extraBytes: number, extraEntries: number): EntryId[] {
    const victims: EntryId[] = [];
    while (this.#over(extraBytes, extraEntries)) {
      const slot = this.#table.victim();
      if (slot === NONE) break; // the rest is writes in progress
      victims.push(this.#table.idOf(slot));
      this.#evictions += 1;
      this.#evictedBytes += this.#table.sizeOf(slot);
      this.#table.remove(slot);
    }
    return victims;
  }

  async #deleteVictims(victims: EntryId[]): Promise<void> {
    await Promise.all(
      victims.map((id) =>
        this.#storage.delete(id).catch((err: unknown) => {
          this.#logger.warn({ err, id }, 'could not delete an evicted cache entry');
        }),
      ),
    );
  }

  #settle(token: number): Reservation | undefined {
    const reservation = this.#reservations.get(token);
    if (reservation === undefined) return undefined;
    this.#reservations.delete(token);
    this.#reservedBytes -= reservation.bytes;
    return reservation;
  }
}
