import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { RedisConnection } from '../storage/redis/connection.ts';
import { parseJsonRecord } from './pubsub-message.ts';

/** What a purge removes: every cached variant of one source (by its cache key: no URL travels through Redis), or everything. */
export type PurgeMessage = { kind: 'source'; sourceKey: string } | { kind: 'all' };

export interface PurgeBusOptions {
  connection: RedisConnection;
  logger: Logger;
  /** Applies a purge announced by another node to this node's local tiers (memory and disk). */
  onPurge: (message: PurgeMessage) => Promise<void>;
  /**
   * Called whenever the subscription is (re)established: purges announced
   * while this node was not listening are lost, so it drops what it cannot
   * trust (its memory tier).
   */
  onResync: () => void | Promise<void>;
}

/**
 * Carries purges between nodes over Redis pub/sub. The node that purges
 * cleans its own tiers and the shared tier itself, then announces the purge
 * here; every other node applies it to its local tiers.
 */
export class PurgeBus {
  /** Identifies this node's own announcements, which it has already applied. */
  readonly nodeId = randomBytes(8).toString('hex');
  readonly #redis: RedisConnection;
  readonly #logger: Logger;
  readonly #onPurge: PurgeBusOptions['onPurge'];
  readonly #onResync: PurgeBusOptions['onResync'];
  readonly #channel: string;
  readonly #unsubscribe: Array<() => void> = [];
  readonly #pending = new Set<Promise<void>>();

  constructor(opts: PurgeBusOptions) {
    this.#redis = opts.connection;
    this.#logger = opts.logger;
    this.#onPurge = opts.onPurge;
    this.#onResync = opts.onResync;
    this.#channel = purgeChannel(opts.connection);
    this.#unsubscribe.push(
      opts.connection.subscribe(this.#channel, (raw) => {
        this.#receive(raw);
      }),
      opts.connection.onSubscribed(() => {
        this.#track(this.#resync());
      }),
    );
  }

  /** Announces a purge to the other nodes; false when Redis is unavailable (ClusterCache then owes it: PendingPurges). */
  publish(message: PurgeMessage): Promise<boolean> {
    return announcePurge(this.#redis, message, this.nodeId);
  }

  /** Resolves when every purge received so far has been applied. */
  async idle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async close(): Promise<void> {
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    await this.idle();
  }

  #receive(raw: string): void {
    const parsed = parsePurge(raw);
    if (parsed === undefined) {
      this.#logger.warn('ignoring a malformed purge message');
      return;
    }
    if (parsed.from === this.nodeId) return;
    this.#track(
      this.#onPurge(parsed.message).catch((err: unknown) => {
        this.#logger.warn({ err, purge: parsed.message.kind }, 'could not apply a purge from another node');
      }),
    );
  }

  async #resync(): Promise<void> {
    try {
      await this.#onResync();
    } catch (err) {
      this.#logger.warn({ err }, 'could not drop the memory tier after reconnecting to redis');
    }
  }

  #track(work: Promise<void>): void {
    this.#pending.add(work);
    void work.finally(() => this.#pending.delete(work));
  }
}

function purgeChannel(connection: RedisConnection): string {
  return connection.key('purge');
}

/**
 * Tells every node listening on `connection`'s Redis to apply `message` to its
 * local tiers (for senders that are not nodes, like the CLI); false when Redis
 * is unavailable.
 */
export function announcePurge(connection: RedisConnection, message: PurgeMessage, from = `cli-${randomBytes(4).toString('hex')}`): Promise<boolean> {
  return connection.publish(purgeChannel(connection), JSON.stringify({ from, ...message }));
}

function parsePurge(raw: string): { from: string; message: PurgeMessage } | undefined {
  const value = parseJsonRecord(raw);
  if (!value) return undefined;
  const { from, kind, sourceKey } = value;
  if (typeof from !== 'string') return undefined;
  if (kind === 'all') return { from, message: { kind: 'all' } };
  if (kind === 'source' && typeof sourceKey === 'string' && /^[0-9a-f]{16,128}$/.test(sourceKey)) return { from, message: { kind: 'source', sourceKey } };
  return undefined;
}
