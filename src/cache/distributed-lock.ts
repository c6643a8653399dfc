import { randomBytes } from 'node:crypto';
import type { RedisConnection } from '../storage/redis/connection.ts';

/** A lock this node holds: only the holder of `token` may extend or release it. */
export interface LockHandle {
  readonly name: string;
  readonly token: string;
}

export type AcquireResult =
  | { status: 'acquired'; handle: LockHandle }
  /** Another node holds it. */
  | { status: 'held' }
  /** Redis is down or failing: no node can be elected, so act alone. */
  | { status: 'unavailable' };

export interface DistributedLockOptions {
  connection: RedisConnection;
  /** How long a lock lives unless extended: a holder that dies frees it after this long. */
  ttlMs: number;
}

// Compare-and-delete / compare-and-extend: a holder whose lock expired and was
// taken by another node must not remove or prolong the new holder's lock.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;
const EXTEND = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

/**
 * A short-lived mutual-exclusion lock in Redis (SET NX PX with a random
 * token): at most one node holds a name at a time, and a lock whose holder
 * died expires by itself after `ttlMs`.
 */
export class DistributedLock {
  readonly #redis: RedisConnection;
  readonly ttlMs: number;

  constructor(opts: DistributedLockOptions) {
    this.#redis = opts.connection;
    this.ttlMs = opts.ttlMs;
  }

  async acquire(name: string): Promise<AcquireResult> {
    const token = randomBytes(16).toString('hex');
    const r = await this.#redis.attempt('lock acquire', (c) => c.set(this.#key(name), token, 'PX', this.ttlMs, 'NX'));
    if (!r.ok) return { status: 'unavailable' };
    return r.value === 'OK' ? { status: 'acquired', handle: { name, token } } : { status: 'held' };
  }

  /** Pushes the expiry `ttlMs` into the future; false if the lock is no longer ours (or Redis is unavailable). */
  async extend(handle: LockHandle): Promise<boolean> {
    const r = await this.#redis.attempt('lock extend', (c) => c.eval(EXTEND, 1, this.#key(handle.name), handle.token, this.ttlMs));
    return r.ok && Number(r.value) === 1;
  }

  /** Releases the lock if it is still ours; true if it was. */
  async release(handle: LockHandle): Promise<boolean> {
    const r = await this.#redis.attempt('lock release', (c) => c.eval(RELEASE, 1, this.#key(handle.name), handle.token));
    return r.ok && Number(r.value) === 1;
  }

  /** Whether some node holds `name` now; undefined when Redis is unavailable. */
  async isHeld(name: string): Promise<boolean | undefined> {
    const r = await this.#redis.attempt('lock check', (c) => c.exists(this.#key(name)));
    return r.ok ? r.value === 1 : undefined;
  }

  #key(name: string): string {
    return this.#redis.key('lock', name);
  }
}
