import type { Logger } from '../log.ts';
import type { EntryCipher } from '../storage/entry-cipher.ts';
import type { RedisConnection, RedisHealth } from '../storage/redis/connection.ts';
import { RedisSharedTier } from '../storage/redis/shared-tier.ts';
import type { StoredEntry } from '../storage/types.ts';
import { ClusterSingleFlight } from './cluster-single-flight.ts';
import { DistributedLock } from './distributed-lock.ts';
import { PendingPurges, type OwedPurgesStore } from './pending-purges.ts';
import { PurgeBus, type PurgeCursorStore, type PurgeMessage } from './purge-bus.ts';

export interface ClusterCacheOptions {
  connection: RedisConnection;
  /** Largest body shared through Redis. */
  maxEntryBytes: number;
  /** How long Redis keeps a shared entry, ms. */
  entryTtlMs: number;
  /** Expiry of the fetch lock, ms (kept alive while its holder works). */
  lockTtlMs: number;
  /** Longest a node waits for another node's fetch before fetching itself, ms. */
  maxWaitMs: number;
  /** Fallback poll of a waiting node, ms. */
  pollIntervalMs?: number;
  /** The disk tier's at-rest cipher, if any: shared entries are sealed with it too. */
  cipher?: EntryCipher;
  /** Where this node keeps how far it has applied the purge log, so a restart applies what it missed meanwhile. */
  purgeCursor?: PurgeCursorStore;
  /** Where purges Redis could not take yet outlive this process, so a restart still carries them. */
  owedPurges?: OwedPurgesStore;
  logger: Logger;
}

/** Purges Redis could not take are tried again this often (its link skips Redis for 1 s after a failure). */
const PURGE_RETRY_MS = 1_000;
/** The cache directory is looked at this often for purges a CLI run (or a dead process) left owing. */
const ADOPT_OWED_PURGES_MS = 2_000;
/** Source purges owed at most (a purge of everything covers them all). */
const MAX_OWED_PURGES = 10_000;

/** What the cache manager lets other nodes do to its local tiers. */
export interface LocalTierHandlers {
  /** Removes a source (and its variants), or everything, from this node's memory and disk tiers. */
  purgeLocal(message: PurgeMessage): Promise<void>;
  /** Forgets the memory tier: purges sent while this node was not listening were missed. */
  dropMemoryTier(): void | Promise<void>;
}

/**
 * The cluster side of the cache manager when `redis.url` is set: the shared
 * tier behind the local ones, single-flight across nodes, and purges carried
 * to every node. Every operation degrades to "local only" when Redis is down
 * or slow (a purge is owed, and carried once it is back); none of them
 * throws because of Redis.
 */
export class ClusterCache {
  readonly #shared: RedisSharedTier<StoredEntry['meta']>;
  readonly #flight: ClusterSingleFlight;
  readonly #bus: PurgeBus;
  readonly #owedPurges: PendingPurges;
  readonly #connection: RedisConnection;
  readonly #entryTtlMs: number;
  #handlers: LocalTierHandlers | undefined;

  constructor(opts: ClusterCacheOptions) {
    this.#connection = opts.connection;
    this.#entryTtlMs = opts.entryTtlMs;
    this.#shared = new RedisSharedTier({
      connection: opts.connection,
      maxEntryBytes: opts.maxEntryBytes,
      logger: opts.logger,
      ...(opts.cipher ? { cipher: opts.cipher } : {}),
    });
    this.#flight = new ClusterSingleFlight({
      connection: opts.connection,
      lock: new DistributedLock({ connection: opts.connection, ttlMs: opts.lockTtlMs }),
      pollIntervalMs: opts.pollIntervalMs ?? 200,
      maxWaitMs: opts.maxWaitMs,
      logger: opts.logger,
    });
    this.#bus = new PurgeBus({
      connection: opts.connection,
      logger: opts.logger,
      onPurge: async (message) => this.#handlers?.purgeLocal(message),
      onResync: () => this.#handlers?.dropMemoryTier(),
      ...(opts.purgeCursor ? { cursorStore: opts.purgeCursor } : {}),
    });
    this.#owedPurges = new PendingPurges({
      carry: (message) => this.#carry(message),
      retryMs: PURGE_RETRY_MS,
      max: MAX_OWED_PURGES,
      logger: opts.logger,
      ...(opts.owedPurges ? { store: opts.owedPurges, adoptEveryMs: ADOPT_OWED_PURGES_MS } : {}),
    });
  }

  /** Called once by the cache manager that owns the local tiers. */
  attach(handlers: LocalTierHandlers): void {
    this.#handlers = handlers;
  }

  /** An intact entry another node shared under `key`, or undefined. */
  read(key: string): Promise<StoredEntry | undefined> {
    return this.#readShared(key);
  }

  /** Another node's word that a body decodes (EntryMeta.decoded) is not taken: this node decodes it once itself. */
  async #readShared(key: string): Promise<StoredEntry | undefined> {
    const entry = await this.#shared.read(key);
    if (entry?.meta.decoded === undefined) return entry;
    const meta = { ...entry.meta };
    delete meta.decoded;
    return { meta, body: entry.body };
  }

  /**
   * For a key this node does not have: the entry from the shared tier, or
   * `produce`d here, at most once for the whole cluster (the others wait and
   * read what this node shares). `produced` tells whether this node made it;
   * `shareable` false keeps a produced entry out of Redis.
   */
  async fill(
    key: string,
    sourceKey: string,
    produce: () => Promise<{ entry: StoredEntry; shareable: boolean }>,
  ): Promise<{ entry: StoredEntry; produced: boolean }> {
    return this.#flight.run<{ entry: StoredEntry; produced: boolean }>(key, {
      lookup: async () => {
        const entry = await this.#readShared(key);
        return entry === undefined ? undefined : { entry, produced: false };
      },
      produce: async () => {
        // Not shareable: the origin forbade storing it (no-store, private); the others fetch it themselves.
        const { entry, shareable } = await produce();
        const shared = shareable && (await this.share(entry, sourceKey)) === 'stored';
        return { value: { entry, produced: true }, shared };
      },
    });
  }

  /** Puts an entry in the shared tier (e.g. after a revalidation); why not, when it was not stored. */
  share(entry: StoredEntry, sourceKey: string): Promise<'stored' | 'too_large' | 'unavailable'> {
    return this.#shared.write(entry, { ttlMs: this.#entryTtlMs, group: sourceKey });
  }

  /** Removes a source and its variants from the shared tier and tells every other node to drop them. */
  async purgeSource(sourceKey: string): Promise<void> {
    await this.#purge({ kind: 'source', sourceKey });
  }

  async purgeAll(): Promise<void> {
    await this.#purge({ kind: 'all' });
  }

  /** Carried now, or owed until Redis takes it (PendingPurges): never left on this node alone. */
  async #purge(message: PurgeMessage): Promise<void> {
    if (!(await this.#carry(message))) await this.#owedPurges.add(message);
  }

  /** The shared tier first, so no node can refill from it; then the announcement. */
  async #carry(message: PurgeMessage): Promise<boolean> {
    const cleared = message.kind === 'all' ? await this.#shared.clear() : (await this.#shared.deleteGroup(message.sourceKey)) !== undefined;
    return cleared && (await this.#bus.publish(message));
  }

  health(): RedisHealth {
    return this.#connection.health();
  }

  /** Resolves when every purge received from other nodes so far has been applied here. */
  idle(): Promise<void> {
    return this.#bus.idle();
  }

  async close(): Promise<void> {
    await this.#owedPurges.close();
    this.#flight.close();
    await this.#bus.close();
  }
}
