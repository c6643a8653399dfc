import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.ts';
import type { RedisConnection } from '../storage/redis/connection.ts';
import { LatestWrite } from './latest-write.ts';
import { parseJsonRecord } from './pubsub-message.ts';

/** What a purge removes: every cached variant of one source (by its cache key: no URL travels through Redis), or everything. */
export type PurgeMessage = { kind: 'source'; sourceKey: string } | { kind: 'all' };

/** Where a node keeps how far it has applied the purge log, across restarts (its cache directory). */
export interface PurgeCursorStore {
  read(): Promise<string | undefined>;
  write(id: string): Promise<void>;
}

export interface PurgeBusOptions {
  connection: RedisConnection;
  logger: Logger;
  /** Applies a purge announced by another node to this node's local tiers (memory and disk). */
  onPurge: (message: PurgeMessage) => Promise<void>;
  /**
   * Called when this node cannot show that it has applied every purge: on
   * its first subscription, and on a resubscription whose gap the purge log
   * does not cover (Redis lost it, or more than PURGE_LOG_MAX purges were
   * made meanwhile). It drops what it cannot trust (its memory tier).
   */
  onResync: () => void | Promise<void>;
  /**
   * Keeps the cursor across restarts: a node started with one applies the
   * purges logged since, as after a reconnect. Without one (or on the first
   * start over a directory), a node starts from the end of the log.
   */
  cursorStore?: PurgeCursorStore;
}

/** Purges the log keeps for nodes catching up after a reconnect (about; Redis trims whole blocks). */
export const PURGE_LOG_MAX = 10_000;
/**
 * A catch-up whose read of the log failed is tried again this often until one
 * succeeds: the subscriber connection can be back before the command
 * connection (or that one in its cool-down), and no later subscription may
 * come to try again.
 */
const CATCH_UP_RETRY_MS = 250;

/**
 * One round trip: the purge goes into the log (a Redis stream), then out on
 * the channel with its log id, so a listener knows how far it has read.
 */
const ANNOUNCE_SCRIPT = `local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'purge', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. ' ' .. ARGV[2])
return id`;

/**
 * Carries purges between nodes over Redis pub/sub. The node that purges
 * cleans its own tiers and the shared tier itself, then announces the purge
 * here; every other node applies it to its local tiers. Pub/sub keeps nothing
 * for a node that is not listening, so every purge also goes into a log, and
 * a node that resubscribes applies what it missed from there first.
 */
export class PurgeBus {
  /** Identifies this node's own announcements, which it has already applied. */
  readonly nodeId = randomBytes(8).toString('hex');
  readonly #redis: RedisConnection;
  readonly #logger: Logger;
  readonly #onPurge: PurgeBusOptions['onPurge'];
  readonly #onResync: PurgeBusOptions['onResync'];
  readonly #channel: string;
  readonly #log: string;
  /** Log id of the latest purge this node has seen; undefined until its first subscription. */
  #cursor: string | undefined;
  readonly #unsubscribe: Array<() => void> = [];
  readonly #pending = new Set<Promise<void>>();
  /** The cursor of an earlier run, read once at start. */
  readonly #stored: Promise<string | undefined>;
  readonly #cursorWrites: LatestWrite<string> | undefined;
  /** The cursor last handed to #cursorWrites (or read from the store). */
  #persisted: string | undefined;
  #closed = false;
  /**
   * False from a subscription until its catch-up has read the log: until
   * then a message on the channel must not move the cursor past purges the
   * log holds and this node has not read yet.
   */
  #caughtUp = false;
  /** Log ids of the purges applied from the channel while catching up: the log read skips them (no double purge). */
  readonly #appliedWhileCatchingUp = new Set<string>();
  /** A catch-up to try again (its read of the log failed). */
  #retry: NodeJS.Timeout | undefined;

  constructor(opts: PurgeBusOptions) {
    this.#redis = opts.connection;
    this.#logger = opts.logger;
    this.#onPurge = opts.onPurge;
    this.#onResync = opts.onResync;
    this.#channel = purgeChannel(opts.connection);
    this.#log = purgeLogKey(opts.connection);
    const store = opts.cursorStore;
    this.#cursorWrites =
      store &&
      new LatestWrite<string>(
        (id) => store.write(id),
        (err) => {
          this.#logger.warn({ err }, 'could not write the purge cursor to the cache directory');
        },
      );
    this.#stored = (opts.cursorStore?.read() ?? Promise.resolve(undefined)).catch((err: unknown) => {
      this.#logger.warn({ err }, 'could not read the purge cursor of the cache directory; starting from the end of the purge log');
      return undefined;
    });
    this.#unsubscribe.push(
      opts.connection.subscribe(this.#channel, (raw) => {
        this.#receive(raw);
      }),
      opts.connection.onSubscribed(() => {
        this.#startResync();
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
    this.#closed = true;
    clearTimeout(this.#retry);
    for (const unsubscribe of this.#unsubscribe) unsubscribe();
    await this.idle();
    this.#persist();
    await this.#cursorWrites?.flush();
  }

  #receive(raw: string): void {
    const parsed = parsePurge(raw);
    if (parsed === undefined) {
      this.#logger.warn('ignoring a malformed purge message');
      return;
    }
    if (parsed.id !== undefined) {
      if (!this.#caughtUp) this.#appliedWhileCatchingUp.add(parsed.id);
      else if (this.#cursor !== undefined) this.#cursor = laterId(this.#cursor, parsed.id);
    }
    this.#apply(parsed);
  }

  #apply(parsed: { from: string; message: PurgeMessage }): void {
    if (parsed.from === this.nodeId) return;
    this.#track(
      this.#onPurge(parsed.message).catch((err: unknown) => {
        this.#logger.warn({ err, purge: parsed.message.kind }, 'could not apply a purge from another node');
      }),
    );
  }

  #startResync(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    if (this.#caughtUp) this.#appliedWhileCatchingUp.clear();
    this.#caughtUp = false;
    this.#track(this.#resync());
  }

  async #resync(): Promise<void> {
    if (this.#cursor === undefined) {
      const stored = await this.#stored;
      if (stored !== undefined) this.#restore(stored);
    }
    const caughtUp = await this.#catchUp();
    if (this.#pending.size === 0) this.#persist();
    if (caughtUp === 'unread') {
      // Not a gap yet: what was missed is in the log, read as soon as Redis answers (the memory tier is kept meanwhile,
      // as it is while Redis is away).
      if (!this.#closed) {
        this.#retry = setTimeout(() => {
          this.#startResync();
        }, CATCH_UP_RETRY_MS);
        this.#retry.unref();
      }
      return;
    }
    if (caughtUp === 'complete') return;
    try {
      await this.#onResync();
    } catch (err) {
      this.#logger.warn({ err }, 'could not drop the memory tier after reconnecting to redis');
    }
  }

  /** Starts from an earlier run's cursor, unless a subscription of this run got a cursor first (it is the newer). */
  #restore(stored: string): void {
    if (this.#cursor !== undefined) return;
    this.#cursor = stored;
    this.#persisted = stored;
  }

  /**
   * Applies the purges logged since this node's cursor: 'complete' when that
   * covers everything it may have missed, 'gap' when the log no longer
   * reaches back to the cursor (what it still holds is applied all the same:
   * missed, or applied before; purges are idempotent, a repeat costs at most
   * a refetch), 'unread' when Redis did not answer (the caller tries again).
   * A node with no cursor starts from the end of the log ('gap': it cannot
   * show what it missed).
   */
  async #catchUp(): Promise<'complete' | 'gap' | 'unread'> {
    const first = this.#cursor === undefined;
    const cursor = this.#cursor ?? '0-0';
    const read = await this.#redis.attempt('purge log', async (c) => {
      const latest = (await c.xrevrange(this.#log, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0';
      if (first) return { latest, entries: [], complete: false };
      // The cursor's own entry gone: the log no longer reaches back that far (trimmed, or Redis lost it).
      const complete = cursor === '0-0' || (await c.xrange(this.#log, cursor, cursor)).length > 0;
      return { latest, entries: await c.xrange(this.#log, complete ? `(${cursor}` : '-', '+'), complete };
    });
    if (!read.ok) {
      this.#logger.debug('could not read the purge log yet; trying again');
      return 'unread';
    }
    this.#cursor = this.#cursor === undefined ? read.value.latest : laterId(this.#cursor, read.value.latest);
    this.#caughtUp = true;
    for (const [id, fields] of read.value.entries) {
      if (this.#appliedWhileCatchingUp.has(id)) continue;
      const parsed = parsePurge(fields[1] ?? '');
      if (parsed === undefined) this.#logger.warn('ignoring a malformed purge log entry');
      else this.#apply(parsed);
    }
    this.#appliedWhileCatchingUp.clear();
    if (!read.value.complete && !first) {
      this.#logger.warn("the purge log does not reach back to this node's last purge; purges made meanwhile may have been missed");
    }
    return read.value.complete ? 'complete' : 'gap';
  }

  #track(work: Promise<void>): void {
    this.#pending.add(work);
    void work.finally(() => {
      this.#pending.delete(work);
      // Nothing received is still being applied, so everything up to the cursor is done: safe to keep.
      if (this.#pending.size === 0) this.#persist();
    });
  }

  /** Keeps the cursor in the store; call only when every purge up to it has been applied. */
  #persist(): void {
    if (this.#cursorWrites === undefined || this.#cursor === undefined || this.#cursor === this.#persisted) return;
    this.#persisted = this.#cursor;
    this.#cursorWrites.request(this.#cursor);
  }
}

function purgeChannel(connection: RedisConnection): string {
  return connection.key('purge');
}

/** The Redis key of the purge log, which a persisted cursor names. */
export function purgeLogKey(connection: RedisConnection): string {
  return connection.key('purge-log');
}

/** The later of two stream ids (`ms-seq`). */
function laterId(a: string, b: string): string {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return bm > am || (bm === am && bs > as) ? b : a;
}

/**
 * Tells every node listening on `connection`'s Redis to apply `message` to its
 * local tiers (for senders that are not nodes, like the CLI); false when Redis
 * is unavailable.
 */
export async function announcePurge(connection: RedisConnection, message: PurgeMessage, from = `cli-${randomBytes(4).toString('hex')}`): Promise<boolean> {
  const payload = JSON.stringify({ from, ...message });
  const sent = await connection.attempt('purge', (c) =>
    c.eval(ANNOUNCE_SCRIPT, 2, purgeLogKey(connection), purgeChannel(connection), String(PURGE_LOG_MAX), payload),
  );
  return sent.ok;
}

/** A channel message is `<log id> <json>`; a bare JSON object (a node of an older version) has no id. */
function parsePurge(raw: string): { from: string; message: PurgeMessage; id?: string } | undefined {
  const space = raw.indexOf(' ');
  const id = space > 0 && /^\d+-\d+$/.test(raw.slice(0, space)) ? raw.slice(0, space) : undefined;
  const parsed = parsePurgeJson(id === undefined ? raw : raw.slice(space + 1));
  return parsed && id !== undefined ? { ...parsed, id } : parsed;
}

function parsePurgeJson(raw: string): { from: string; message: PurgeMessage } | undefined {
  const value = parseJsonRecord(raw);
  if (!value || typeof value.from !== 'string') return undefined;
  const message = purgeMessageOf(value);
  return message && { from: value.from, message };
}

/** A purge message read back from outside (Redis, a file): only the two known shapes, with a well-formed key. */
export function purgeMessageOf(value: unknown): PurgeMessage | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { kind, sourceKey } = value as Record<string, unknown>;
  if (kind === 'all') return { kind: 'all' };
  if (kind === 'source' && typeof sourceKey === 'string' && /^[0-9a-f]{16,128}$/.test(sourceKey)) return { kind: 'source', sourceKey };
  return undefined;
}
