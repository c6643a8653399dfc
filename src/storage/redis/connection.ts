import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../log.ts';

/**
 * - `connecting`: never reached Redis yet (start-up);
 * - `up`: connected and answering in time;
 * - `degraded`: connected but a command failed or timed out; Redis is skipped until the cool-down ends;
 * - `down`: the connection is lost; the client reconnects in the background.
 */
export type RedisState = 'connecting' | 'up' | 'degraded' | 'down';

export interface RedisConnectionOptions {
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. */
  url: string;
  /** Bound on connecting (TCP + TLS + AUTH), ms. */
  connectTimeoutMs: number;
  /** Bound on every command, ms: past it the caller goes on without Redis. */
  commandTimeoutMs: number;
  /** Prefix of every key and channel, so several deployments can share one Redis. */
  keyPrefix: string;
  logger: Logger;
  /** After a failed command, how long Redis is skipped before it is tried again, ms. */
  cooldownMs?: number;
  /** Longest pause between reconnection attempts, ms. */
  maxReconnectDelayMs?: number;
  /** Movable clock for the cool-down. */
  now?: () => number;
}

export interface RedisHealth {
  state: RedisState;
  /** When the state last changed (ms since epoch, from `now`). */
  since: number;
  /** Commands that failed or timed out since start. */
  failedCommands: number;
  /** Times the subscription connection was (re)established. */
  resubscriptions: number;
}

export type MessageHandler = (message: string) => void;

/**
 * One node's link to Redis: a command client and a subscriber client, a health
 * state that every user consults before talking to Redis, and one log line per
 * change of that state. Nothing here ever waits unboundedly: the offline queue
 * is off (a command while disconnected fails at once), every command has a
 * timeout, and a failure makes the node skip Redis for a short cool-down.
 */
export class RedisConnection {
  readonly client: Redis;
  readonly keyPrefix: string;
  readonly #subscriber: Redis;
  readonly #logger: Logger;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  readonly #channels = new Map<string, Set<MessageHandler>>();
  readonly #stateListeners = new Set<(state: RedisState) => void>();
  readonly #subscribedListeners = new Set<() => void>();
  #state: RedisState = 'connecting';
  #since: number;
  #retryAt = 0;
  #failedCommands = 0;
  #resubscriptions = 0;
  #closed = false;

  constructor(opts: RedisConnectionOptions) {
    this.keyPrefix = opts.keyPrefix;
    this.#logger = opts.logger;
    this.#cooldownMs = opts.cooldownMs ?? 1_000;
    this.#now = opts.now ?? Date.now;
    this.#since = this.#now();
    const maxDelay = opts.maxReconnectDelayMs ?? 2_000;
    const options: RedisOptions = {
      connectTimeout: opts.connectTimeoutMs,
      commandTimeout: opts.commandTimeoutMs,
      // Never queue commands while disconnected, never replay them after a reconnect:
      // a request must not wait for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // Capped exponential backoff with jitter, forever: the node recovers by itself.
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), maxDelay) + Math.floor(Math.random() * 50),
      lazyConnect: true,
    };
    this.client = new Redis(opts.url, { ...options, connectionName: 'fastimagecache' });
    // Subscriptions are re-made by hand on every `ready`, so a reconnect is seen here.
    this.#subscriber = new Redis(opts.url, { ...options, connectionName: 'fastimagecache-sub', autoResubscribe: false });

    this.client.on('ready', () => {
      this.#setState('up');
    });
    this.client.on('close', () => {
      if (!this.#closed && this.#state !== 'connecting') this.#setState('down');
    });
    // Errors are reported through the state; the listener also keeps ioredis from printing them.
    this.client.on('error', (err: Error) => {
      this.#logger.debug({ err: redisErrorSummary(err) }, 'redis client error');
    });
    this.#subscriber.on('error', (err: Error) => {
      this.#logger.debug({ err: redisErrorSummary(err) }, 'redis subscriber error');
    });
    this.#subscriber.on('ready', () => void this.#resubscribe());
    this.#subscriber.on('message', (channel: string, message: string) => {
      for (const handler of this.#channels.get(channel) ?? []) {
        try {
          handler(message);
        } catch (err) {
          this.#logger.warn({ err, channel }, 'redis message handler failed');
        }
      }
    });

    // Connect in the background; failures only show up as the state.
    this.client.connect().catch(() => {
      this.#noteConnectFailure();
    });
    this.#subscriber.connect().catch(() => undefined);
  }

  get state(): RedisState {
    return this.#state;
  }

  /** Whether a caller should talk to Redis now (up, or degraded with its cool-down over). */
  get available(): boolean {
    if (this.#closed || this.client.status !== 'ready') return false;
    if (this.#state === 'up') return true;
    return this.#state === 'degraded' && this.#now() >= this.#retryAt;
  }

  health(): RedisHealth {
    return {
      state: this.#state,
      since: this.#since,
      failedCommands: this.#failedCommands,
      resubscriptions: this.#resubscriptions,
    };
  }

  /** `prefix + parts.join(':')`: every key and channel goes through here. */
  key(...parts: string[]): string {
    return this.keyPrefix + parts.join(':');
  }

  /**
   * Runs `fn` against Redis when it is available. Any failure (timeout, lost
   * connection, error reply) is absorbed: it marks Redis degraded and returns
   * `{ ok: false }`, so the caller goes on with its local tiers.
   */
  async attempt<T>(what: string, fn: (client: Redis) => Promise<T>): Promise<{ ok: true; value: T } | { ok: false }> {
    if (!this.available) return { ok: false };
    try {
      const value = await fn(this.client);
      if (this.#state === 'degraded') this.#setState('up');
      return { ok: true, value };
    } catch (err) {
      this.#failedCommands += 1;
      this.#logger.debug({ err: redisErrorSummary(err), what }, 'redis command failed');
      if (this.client.status === 'ready' && !this.#closed) {
        this.#retryAt = this.#now() + this.#cooldownMs;
        this.#setState('degraded');
      }
      return { ok: false };
    }
  }

  /** Publishes to `channel` (already prefixed by the caller with `key()`); false when Redis is unavailable. */
  async publish(channel: string, message: string): Promise<boolean> {
    const r = await this.attempt('publish', (c) => c.publish(channel, message));
    return r.ok;
  }

  /** Calls `handler` for every message on `channel` while the subscription is up; returns an unsubscribe. */
  subscribe(channel: string, handler: MessageHandler): () => void {
    let handlers = this.#channels.get(channel);
    if (handlers === undefined) {
      handlers = new Set();
      this.#channels.set(channel, handlers);
      if (this.#subscriber.status === 'ready') this.#subscriber.subscribe(channel).catch(() => undefined);
    }
    handlers.add(handler);
    return () => {
      handlers.delete(handler);
      if (handlers.size === 0 && this.#channels.get(channel) === handlers) {
        this.#channels.delete(channel);
        if (this.#subscriber.status === 'ready') this.#subscriber.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  /**
   * Called each time the subscriptions are (re)established. Messages sent
   * while they were down are lost, so listeners resynchronise here.
   */
  onSubscribed(listener: () => void): () => void {
    this.#subscribedListeners.add(listener);
    return () => this.#subscribedListeners.delete(listener);
  }

  onStateChange(listener: (state: RedisState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** Waits (bounded) until the command client is connected; true if it is. For start-up and tests. */
  async waitUntilUp(timeoutMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.client.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stateListeners.clear();
    this.#subscribedListeners.clear();
    await Promise.all([quitOrDisconnect(this.client), quitOrDisconnect(this.#subscriber)]);
  }

  async #resubscribe(): Promise<void> {
    try {
      const channels = [...this.#channels.keys()];
      if (channels.length > 0) await this.#subscriber.subscribe(...channels);
    } catch (err) {
      // The connection dropped again; the next `ready` retries.
      this.#logger.debug({ err: redisErrorSummary(err) }, 'redis subscribe failed');
      return;
    }
    this.#resubscriptions += 1;
    for (const listener of this.#subscribedListeners) {
      try {
        listener();
      } catch (err) {
        this.#logger.warn({ err }, 'redis resubscribe listener failed');
      }
    }
  }

  #noteConnectFailure(): void {
    if (!this.#closed && this.#state === 'connecting') this.#setState('down');
  }

  #setState(next: RedisState): void {
    if (this.#closed || next === this.#state) return;
    const previous = this.#state;
    this.#state = next;
    this.#since = this.#now();
    // One line per change of state, never one per failed request.
    if (next === 'up') {
      this.#logger.info({ redis: 'up', previous }, 'redis is available: shared cache tier, locks and purges are on');
    } else if (next === 'degraded') {
      this.#logger.warn({ redis: 'degraded', previous }, 'redis is slow or failing: serving from local tiers only until it answers again');
    } else if (next === 'down') {
      this.#logger.warn({ redis: 'down', previous }, 'redis is unreachable: serving from local tiers only; reconnecting in the background');
    }
    for (const listener of this.#stateListeners) {
      try {
        listener(next);
      } catch (err) {
        this.#logger.warn({ err }, 'redis state listener failed');
      }
    }
  }
}

/** Message and code only: a Redis error can echo the command, which may carry data. */
function redisErrorSummary(err: unknown): { message: string; code?: string } {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined ? { message: err.message, code } : { message: err.message };
  }
  return { message: String(err) };
}

async function quitOrDisconnect(client: Redis): Promise<void> {
  if (client.status === 'ready') {
    try {
      await Promise.race([client.quit(), new Promise((resolve) => setTimeout(resolve, 500).unref())]);
    } catch {
      // fall through to disconnect
    }
  }
  client.disconnect(false);
}
