import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { EntryId, EntryMeta, Freshness, OriginInfo, ReadEntry, RemovalFeed, StorageBackend, StoredEntry } from '../storage/types.ts';
import { CacheIndex, type CacheIndexApi } from './cache-index.ts';
import type { ClusterCache } from './cluster-cache.ts';
import { SOURCE_VARIANT, sourceEntryKey, sourceKey, variantKey } from './cache-key.ts';
import {
  DEFAULT_FRESHNESS,
  freshnessState,
  judgeResponse,
  judgeRevalidation,
  mayServeStaleOnError,
  type FreshnessSettings,
} from './freshness.ts';
import { BoundedMemo } from './bounded-memo.ts';
import { MemoryTier } from './memory-tier.ts';
import { fillUnderLease, type FillLease } from './fill-lease.ts';
import { namespaceFingerprint } from './namespace.ts';
import { NegativeCache } from './negative-cache.ts';
import { normalizeSourceUrl } from './normalize-url.ts';
import type { PurgeMessage } from './purge-bus.ts';
import { EarlyResults } from './early-results.ts';
import { PendingByKey } from './pending-by-key.ts';
import { SingleFlight } from './single-flight.ts';
import { WarnLimiter } from './warn-limiter.ts';
import { sha256Hex } from '../hash.ts';

/** HIT: stored and fresh. MISS: fetched or made now. STALE: served expired (stale-while-revalidate or stale-if-error). REVALIDATED: the origin confirmed it (304). */
export type CacheStatus = 'HIT' | 'MISS' | 'STALE' | 'REVALIDATED';

/** The cached source a transform works from. */
export interface SourceImage {
  body: Buffer;
  contentType: string;
  meta: EntryMeta;
}

/**
 * Makes a variant from its source; supplied per request by whoever knows the
 * variant. `decoded`: the output was decoded in full on the way (see EntryMeta.decoded).
 */
export type Transform = (source: SourceImage) => Promise<{ body: Buffer; contentType: string; decoded?: boolean }>;

export interface CacheRequest {
  sourceUrl: string | URL;
  /** Canonical variant id: '_' = the source bytes as fetched; anything else names a derived variant (normalized by the caller). */
  variant: string;
  /** Required when variant !== '_': makes the variant from the (cached) source. */
  transform?: Transform;
  /**
   * The caller drops the body as soon as it has sent it, and then calls
   * CacheResult.release when there is one: a disk hit that the memory tier
   * does not keep is then read into a lent buffer instead of a new one.
   */
  lend?: boolean;
}

/** What the loader is asked: the URL, and validators when an expired entry is being revalidated. */
export interface LoadRequest {
  url: string;
  conditional?: { etag?: string; lastModified?: string };
}

/** A fetched and verified source (200), or the origin's confirmation that the stored one is current (304). */
export type LoadResult =
  | { status: 200; body: Buffer; contentType: string; origin: OriginInfo; decoded?: boolean }
  | { status: 304; origin: OriginInfo };

/** Fetches + verifies a source; supplied by the composition root. */
export type Loader = (request: LoadRequest) => Promise<LoadResult>;

export interface CacheResult {
  /** Shared with the memory tier: read it, do not modify it. */
  body: Buffer;
  /**
   * Only for a `lend` request whose body is a lent buffer that nobody else
   * got: call it once the body is no longer read (for a response: its last
   * write has completed), after which the buffer holds another read's bytes.
   */
  release?: (() => void) | undefined;
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
  /** Whatever else changes the bytes of variants (e.g. preset definitions); part of every variant key. */
  namespace?: string;
  /**
   * Whatever changes the stored bytes of sources (e.g. metadata stripping, SVG
   * rasterizing, accepted input formats); part of every source entry key, and
   * so of every variant key too. Purges still reach entries of every namespace.
   */
  sourceNamespace?: string;
  /** The clock (ms since epoch); injectable for tests. */
  now?: () => number;
  /** Freshness rules; see FreshnessSettings. */
  freshness?: Partial<FreshnessSettings>;
  /** How long lasting refusals are remembered, ms (default 60 s; 0 turns it off). */
  negativeTtlMs?: number;
  /** Limit of the directory's entries, bytes with metadata (default 1 GiB). Ignored when `index` is given. */
  maxCacheBytes?: number;
  /** Limit of the directory's entry count (default none). Ignored when `index` is given. */
  maxEntries?: number | undefined;
  /** Size of the in-memory tier, bytes (default 64 MiB; 0 turns it off). */
  memoryCacheBytes?: number;
  /** An index shared with other processes (e.g. over IPC); by default the manager keeps its own and rebuilds it in the background. */
  index?: CacheIndexApi;
  /** Removals announced by other processes on the same directory, and where ours are announced. */
  removals?: RemovalFeed;
  /** How often removals of others are polled, ms (default 2 s). */
  removalPollMs?: number;
  /** Where the counters are published for `fastimagecache stats` (once the index is loaded, then every statusEveryMs, default 2 s). */
  statusBoard?: { publish(status: Record<string, unknown>): Promise<void>; withdraw(): Promise<void> };
  statusEveryMs?: number;
  /** Several nodes, one cache (Redis): the shared tier behind the local ones, single-flight across nodes, purges everywhere. */
  cluster?: ClusterCache;
  /** Processes sharing this cache directory (cluster workers): a source is fetched by one of them at a time. */
  fillLease?: FillLease;
}

export interface CacheManagerStats {
  /** Entries and bytes in the cache directory (from the index; partial while `indexReady` is false). */
  entries: number;
  bytes: number;
  maxBytes: number;
  maxEntries: number | null;
  /** Answers since start, by X-Cache status. */
  hits: number;
  misses: number;
  stale: number;
  revalidated: number;
  /** HITs answered from memory and from disk. */
  memoryHits: number;
  diskHits: number;
  /** HITs answered from the shared tier (another node's copy in Redis). */
  sharedHits: number;
  /** Requests refused from the negative cache without asking the origin. */
  negativeHits: number;
  /** Share of answers served from stored bytes (HIT, STALE, REVALIDATED); 0 before any. */
  hitRatio: number;
  evictions: number;
  evictedBytes: number;
  /** Earliest write time of an entry (ms since epoch), null when empty. */
  oldestMs: number | null;
  memoryEntries: number;
  memoryBytes: number;
  /** Writes that failed (full or read-only disk) and damaged entries dropped. */
  storeFailures: number;
  corruptEntries: number;
  indexReady: boolean;
  startedAt: number;
}

/** Options segment meaning "the original image, untransformed". */
export const DEFAULT_OPTIONS = SOURCE_VARIANT;

const DEFAULT_MAX_CACHE_BYTES = 1024 * 1024 * 1024;
const DEFAULT_MEMORY_CACHE_BYTES = 64 * 1024 * 1024;
const DEFAULT_NEGATIVE_TTL_MS = 60_000;
const STORE_WARNING_INTERVAL_MS = 60_000;
/** Keys and ids remembered for this many (URL, variant) pairs: a few MB, more than a memory tier's worth of entries. */
const TARGET_MEMO_ENTRIES = 8192;

/**
 * Origin trouble that stale-if-error may hide: the origin failing or timing
 * out, its circuit breaker open, or origin fetches over their limits (the
 * stored copy is exactly what an unreachable origin should not cost).
 * Refusals (policy, not an image, 404) are never hidden.
 */
const ORIGIN_TROUBLE = new Set(['origin_error', 'origin_timeout', 'origin_unavailable', 'overloaded']);

interface Outcome {
  entry: StoredEntry;
  status: CacheStatus;
  /** False when the origin forbade storing it (no-store, private): variants of it are not stored either. */
  storable: boolean;
  /** The body is a lent buffer (ReadEntry.release): given back only by a caller that got it alone. */
  release?: () => void;
}

/** One entry being looked up: a source, or a variant of one. */
interface Target {
  url: string;
  variant: string;
  sourceKey: string;
  key: string;
  id: EntryId;
  transform: Transform | undefined;
  /**
   * A variant's source, looked up or fetched for its transform. Kept out of the memory tier: only passthrough
   * reads the tier for a source, and a cold resize's 400 KB source there would push out some 25 variants, then
   * die old in the heap (the full collections of a miss storm).
   */
  forVariant?: true;
}

/**
 * Decides keys, serves verified entries, fills misses once per key and keeps
 * entries fresh. Knows nothing of HTTP: the loader brings the bytes,
 * transforms make variants, the storage keeps them, the index decides what
 * to evict. A source and its variants form one group: they share its
 * freshness and are purged together.
 */
export class CacheManager {
  readonly #storage: StorageBackend;
  readonly #loader: Loader;
  readonly #logger: Logger;
  readonly #fingerprint: string;
  readonly #sourceNamespace: string;
  readonly #now: () => number;
  readonly #freshness: FreshnessSettings;
  readonly #index: CacheIndexApi;
  readonly #ownIndex: CacheIndex | undefined;
  readonly #memory: MemoryTier;
  readonly #targets = new BoundedMemo<Target>(TARGET_MEMO_ENTRIES);
  readonly #negative: NegativeCache;
  readonly #removals: RemovalFeed | undefined;
  readonly #cluster: ClusterCache | undefined;
  readonly #fillLease: FillLease | undefined;
  readonly #statusBoard: CacheManagerOptions['statusBoard'];
  readonly #storeWarnings: WarnLimiter;
  readonly #maxBytes: number;
  readonly #maxEntries: number | undefined;
  // Lookup and fill both run inside the flight, so a caller arriving after a
  // fill settled reads the stored entry instead of loading again. Sources and
  // variants have distinct keys, so a variant's flight may wait on its source's.
  readonly #flights = new SingleFlight<Outcome>();
  /** Sources just fetched, for the variants waiting on them, before their flight (which also stores them) ends. */
  readonly #sourcesEarly = new EarlyResults<Outcome>();
  /** Entry writes under way, by group: a removal of the group waits for them. */
  readonly #writes = new PendingByKey();
  // Refreshes of expired entries, by key: background (stale-while-revalidate) and foreground share one.
  readonly #refreshes = new SingleFlight<Outcome>();
  readonly #background = new Set<Promise<unknown>>();
  #rebuild: Promise<void> = Promise.resolve();
  readonly #timers: NodeJS.Timeout[] = [];
  /** Bumped by every removal, so a write that began before a purge does not bring the entry back. */
  #epoch = 0;
  #closed = false;
  readonly #startedAt: number;
  readonly #counts = {
    hits: 0,
    misses: 0,
    stale: 0,
    revalidated: 0,
    memoryHits: 0,
    diskHits: 0,
    sharedHits: 0,
    negativeHits: 0,
    storeFailures: 0,
    corruptEntries: 0,
  };

  constructor(opts: CacheManagerOptions) {
    this.#storage = opts.storage;
    this.#loader = opts.loader;
    this.#logger = opts.logger;
    this.#fingerprint = namespaceFingerprint(opts.namespace);
    this.#sourceNamespace = opts.sourceNamespace ?? '';
    this.#now = opts.now ?? Date.now;
    this.#startedAt = this.#now();
    this.#freshness = { ...DEFAULT_FRESHNESS, ...opts.freshness };
    this.#maxBytes = opts.maxCacheBytes ?? DEFAULT_MAX_CACHE_BYTES;
    this.#maxEntries = opts.maxEntries;
    this.#memory = new MemoryTier(opts.memoryCacheBytes ?? DEFAULT_MEMORY_CACHE_BYTES);
    this.#negative = new NegativeCache({ ttlMs: opts.negativeTtlMs ?? DEFAULT_NEGATIVE_TTL_MS, now: this.#now });
    this.#storeWarnings = new WarnLimiter(STORE_WARNING_INTERVAL_MS, this.#now);
    this.#removals = opts.removals;
    this.#statusBoard = opts.statusBoard;
    this.#cluster = opts.cluster;
    this.#fillLease = opts.fillLease;
    this.#cluster?.attach({
      purgeLocal: (message) => this.#purgeFromPeer(message),
      dropMemoryTier: () => {
        this.#memory.clear();
      },
    });

    if (opts.index !== undefined) {
      this.#index = opts.index;
    } else {
      this.#ownIndex = new CacheIndex({
        storage: this.#storage,
        maxBytes: this.#maxBytes,
        maxEntries: this.#maxEntries,
        logger: this.#logger,
        now: this.#now,
      });
      this.#index = this.#ownIndex;
      // Lookups need no index (paths follow from keys): serve at once, account once the directory is read.
      this.#rebuild = this.#ownIndex.rebuild().then(
        () => this.#publishStatus().catch(() => {}),
        (err: unknown) => {
          this.#logger.error({ err }, 'cache index rebuild failed');
        },
      );
    }
    if (this.#removals !== undefined) this.#every(opts.removalPollMs ?? 2_000, () => this.#applyRemovalsOfOthers());
    if (this.#statusBoard !== undefined) this.#every(opts.statusEveryMs ?? 2_000, () => this.#publishStatus());
  }

  async get(request: CacheRequest): Promise<CacheResult> {
    if (this.#closed) throw new FastImageCacheError('internal_error', 'cache manager is closed');
    const target = this.#target(request);

    const refusal = this.#negative.recall(target.sourceKey);
    if (refusal !== undefined) {
      this.#counts.negativeHits += 1;
      throw refusal;
    }

    // The memory tier holds only verified entries: no disk, no hash.
    const inMemory = this.#memory.get(target.id);
    if (inMemory !== undefined && inMemory.meta.key === target.key) {
      const state = freshnessState(inMemory.meta.freshness, this.#now());
      if (state === 'fresh') {
        this.#counts.memoryHits += 1;
        this.#touch(target.id);
        return this.#answer({ entry: inMemory, status: 'HIT', storable: true });
      }
      if (state === 'stale-while-revalidate') {
        this.#refreshInBackground(target, inMemory);
        return this.#answer({ entry: inMemory, status: 'STALE', storable: true });
      }
    }

    if (request.lend !== true) return this.#answer(await this.#flights.run(target.key, () => this.#serve(target)));
    const { value, alone } = await this.#flights.runAlone(target.key, () => this.#serve(target, true));
    // Shared with other callers, the buffer is never given back: they may still be reading it.
    return this.#answer(value, alone ? value.release : undefined);
  }

  /** Removes the cached source of `sourceUrl` and every variant of it; resolves to the number of entries removed. */
  async purge(sourceUrl: string | URL): Promise<number> {
    const key = sourceKey(normalizeSourceUrl(sourceUrl));
    // The shared tier first, so this node cannot refill from it; then every other node is told.
    await this.#cluster?.purgeSource(key);
    return this.#purgeSourceHere(key);
  }

  async purgeAll(): Promise<void> {
    await this.#cluster?.purgeAll();
    await this.#purgeAllHere();
  }

  /** Removes a source and its variants from this node's tiers; resolves to the number of entries removed. */
  async #purgeSourceHere(key: string): Promise<number> {
    const group = this.#storage.groupOf(this.#storage.entryId(key, key));
    this.#epoch += 1;
    this.#negative.forget(key);
    try {
      return (await this.#removeGroup(group)).length;
    } finally {
      // A disk read still in flight began in this purge's epoch: moving it again keeps what it read out of memory.
      this.#epoch += 1;
    }
  }

  async #purgeAllHere(): Promise<void> {
    this.#epoch += 1;
    this.#memory.clear();
    this.#negative.clear();
    try {
      await this.#writes.settled();
      await this.#storage.clear();
    } finally {
      // As #removeGroup and #purgeSourceHere do for one group: what disk reads put back meanwhile, and those still in flight.
      this.#memory.clear();
      this.#epoch += 1;
    }
    await this.#index.clear();
    await this.#announce('all');
  }

  /** A purge made on another node: applied to this node's tiers (that node already cleaned the shared tier). */
  async #purgeFromPeer(message: PurgeMessage): Promise<void> {
    if (message.kind === 'all') await this.#purgeAllHere();
    else await this.#purgeSourceHere(message.sourceKey);
  }

  async stats(): Promise<CacheManagerStats> {
    const index = await this.#index.stats();
    const c = this.#counts;
    const answers = c.hits + c.misses + c.stale + c.revalidated;
    return {
      entries: index.entries,
      bytes: index.bytes,
      maxBytes: index.maxBytes,
      maxEntries: index.maxEntries,
      hits: c.hits,
      misses: c.misses,
      stale: c.stale,
      revalidated: c.revalidated,
      memoryHits: c.memoryHits,
      diskHits: c.diskHits,
      sharedHits: c.sharedHits,
      negativeHits: c.negativeHits,
      hitRatio: answers === 0 ? 0 : (c.hits + c.stale + c.revalidated) / answers,
      evictions: index.evictions,
      evictedBytes: index.evictedBytes,
      oldestMs: index.oldestMs,
      memoryEntries: this.#memory.size,
      memoryBytes: this.#memory.bytes,
      storeFailures: c.storeFailures,
      corruptEntries: c.corruptEntries,
      indexReady: index.ready,
      startedAt: this.#startedAt,
    };
  }

  /** Resolves once the start-up index rebuild and the background refreshes running now are done. */
  async ready(): Promise<void> {
    await this.#rebuild;
    await Promise.allSettled([...this.#background]);
  }

  /** Refuses new gets, lets running ones and background refreshes finish, then closes the storage. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    this.#ownIndex?.stopRebuild();
    await this.#flights.idle();
    await Promise.allSettled([...this.#background]);
    if (this.#statusBoard !== undefined) await this.#statusBoard.withdraw().catch(() => {});
    await this.#storage.close();
  }

  #answer(outcome: Outcome, release?: () => void): CacheResult {
    const key = ({ HIT: 'hits', MISS: 'misses', STALE: 'stale', REVALIDATED: 'revalidated' } as const)[outcome.status];
    this.#counts[key] += 1;
    const { meta, body } = outcome.entry;
    return {
      body,
      contentType: meta.contentType,
      size: meta.size,
      sha256: meta.sha256,
      etag: etagFor(meta.sha256),
      status: outcome.status,
      meta,
      release,
    };
  }

  /**
   * The keys and entry id of a request: a URL normalization, hashes and
   * HMACs with the same result every time for the same URL and variant, so
   * remembered for the hottest pairs: a memory hit then hashes nothing.
   */
  #target(request: CacheRequest): Target {
    const { sourceUrl, variant, transform } = request;
    // Requests the computation refuses are never remembered: it throws for them.
    if (typeof variant !== 'string' || variant === '' || (variant !== SOURCE_VARIANT && transform === undefined)) {
      return this.#computeTarget(request);
    }
    const href = typeof sourceUrl === 'string' ? sourceUrl : sourceUrl.href;
    // Length-prefixed, so no (variant, URL) pair spells another's memo key.
    const known = this.#targets.getOrCompute(`${variant.length}:${variant}${href}`, () => ({ ...this.#computeTarget(request), transform: undefined }));
    return transform === undefined ? known : { ...known, transform };
  }

  #computeTarget(request: CacheRequest): Target {
    const url = normalizeSourceUrl(request.sourceUrl);
    const { variant, transform } = request;
    if (typeof variant !== 'string' || variant === '') {
      throw new FastImageCacheError('internal_error', 'cache request without a variant id');
    }
    if (variant !== SOURCE_VARIANT && transform === undefined) {
      throw new FastImageCacheError('internal_error', `variant "${variant.slice(0, 64)}" requested without a transform`);
    }
    const srcKey = sourceKey(url);
    // Variants hang off the source entry's key, so a new source namespace makes them anew too.
    const key = variantKey(sourceEntryKey(srcKey, this.#sourceNamespace), variant, this.#fingerprint);
    return { url, variant, sourceKey: srcKey, key, id: this.#storage.entryId(srcKey, key), transform };
  }

  #sourceTarget(target: Target): Target {
    const group = target.sourceKey;
    const key = sourceEntryKey(group, this.#sourceNamespace);
    return { url: target.url, variant: SOURCE_VARIANT, sourceKey: group, key, id: this.#storage.entryId(group, key), transform: undefined, forVariant: true };
  }

  /** The foreground path of one key: stored and fresh, stale (served or refreshed), or filled. */
  async #serve(target: Target, lend = false): Promise<Outcome> {
    const epoch = this.#epoch;
    // Lent only what the memory tier would not take in: a body it keeps must stay as it is.
    const notAdmitted = lend ? (bodySize: number): boolean => !this.#memory.admits(target.id, bodySize) : undefined;
    let stored: StoredEntry | undefined = await this.#readVerified(target, notAdmitted);
    if (stored === undefined) {
      if (this.#cluster === undefined) return this.#fill(target);
      const shared = await this.#fillAcrossCluster(this.#cluster, target);
      if ('outcome' in shared) return shared.outcome;
      stored = shared.expired; // another node's copy, past its freshness: served or refreshed below like a disk entry
    }

    const state = freshnessState(stored.meta.freshness, this.#now());
    if (state === 'fresh') {
      this.#counts.diskHits += 1;
      this.#touch(target.id);
      // A lent body (one the memory tier did not admit) is given back once sent.
      const { release } = stored as ReadEntry;
      if (release !== undefined) return { entry: stored, status: 'HIT', storable: true, release };
      // Not when a purge came during the read: its removal from memory went first, and this would undo it.
      if (epoch === this.#epoch && this.#memory.admits(target.id, stored.body.length)) this.#keepInMemory(target, stored);
      return { entry: stored, status: 'HIT', storable: true };
    }
    if (state === 'stale-while-revalidate') {
      this.#touch(target.id);
      this.#refreshInBackground(target, stored);
      return { entry: stored, status: 'STALE', storable: true };
    }
    try {
      return await this.#refreshes.run(target.key, () => this.#refresh(target, stored));
    } catch (err) {
      if (isOriginTrouble(err) && mayServeStaleOnError(stored.meta.freshness, this.#now())) {
        this.#logger.warn({ cacheKey: target.key, code: (err as FastImageCacheError).code }, 'origin failed; serving the stale entry (stale-if-error)');
        return { entry: stored, status: 'STALE', storable: true };
      }
      throw err;
    }
  }

  /**
   * Nothing stored here, Redis configured: another node's copy from the shared
   * tier, or a fill made once for the whole cluster. A copy from Redis is
   * checked like a disk entry and kept in this node's tiers.
   */
  async #fillAcrossCluster(cluster: ClusterCache, target: Target): Promise<{ outcome: Outcome } | { expired: StoredEntry }> {
    const epoch = this.#epoch;
    const here: { made?: Outcome } = {};
    const got = await cluster.fill(target.key, target.sourceKey, async () => {
      const made = await this.#fill(target);
      here.made = made;
      return { entry: made.entry, shareable: made.storable };
    });
    if (got.produced && here.made !== undefined) return { outcome: here.made };
    const problem = integrityProblem(got.entry, target);
    if (problem !== undefined) {
      this.#counts.corruptEntries += 1;
      this.#logger.warn({ cacheKey: target.key, problem }, 'shared cache entry does not match its key; fetching here');
      return { outcome: await this.#fill(target) };
    }
    await this.#store(target, got.entry, epoch);
    if (freshnessState(got.entry.meta.freshness, this.#now()) !== 'fresh') return { expired: got.entry };
    this.#counts.sharedHits += 1;
    return { outcome: { entry: got.entry, status: 'HIT', storable: true } };
  }

  /** Nothing stored: fetch the source, or make the variant from its (cached) source. */
  async #fill(target: Target): Promise<Outcome> {
    const epoch = this.#epoch;
    if (target.variant === SOURCE_VARIANT) {
      try {
        // An error propagates unchanged to every waiter; nothing is stored.
        if (this.#fillLease === undefined) return await this.#loadSource(target, epoch);
        // Other processes on this directory wait while one fetches, then read what it stored.
        return await fillUnderLease(
          this.#fillLease,
          target.key,
          { lookup: () => this.#storedByAnother(target), produce: () => this.#loadSource(target, epoch) },
          this.#logger,
        );
      } catch (err) {
        this.#negative.remember(target.sourceKey, err);
        throw err;
      }
    }
    const source = this.#sourceTarget(target);
    // The source as soon as it is fetched and checked: its write to disk (in the flight) overlaps the transform.
    const flight = this.#flights.run(source.key, () => this.#serve(source));
    const src = await this.#sourcesEarly.wait(source.key, flight);
    const made = await this.#derive(target, src, epoch);
    // Answered only once the source's flight is over too: a request after this one never joins it.
    await flight.catch(() => undefined);
    return made;
  }

  /** Fetches a source from the origin and stores it (if the origin allows). */
  async #loadSource(target: Target, epoch: number): Promise<Outcome> {
    const loaded = await this.#loader({ url: target.url });
    if (loaded.status !== 200) throw new FastImageCacheError('origin_error', 'origin answered 304 to an unconditional request');
    return this.#accept(target, loaded, undefined, epoch);
  }

  /** The source another process just fetched and stored, read as a miss of this request (it waited for the fetch). */
  async #storedByAnother(target: Target): Promise<Outcome | undefined> {
    const epoch = this.#epoch;
    const stored = await this.#readVerified(target);
    if (stored === undefined) return undefined;
    if (epoch === this.#epoch) this.#keepInMemory(target, stored);
    return { entry: stored, status: 'MISS', storable: true };
  }

  /** Makes a variant from its source; it is stored behind the answer (unless the source may not be stored). */
  async #derive(target: Target, source: Outcome, epoch: number): Promise<Outcome> {
    const { entry: src } = source;
    const made = await (target.transform as Transform)({ body: src.body, contentType: src.meta.contentType, meta: src.meta });
    const entry = makeEntry(target, made.body, made.contentType, src.meta.sha256, src.meta.freshness, src.meta.origin, this.#now(), made.decoded === true);
    if (source.storable && epoch === this.#epoch) {
      // Answered now and served from memory meanwhile; the write to disk goes on behind the response (nginx, too,
      // answers while its temp file is written). It saved about 1 ms of each cold resize, an index round trip
      // and a file creation. A purge waits for the write under way, and close() for all of them.
      this.#keepInMemory(target, entry);
      this.#track(this.#store(target, entry, epoch).catch((err: unknown) => { this.#storeFailed(target, err); }));
    }
    return { entry, status: 'MISS', storable: source.storable };
  }

  /** An expired entry: revalidate the source (a 304 keeps the bytes), or bring a variant in line with its source. */
  async #refresh(target: Target, stale: StoredEntry): Promise<Outcome> {
    const epoch = this.#epoch;
    if (target.variant === SOURCE_VARIANT) return this.#refreshSource(target, stale, epoch);

    const source = await this.#currentSource(target);
    if (source.entry.meta.sha256 !== stale.meta.sourceSha256) return this.#derive(target, source, epoch);
    // Same source bytes: the variant is still right and takes its source's new lifetime.
    const src = source.entry.meta;
    const entry: StoredEntry = {
      meta: { ...stale.meta, freshness: { ...src.freshness }, origin: { ...src.origin }, storedAt: this.#now() },
      body: stale.body,
    };
    if (source.storable) await this.#store(target, entry, epoch);
    return { entry, status: 'REVALIDATED', storable: source.storable };
  }

  /** The source of a variant, fresh: stored, revalidated or fetched now (never served stale here). */
  async #currentSource(target: Target): Promise<Outcome> {
    const source = this.#sourceTarget(target);
    const stored = await this.#readVerified(source);
    if (stored === undefined) return this.#flights.run(source.key, () => this.#serve(source));
    if (freshnessState(stored.meta.freshness, this.#now()) === 'fresh') return { entry: stored, status: 'HIT', storable: true };
    return this.#refreshes.run(source.key, () => this.#refreshSource(source, stored, this.#epoch));
  }

  async #refreshSource(target: Target, stale: StoredEntry, epoch: number): Promise<Outcome> {
    const validators = conditionalFor(stale.meta.origin);
    let loaded: LoadResult;
    try {
      loaded = await this.#loader({ url: target.url, ...(validators === undefined ? {} : { conditional: validators }) });
      if (loaded.status === 304) {
        const verdict = judgeRevalidation(stale.meta.origin, loaded.origin, this.#now(), this.#freshness);
        if (verdict.matches) {
          const entry: StoredEntry = {
            meta: { ...stale.meta, freshness: verdict.freshness, origin: keptOrigin(verdict.origin), storedAt: this.#now() },
            body: stale.body,
          };
          if (verdict.storable) await this.#store(target, entry, epoch);
          else await this.#dropGroup(target);
          // The other nodes get the new lifetime with the shared copy.
          if (verdict.storable) await this.#cluster?.share(entry, target.sourceKey);
          return { entry, status: 'REVALIDATED', storable: verdict.storable };
        }
        // A 304 for another validator than ours must not refresh our entry: ask for the image itself.
        loaded = await this.#loader({ url: target.url });
        if (loaded.status !== 200) throw new FastImageCacheError('origin_error', 'origin answered 304 to an unconditional request');
      }
    } catch (err) {
      // The origin no longer has it, or it is no longer an acceptable image: it is gone for us too.
      if (this.#negative.remember(target.sourceKey, err)) await this.#dropGroup(target);
      throw err;
    }
    return this.#accept(target, loaded, stale, epoch);
  }

  /** A freshly fetched source: stored if the origin allows, and variants of older bytes dropped. */
  async #accept(target: Target, loaded: Extract<LoadResult, { status: 200 }>, previous: StoredEntry | undefined, epoch: number): Promise<Outcome> {
    const now = this.#now();
    const verdict = judgeResponse(loaded.origin, now, this.#freshness);
    const sha = sha256Hex(loaded.body);
    const entry = makeEntry(target, loaded.body, loaded.contentType, sha, verdict.freshness, verdict.origin, now, loaded.decoded === true);
    // New bytes (or no longer storable): every variant of the old bytes is wrong now.
    if (previous !== undefined && (previous.meta.sha256 !== sha || !verdict.storable)) await this.#dropGroup(target);
    this.#sourcesEarly.publish(target.key, { entry, status: 'MISS', storable: verdict.storable });
    if (verdict.storable) await this.#store(target, entry, epoch);
    // A refresh brought new bytes: replace the shared copy too (a first fill is shared by the cluster flight).
    if (verdict.storable && previous !== undefined) await this.#cluster?.share(entry, target.sourceKey);
    return { entry, status: 'MISS', storable: verdict.storable };
  }

  #refreshInBackground(target: Target, stale: StoredEntry): void {
    if (this.#closed) return;
    // One refresh per key at a time: while it runs, other callers join it (SingleFlight).
    const running = this.#refreshes.run(target.key, () => this.#refresh(target, stale));
    this.#track(
      running.catch((err: unknown) => {
        this.#logger.warn({ cacheKey: target.key, code: (err as { code?: unknown }).code }, 'background refresh failed');
      }),
    );
  }

  /**
   * Admission, then the write: space is reserved (evicting now if needed)
   * before a byte is written. A failed write costs the cache, not the
   * response, and is logged once a minute at most.
   */
  async #store(target: Target, entry: StoredEntry, epoch: number): Promise<void> {
    if (epoch !== this.#epoch || this.#closed) return; // removed meanwhile: do not bring it back
    const prepared = this.#storage.prepare(entry);
    let token: number | null;
    try {
      token = await this.#index.reserve(target.id, prepared.bytes);
    } catch (err) {
      this.#storeFailed(target, err);
      return;
    }
    if (token === null) {
      this.#logger.debug({ cacheKey: target.key, bytes: prepared.bytes }, 'entry larger than the whole cache; not stored');
      return;
    }
    if (epoch !== this.#epoch) {
      // Purged while the space was being reserved: the purge found no write to wait for, so none may start now.
      await this.#index.release(token).catch(() => {});
      return;
    }
    const group = this.#storage.groupOf(target.id);
    const writing = this.#storage.write(target.id, prepared);
    this.#writes.add(group, writing);
    try {
      await writing;
    } catch (err) {
      await this.#index.release(token).catch(() => {});
      this.#storeFailed(target, err);
      return;
    }
    await this.#index.commit(token);
    if (epoch === this.#epoch) this.#keepInMemory(target, entry); // not when a purge came during the write
  }

  #keepInMemory(target: Target, entry: StoredEntry): void {
    if (target.forVariant !== true) this.#memory.set(target.id, entry);
  }

  #storeFailed(target: Target, err: unknown): void {
    this.#counts.storeFailures += 1;
    const letThrough = this.#storeWarnings.take();
    if (letThrough === undefined) return;
    this.#logger.warn(
      { cacheKey: target.key, code: (err as { code?: unknown }).code, err, suppressed: letThrough.suppressed },
      'could not store cache entry (disk full or read-only?); serving uncached',
    );
  }

  /** Removes a source and all its variants (the origin said it is gone or changed). */
  async #dropGroup(target: Target): Promise<void> {
    try {
      await this.#removeGroup(this.#storage.groupOf(target.id));
    } catch (err) {
      this.#logger.warn({ cacheKey: target.sourceKey, err }, 'could not remove outdated cache entries');
    }
  }

  /** A source's group out of every tier here (memory, disk, index) and announced to the other processes. */
  async #removeGroup(group: string): Promise<EntryId[]> {
    this.#memory.deleteGroup(group);
    let removed: EntryId[];
    try {
      await this.#writes.settled(group); // a write under way would land after the removal
      removed = await this.#storage.deleteGroup(group);
    } finally {
      // A disk hit read while the files were still there may have put the group back in memory: it would be served
      // from there until evicted. (A read still in flight is kept out by the caller moving the epoch, where it can.)
      this.#memory.deleteGroup(group);
    }
    await this.#index.remove(removed);
    await this.#announce(removed);
    return removed;
  }

  /** The stored entry if it is intact and really is the one for this key; otherwise undefined. */
  async #readVerified(target: Target, lend?: (bodySize: number) => boolean): Promise<ReadEntry | undefined> {
    let stored: ReadEntry | undefined;
    try {
      stored = await this.#storage.read(target.id, lend === undefined ? undefined : { lend });
    } catch (err) {
      this.#logger.warn({ cacheKey: target.key, err }, 'cache read failed; treating as a miss');
      return undefined;
    }
    if (stored === undefined) return undefined;

    const problem = integrityProblem(stored, target, stored.bodyVerified === true);
    if (problem === undefined) return stored;

    // Logged by key only: the URL may carry credentials in its query.
    this.#counts.corruptEntries += 1;
    this.#logger.warn({ cacheKey: target.key, problem }, 'cache entry failed its integrity check; discarding it');
    try {
      await this.#storage.delete(target.id);
      await this.#index.remove([target.id]);
    } catch (err) {
      this.#logger.warn({ cacheKey: target.key, err }, 'could not delete damaged cache entry');
    }
    return undefined;
  }

  #touch(id: EntryId): void {
    this.#index.touch(id).catch((err: unknown) => {
      this.#logger.debug({ err }, 'index touch failed');
    });
  }

  async #announce(removed: EntryId[] | 'all'): Promise<void> {
    if (this.#removals === undefined) return;
    await this.#removals.announce(removed).catch((err: unknown) => {
      this.#logger.warn({ err }, 'could not announce removed cache entries to other processes');
    });
  }

  async #applyRemovalsOfOthers(): Promise<void> {
    if (this.#removals === undefined) return;
    const { ids, all } = await this.#removals.poll();
    if (!all && ids.length === 0) return;
    this.#epoch += 1;
    if (all) {
      this.#memory.clear();
      this.#negative.clear();
      await this.#index.clear();
      return;
    }
    for (const id of ids) this.#memory.delete(id);
    await this.#index.remove(ids);
  }

  async #publishStatus(): Promise<void> {
    if (this.#statusBoard === undefined || this.#closed) return;
    try {
      await this.#statusBoard.publish({ ...(await this.stats()), updatedAt: this.#now() });
    } catch (err) {
      // A full or read-only directory is already reported by the failing entry writes.
      this.#logger.debug({ err }, 'could not publish cache counters');
    }
  }

  /** Runs `task` every `ms` (not keeping the process alive), logging failures. */
  #every(ms: number, task: () => Promise<void>): void {
    const timer = setInterval(() => {
      if (this.#closed) return;
      this.#track(
        task().catch((err: unknown) => {
          this.#logger.warn({ err }, 'cache housekeeping failed');
        }),
      );
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }

  #track(promise: Promise<unknown>): void {
    this.#background.add(promise);
    void promise.finally(() => this.#background.delete(promise));
  }
}

function makeEntry(
  target: Target,
  body: Buffer,
  contentType: string,
  sourceSha256: string,
  freshness: Freshness,
  origin: OriginInfo,
  now: number,
  decoded: boolean,
): StoredEntry {
  // A source's own hash is what its caller passes as sourceSha256 (already computed: not hashed twice).
  const sha = target.variant === SOURCE_VARIANT ? sourceSha256 : sha256Hex(body);
  return {
    meta: {
      key: target.key,
      sourceKey: target.sourceKey,
      sourceUrl: target.url,
      variant: target.variant,
      contentType,
      size: body.length,
      sha256: sha,
      sourceSha256: target.variant === SOURCE_VARIANT ? sha : sourceSha256,
      storedAt: now,
      freshness: { ...freshness },
      origin: keptOrigin(origin),
      ...(decoded ? { decoded: true as const } : {}),
    },
    body,
  };
}

/** Why a stored entry must not be served, or undefined when it is sound (`bodyHashed`: the storage already checked the SHA-256). */
function integrityProblem(entry: StoredEntry, target: Target, bodyHashed = false): string | undefined {
  const { meta, body } = entry;
  if (meta.key !== target.key || meta.sourceKey !== target.sourceKey || meta.sourceUrl !== target.url || meta.variant !== target.variant) {
    return 'entry belongs to another key';
  }
  if (meta.size !== body.length) return 'size mismatch';
  if (!bodyHashed && sha256Hex(body) !== meta.sha256) return 'sha256 mismatch';
  return undefined;
}

function isOriginTrouble(err: unknown): boolean {
  return err instanceof FastImageCacheError && ORIGIN_TROUBLE.has(err.code);
}

/** The validators to revalidate with, if the origin gave any. */
function conditionalFor(origin: OriginInfo): LoadRequest['conditional'] {
  if (origin.etag === undefined && origin.lastModified === undefined) return undefined;
  return {
    ...(origin.etag === undefined ? {} : { etag: origin.etag }),
    ...(origin.lastModified === undefined ? {} : { lastModified: origin.lastModified }),
  };
}

/** Only the headers that matter to revalidation and freshness are stored. */
function keptOrigin(origin: OriginInfo): OriginInfo {
  const kept: OriginInfo = {};
  for (const field of ['etag', 'lastModified', 'cacheControl', 'expires', 'date', 'age'] as const) {
    const value = origin[field];
    if (value !== undefined) kept[field] = value;
  }
  return kept;
}

/** A strong ETag: same bytes, same tag, whatever the URL. */
export function etagFor(sha256: string): string {
  return `"${sha256.slice(0, 32)}"`;
}

