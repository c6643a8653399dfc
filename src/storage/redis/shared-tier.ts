import type { Logger } from '../../log.ts';
import type { EntryCipher } from '../entry-cipher.ts';
import type { RedisConnection } from './connection.ts';
import { decodeSharedEntry, encodeSharedEntry, type Sealing } from './shared-entry-codec.ts';
import { sha256Hex } from '../../hash.ts';

/** What the shared tier needs of an entry's metadata; the rest is stored as it is. */
export interface SharedEntryMeta {
  /** The cache key (hex) the entry is stored under. */
  key: string;
  /** Body length in bytes. */
  size: number;
  /** SHA-256 of the body, hex. */
  sha256: string;
}

export interface SharedEntry<M extends SharedEntryMeta = SharedEntryMeta> {
  meta: M;
  body: Buffer;
}

export interface SharedTierOptions {
  connection: RedisConnection;
  /** Larger bodies stay local: Redis is memory, and one big value blocks it for everyone. */
  maxEntryBytes: number;
  logger: Logger;
  /** The at-rest cipher of the disk tier, if entries are encrypted there: shared entries are then sealed too. */
  cipher?: EntryCipher;
}

export interface SharedWriteOptions {
  /** How long Redis keeps the entry, ms. */
  ttlMs: number;
  /** Entries written with the same group (e.g. every variant of one source) are removed together by `deleteGroup`. */
  group?: string;
}

/** `stored`, or why not: too large for the shared tier, or Redis unavailable / failing. */
export type SharedWriteResult = 'stored' | 'too_large' | 'unavailable';

// Entry and group membership in one step; the group lives as long as its longest-lived entry.
const WRITE_IN_GROUP = `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return 1`;

// Every member of the group, then the group itself (atomic: no write slips in between).
const DELETE_GROUP = `
local members = redis.call('SMEMBERS', KEYS[1])
local removed = 0
for _, key in ipairs(members) do removed = removed + redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return removed`;

/**
 * The tier every node shares: whole entries (metadata + body) in Redis
 * strings, with a TTL, checked against their SHA-256 on the way out exactly
 * like disk entries. Every method absorbs Redis failures (see
 * RedisConnection.attempt): a miss or a skipped write, never an error.
 */
export class RedisSharedTier<M extends SharedEntryMeta = SharedEntryMeta> {
  readonly #redis: RedisConnection;
  readonly #maxEntryBytes: number;
  readonly #logger: Logger;
  readonly #cipher: EntryCipher | undefined;

  constructor(opts: SharedTierOptions) {
    this.#redis = opts.connection;
    this.#maxEntryBytes = opts.maxEntryBytes;
    this.#logger = opts.logger;
    this.#cipher = opts.cipher;
  }

  get maxEntryBytes(): number {
    return this.#maxEntryBytes;
  }

  /** The entry if Redis has an intact one for `key`; undefined on absence, damage or unavailability. */
  async read(key: string): Promise<SharedEntry<M> | undefined> {
    const redisKey = this.#entryKey(key);
    const r = await this.#redis.attempt('shared read', (c) => c.getBuffer(redisKey));
    if (!r.ok || r.value === null) return undefined;
    const decoded = decodeSharedEntry(r.value, this.#sealing(redisKey));
    const problem = decoded === undefined ? 'not an entry' : integrityProblem(decoded.meta, decoded.body, key);
    if (problem === undefined && decoded !== undefined) return { meta: decoded.meta as unknown as M, body: decoded.body };

    // Logged by key only: the metadata carries the source URL, which may hold credentials.
    this.#logger.warn({ cacheKey: key, problem }, 'shared cache entry failed its integrity check; discarding it');
    await this.#redis.attempt('shared delete damaged', (c) => c.del(redisKey));
    return undefined;
  }

  async write(entry: SharedEntry<M>, options: SharedWriteOptions): Promise<SharedWriteResult> {
    if (entry.body.length > this.#maxEntryBytes) return 'too_large';
    const ttlMs = Math.max(1, Math.floor(options.ttlMs));
    const redisKey = this.#entryKey(entry.meta.key);
    const value = encodeSharedEntry(entry.meta, entry.body, this.#sealing(redisKey));
    const group = options.group;
    const r = await this.#redis.attempt('shared write', (c) =>
      group === undefined
        ? c.set(redisKey, value, 'PX', ttlMs)
        : c.eval(WRITE_IN_GROUP, 2, redisKey, this.#groupKey(group), value, ttlMs),
    );
    return r.ok ? 'stored' : 'unavailable';
  }

  /** Removes one entry; true if Redis had it, false if not or unavailable. */
  async delete(key: string): Promise<boolean> {
    const r = await this.#redis.attempt('shared delete', (c) => c.del(this.#entryKey(key)));
    return r.ok && r.value > 0;
  }

  /** Removes every entry written with `group`; the count removed, or undefined when Redis is unavailable. */
  async deleteGroup(group: string): Promise<number | undefined> {
    const r = await this.#redis.attempt('shared delete group', (c) => c.eval(DELETE_GROUP, 1, this.#groupKey(group)));
    return r.ok ? Number(r.value) : undefined;
  }

  /** Removes every shared entry and group of this deployment (its key prefix); false when Redis is unavailable. */
  async clear(): Promise<boolean> {
    for (const pattern of [globEscape(this.#entryKey('')) + '*', globEscape(this.#groupKey('')) + '*']) {
      let cursor = '0';
      do {
        const r = await this.#redis.attempt('shared clear', (c) => c.scan(cursor, 'MATCH', pattern, 'COUNT', 500));
        if (!r.ok) return false;
        const [next, keys] = r.value;
        cursor = next;
        if (keys.length > 0) {
          const d = await this.#redis.attempt('shared clear', (c) => c.unlink(...keys));
          if (!d.ok) return false;
        }
      } while (cursor !== '0');
    }
    return true;
  }

  /** Sealed values are bound to their Redis key: one cannot be moved under another key. */
  #sealing(redisKey: string): Sealing | undefined {
    return this.#cipher === undefined ? undefined : { cipher: this.#cipher, aad: Buffer.from(redisKey, 'utf8') };
  }

  #entryKey(key: string): string {
    return this.#redis.key('entry', key);
  }

  #groupKey(group: string): string {
    return this.#redis.key('group', group);
  }
}

/** The key prefix comes from configuration: keep its characters literal in a SCAN pattern. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/** Why a value read back must not be served, or undefined when it is sound. */
function integrityProblem(meta: Record<string, unknown>, body: Buffer, key: string): string | undefined {
  if (meta.key !== key) return 'entry belongs to another key';
  if (meta.size !== body.length) return 'size mismatch';
  if (typeof meta.sha256 !== 'string' || sha256Hex(body) !== meta.sha256) return 'sha256 mismatch';
  return undefined;
}
