import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { ClusterSingleFlight } from '../../src/cache/cluster-single-flight.ts';
import { DistributedLock } from '../../src/cache/distributed-lock.ts';
import { PurgeBus, purgeLogKey, type PurgeCursorStore, type PurgeMessage } from '../../src/cache/purge-bus.ts';
import { FastImageCacheError } from '../../src/errors.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { EntryCipher } from '../../src/storage/entry-cipher.ts';
import { createSharedRateLimiter, RedisConnection, RedisSharedTier, type SharedEntry } from '../../src/storage/redis/index.ts';
import { REDIS_SKIP, startRedis, type RedisServer } from '../helpers/redis.ts';

/** A logger whose lines a test can read back. */
function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

const quiet = createLogger('silent');
const opened: RedisConnection[] = [];

function connect(url: string, extra: { logger?: Logger; now?: () => number; prefix?: string; commandTimeoutMs?: number } = {}): RedisConnection {
  const c = new RedisConnection({
    url,
    connectTimeoutMs: 500,
    commandTimeoutMs: extra.commandTimeoutMs ?? 300,
    keyPrefix: extra.prefix ?? 'fictest:',
    logger: extra.logger ?? quiet,
    maxReconnectDelayMs: 100,
    cooldownMs: 1_000,
    ...(extra.now ? { now: extra.now } : {}),
  });
  opened.push(c);
  return c;
}

async function up(c: RedisConnection): Promise<RedisConnection> {
  assert.equal(await c.waitUntilUp(5_000), true, 'connects to redis');
  return c;
}

/** Resolves once `predicate` holds (checked every 10 ms, bounded). */
async function eventually(predicate: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function entry(key: string, body: Buffer, extra: Record<string, unknown> = {}): SharedEntry {
  return { meta: { key, size: body.length, sha256: createHash('sha256').update(body).digest('hex'), ...extra }, body };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => (resolve = res));
  return { promise, resolve };
}

describe('redis parts', { skip: REDIS_SKIP }, () => {
  let redis: RedisServer;
  let admin: Redis;

  before(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url, { lazyConnect: true });
    await admin.connect();
  });
  after(async () => {
    await Promise.all(opened.map((c) => c.close()));
    admin.disconnect();
    await redis.stop();
  });

  describe('connection', () => {
    test('a Redis that is not there costs a request nothing: attempts fail at once, state is down', async () => {
      const c = connect('redis://127.0.0.1:1'); // nobody listens on port 1
      await eventually(() => c.state === 'down');
      const started = performance.now();
      const r = await c.attempt('get', (client) => client.get('x'));
      assert.deepEqual(r, { ok: false });
      assert.ok(performance.now() - started < 50, 'no waiting for a connection');
    });

    test('a slow Redis (commands paused) times out within the bound, then is skipped until the cool-down ends', async () => {
      let now = 1_000_000;
      const { logger, lines } = capturingLogger();
      const c = await up(connect(redis.url, { logger, now: () => now, commandTimeoutMs: 150 }));
      assert.equal(c.state, 'up');
      await admin.client('PAUSE', 600, 'ALL');
      const started = performance.now();
      const r = await c.attempt('get', (client) => client.get('x'));
      const took = performance.now() - started;
      assert.deepEqual(r, { ok: false });
      assert.ok(took < 400, `bounded by the command timeout (took ${Math.round(took)} ms)`);
      assert.equal(c.state, 'degraded');
      assert.equal(c.available, false, 'skipped during the cool-down');
      const skipped = performance.now();
      assert.deepEqual(await c.attempt('get', (client) => client.get('x')), { ok: false });
      assert.ok(performance.now() - skipped < 20, 'a skipped attempt does not touch Redis');

      await admin.client('UNPAUSE');
      now += 1_000; // cool-down over
      assert.equal(c.available, true);
      const back = await c.attempt('get', (client) => client.get('x'));
      assert.deepEqual(back, { ok: true, value: null });
      assert.equal(c.state, 'up');
      const changes = lines.filter((l) => typeof l.redis === 'string').map((l) => l.redis);
      assert.deepEqual(changes, ['up', 'degraded', 'up'], 'one log line per change of state');
    });
  });

  describe('shared tier', () => {
    test('an entry round-trips with its metadata and a TTL; integrity is checked on the way out', async () => {
      const c = await up(connect(redis.url));
      const tier = new RedisSharedTier({ connection: c, maxEntryBytes: 1024, logger: quiet });
      const body = Buffer.from('not really a png, but bytes');
      const e = entry('k1', body, { contentType: 'image/png', sourceUrl: 'https://example.com/a.png' });
      assert.equal(await tier.write(e, { ttlMs: 60_000 }), 'stored');
      const back = await tier.read('k1');
      assert.ok(back);
      assert.deepEqual(back.body, body);
      assert.deepEqual(back.meta, e.meta);
      const ttl = await admin.pttl('fictest:entry:k1');
      assert.ok(ttl > 50_000 && ttl <= 60_000, `TTL set (${ttl})`);

      // Flip one byte of the body inside Redis: never served, and removed.
      const raw = await admin.getBuffer('fictest:entry:k1');
      assert.ok(raw);
      raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 0xff, raw.length - 1);
      await admin.set('fictest:entry:k1', raw, 'PX', 60_000);
      assert.equal(await tier.read('k1'), undefined);
      assert.equal(await admin.exists('fictest:entry:k1'), 0);

      // An entry stored under another key is not served for this one.
      assert.equal(await tier.write(entry('k3', body), { ttlMs: 60_000 }), 'stored');
      await admin.copy('fictest:entry:k3', 'fictest:entry:k4');
      assert.equal(await tier.read('k4'), undefined);
      // Garbage is a miss, not an error.
      await admin.set('fictest:entry:k5', 'garbage');
      assert.equal(await tier.read('k5'), undefined);
    });

    test('with encryption at rest, shared entries are sealed: unreadable in Redis, unforgeable, bound to their key', async () => {
      const c = await up(connect(redis.url));
      const cipher = new EntryCipher([Buffer.alloc(32, 7)]);
      const tier = new RedisSharedTier({ connection: c, maxEntryBytes: 1024, logger: quiet, cipher });
      const plainTier = new RedisSharedTier({ connection: c, maxEntryBytes: 1024, logger: quiet });
      const body = Buffer.from('secret pixels');
      assert.equal(await tier.write(entry('s1', body, { sourceUrl: 'https://example.com/private.png' }), { ttlMs: 60_000 }), 'stored');
      const raw = await admin.getBuffer('fictest:entry:s1');
      assert.ok(raw);
      assert.equal(raw.includes(body), false, 'body not readable in Redis');
      assert.equal(raw.includes(Buffer.from('example.com')), false, 'metadata not readable in Redis');
      assert.deepEqual((await tier.read('s1'))?.body, body);

      // A plain entry written by someone without the key is not accepted, nor a sealed one moved to another key.
      assert.equal(await plainTier.write(entry('s2', body), { ttlMs: 60_000 }), 'stored');
      assert.equal(await tier.read('s2'), undefined);
      await admin.set('fictest:entry:s3', raw);
      assert.equal(await tier.read('s3'), undefined);
    });

    test('bodies over maxEntryBytes stay local', async () => {
      const c = await up(connect(redis.url));
      const tier = new RedisSharedTier({ connection: c, maxEntryBytes: 16, logger: quiet });
      assert.equal(await tier.write(entry('big', Buffer.alloc(17)), { ttlMs: 60_000 }), 'too_large');
      assert.equal(await admin.exists('fictest:entry:big'), 0);
      assert.equal(await tier.write(entry('small', Buffer.alloc(16)), { ttlMs: 60_000 }), 'stored');
    });

    test('deleteGroup removes every variant of a source, and clear() only this deployment', async () => {
      const c = await up(connect(redis.url));
      const other = await up(connect(redis.url, { prefix: 'other[x]:' }));
      const tier = new RedisSharedTier({ connection: c, maxEntryBytes: 1024, logger: quiet });
      const otherTier = new RedisSharedTier({ connection: other, maxEntryBytes: 1024, logger: quiet });
      for (const k of ['v1', 'v2']) await tier.write(entry(k, Buffer.from(k)), { ttlMs: 60_000, group: 'src-a' });
      await tier.write(entry('v3', Buffer.from('v3')), { ttlMs: 60_000, group: 'src-b' });
      await otherTier.write(entry('v1', Buffer.from('v1')), { ttlMs: 60_000 });
      assert.equal(await tier.deleteGroup('src-a'), 2);
      assert.equal(await tier.read('v1'), undefined);
      assert.equal(await tier.read('v2'), undefined);
      assert.ok(await tier.read('v3'));
      assert.equal(await tier.clear(), true);
      assert.equal(await tier.read('v3'), undefined);
      assert.ok(await otherTier.read('v1'), "another prefix's entries stay");
    });
  });

  describe('distributed lock', () => {
    test('one holder at a time; release and extend only with the holder token', async () => {
      const a = new DistributedLock({ connection: await up(connect(redis.url)), ttlMs: 5_000 });
      const b = new DistributedLock({ connection: await up(connect(redis.url)), ttlMs: 5_000 });
      const first = await a.acquire('img');
      assert.ok(first.status === 'acquired');
      assert.equal((await b.acquire('img')).status, 'held');
      assert.equal(await b.isHeld('img'), true);

      // The lock expires (simulated by deleting it) and b takes it: a must not touch b's lock.
      await admin.del('fictest:lock:img');
      const second = await b.acquire('img');
      assert.ok(second.status === 'acquired');
      assert.equal(await a.extend(first.handle), false);
      assert.equal(await a.release(first.handle), false);
      assert.equal(await b.isHeld('img'), true, "b's lock survived a's stale release");
      await admin.pexpire('fictest:lock:img', 100);
      assert.equal(await b.extend(second.handle), true);
      assert.ok((await admin.pttl('fictest:lock:img')) > 1_000, 'extended to the full TTL');
      assert.equal(await b.release(second.handle), true);
      assert.equal(await a.isHeld('img'), false);
    });
  });

  describe('cluster single-flight', () => {
    function node(c: RedisConnection, lockTtlMs = 5_000, pollIntervalMs = 100) {
      const tier = new RedisSharedTier({ connection: c, maxEntryBytes: 1024, logger: quiet });
      const flight = new ClusterSingleFlight({
        connection: c,
        lock: new DistributedLock({ connection: c, ttlMs: lockTtlMs }),
        pollIntervalMs,
        maxWaitMs: 10_000,
        logger: quiet,
      });
      return { tier, flight };
    }

    test('three nodes asking for one cold key at once: produced once, the others read the shared tier', async () => {
      // A poll far slower than the test: only the pub/sub announcement can wake the waiters in time.
      const nodes = await Promise.all([1, 2, 3].map(async () => node(await up(connect(redis.url)), 5_000, 3_000)));
      let produced = 0;
      const gate = deferred<undefined>();
      const key = 'cold-1';
      const body = Buffer.from('the image');
      const results = nodes.map(({ tier, flight }) =>
        flight.run(key, {
          lookup: async () => (await tier.read(key))?.body.toString(),
          produce: async () => {
            produced += 1;
            await gate.promise;
            return { value: body.toString(), shared: (await tier.write(entry(key, body), { ttlMs: 60_000 })) === 'stored' };
          },
        }),
      );
      await eventually(async () => (await admin.exists('fictest:lock:cold-1')) === 1);
      await new Promise((r) => setTimeout(r, 50)); // the others are waiting by now
      gate.resolve(undefined);
      const started = performance.now();
      assert.deepEqual(await Promise.all(results), ['the image', 'the image', 'the image']);
      assert.equal(produced, 1);
      assert.ok(performance.now() - started < 1_500, 'waiters were woken by the announcement, not the poll');
      assert.equal(await admin.exists('fictest:lock:cold-1'), 0, 'lock released');
    });

    test("the origin's refusal reaches the waiters without a second origin request", async () => {
      const [a, b] = await Promise.all([1, 2].map(async () => node(await up(connect(redis.url)))));
      assert.ok(a && b);
      let produced = 0;
      const gate = deferred<undefined>();
      const steps = {
        lookup: () => Promise.resolve(undefined),
        produce: async (): Promise<{ value: string; shared: boolean }> => {
          produced += 1;
          await gate.promise;
          throw new FastImageCacheError('not_found', 'origin said 404');
        },
      };
      const first = a.flight.run('gone', steps);
      await eventually(async () => (await admin.exists('fictest:lock:gone')) === 1);
      const second = b.flight.run('gone', steps);
      await new Promise((r) => setTimeout(r, 30));
      gate.resolve(undefined);
      for (const r of await Promise.allSettled([first, second])) {
        assert.ok(r.status === 'rejected');
        assert.equal((r.reason as FastImageCacheError).code, 'not_found');
      }
      assert.equal(produced, 1);
    });

    test('a lock holder that dies mid-fetch: a waiter takes over once the lock expires', async () => {
      const doomedConnection = await up(connect(redis.url));
      const doomed = node(doomedConnection, 400);
      const survivor = node(await up(connect(redis.url)), 400);
      const key = 'orphan';
      const body = Buffer.from('made by the survivor');
      // The doomed node's fetch never ends; then the node "dies": its Redis link goes, no release, no announcement.
      void doomed.flight.run(key, { lookup: () => Promise.resolve(undefined), produce: () => new Promise(() => undefined) });
      await eventually(async () => (await admin.exists('fictest:lock:orphan')) === 1);
      const started = performance.now();
      const result = survivor.flight.run(key, {
        lookup: async () => (await survivor.tier.read(key))?.body.toString(),
        produce: async () => ({ value: body.toString(), shared: (await survivor.tier.write(entry(key, body), { ttlMs: 60_000 })) === 'stored' }),
      });
      await new Promise((r) => setTimeout(r, 150));
      await doomedConnection.close();
      assert.equal(await result, 'made by the survivor');
      const took = performance.now() - started;
      assert.ok(took >= 300 && took < 2_000, `took over after the lock expired (${Math.round(took)} ms)`);
    });

    test('with Redis unavailable every node produces on its own', async () => {
      const lonely = node(connect('redis://127.0.0.1:1'));
      let produced = 0;
      const value = await lonely.flight.run('k', {
        lookup: () => Promise.resolve(undefined),
        produce: () => Promise.resolve({ value: ++produced, shared: false }),
      });
      assert.equal(value, 1);
    });
  });

  describe('shared rate limiter', () => {
    test('one budget per client across nodes; no answer (local fallback) when Redis is unavailable', async () => {
      const settings = { perSecond: 3, burst: 0, name: `t${Date.now()}` };
      const a = createSharedRateLimiter({ connection: await up(connect(redis.url)), ...settings });
      const b = createSharedRateLimiter({ connection: await up(connect(redis.url)), ...settings });
      assert.deepEqual(await a.consume('198.51.100.7'), { allowed: true });
      assert.deepEqual(await a.consume('198.51.100.7'), { allowed: true });
      assert.deepEqual(await b.consume('198.51.100.7'), { allowed: true });
      const refused = await b.consume('198.51.100.7');
      assert.equal(refused?.allowed, false, 'the fourth request in the second is refused, whichever node counts it');
      assert.deepEqual(await a.consume('198.51.100.8'), { allowed: true }, 'other clients have their own budget');
      const lonely = createSharedRateLimiter({ connection: connect('redis://127.0.0.1:1'), ...settings });
      assert.equal(await lonely.consume('198.51.100.7'), undefined);
    });
  });

  describe('purge bus and Redis restarts', () => {
    /** Two nodes' purge buses on `url`, recording what each applies and how often each resyncs. */
    const purgeNodes = async (url: string, logOfB: Logger = quiet) => {
      const received: Array<{ node: string; message: PurgeMessage }> = [];
      const resyncs = { a: 0, b: 0 };
      const make = async (name: 'a' | 'b', log: Logger) => {
        // As the composition root does: the bus subscribes before the connection is up.
        const c = connect(url, { logger: log });
        const bus = new PurgeBus({
          connection: c,
          logger: log,
          onPurge: (message) => {
            received.push({ node: name, message });
            return Promise.resolve();
          },
          onResync: () => void (resyncs[name] += 1),
        });
        await up(c);
        return { c, bus };
      };
      return { a: await make('a', quiet), b: await make('b', logOfB), received, resyncs };
    };

    test('a node that was not listening when a purge was announced applies it from the purge log when it resubscribes', async () => {
      const own = await startRedis();
      try {
        const { a, b, received, resyncs } = await purgeNodes(own.url);
        await eventually(() => resyncs.a === 1 && resyncs.b === 1); // subscribed
        assert.equal(await a.bus.publish({ kind: 'source', sourceKey: 'cd'.repeat(32) }), true);
        await eventually(() => received.length === 1);

        // Every subscriber is cut off; they reconnect after 100 ms or more, so the next purge finds nobody listening.
        const resubscribed = b.c.health().resubscriptions;
        await a.c.client.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
        assert.equal(await a.bus.publish({ kind: 'source', sourceKey: 'ef'.repeat(32) }), true);
        await eventually(() => b.c.health().resubscriptions > resubscribed && received.length === 2);
        assert.deepEqual(received[1], { node: 'b', message: { kind: 'source', sourceKey: 'ef'.repeat(32) } });
        assert.equal(resyncs.b, 1, 'caught up from the log: nothing to distrust, the memory tier is kept');
        assert.equal(received.filter((r) => r.node === 'a').length, 0, 'the sender never applies its own purge');
      } finally {
        await own.stop();
      }
    });

    test('a catch-up that cannot read the log yet (the subscriber back before the command connection is usable) is tried again until it can', async () => {
      // The command connection fails once and is skipped until its cool-down ends: on a frozen clock, until the test
      // moves it. Meanwhile the subscriber is cut off and comes back, and a purge is announced while it was away.
      let now = 1_000_000;
      const received: PurgeMessage[] = [];
      let resyncs = 0;
      const c = connect(redis.url, { now: () => now, commandTimeoutMs: 150, prefix: 'fictest-retry:' });
      const bus = new PurgeBus({
        connection: c,
        logger: quiet,
        onPurge: (message) => Promise.resolve(void received.push(message)),
        onResync: () => {
          resyncs += 1;
        },
      });
      await up(c);
      const sender = await up(connect(redis.url, { prefix: 'fictest-retry:' }));
      const senderBus = new PurgeBus({ connection: sender, logger: quiet, onPurge: () => Promise.resolve(), onResync: () => {} });
      await eventually(() => resyncs === 1); // subscribed, and placed at the end of the log
      await admin.client('PAUSE', 600, 'ALL');
      assert.deepEqual(await c.attempt('get', (client) => client.get('x')), { ok: false });
      await admin.client('UNPAUSE');
      assert.equal(c.available, false, 'the command connection sits out its cool-down');

      const resubscribed = c.health().resubscriptions;
      await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
      assert.equal(await senderBus.publish({ kind: 'source', sourceKey: '5a'.repeat(32) }), true);
      await eventually(() => c.health().resubscriptions > resubscribed);
      await new Promise((r) => setTimeout(r, 600));
      assert.deepEqual(received, [], 'not read yet: the log is out of reach');

      now += 1_000; // the cool-down is over
      await eventually(() => received.length === 1);
      assert.deepEqual(received, [{ kind: 'source', sourceKey: '5a'.repeat(32) }], 'the purge announced while it was away, from the log');
      await bus.close();
      await senderBus.close();
    });

    test('a node restarted with its cursor applies the purges made while it was down; one whose cursor the log lost resyncs', async () => {
      const own = await startRedis();
      try {
        // What the cache directory keeps between runs (PurgeCursorFile, tested with the storage).
        let kept: string | undefined;
        const store: PurgeCursorStore = {
          read: () => Promise.resolve(kept),
          write: (id) => Promise.resolve(void (kept = id)),
        };
        const sender = await up(connect(own.url));
        const senderBus = new PurgeBus({ connection: sender, logger: quiet, onPurge: () => Promise.resolve(), onResync: () => {} });
        const run = async (logger: Logger = quiet) => {
          const c = connect(own.url, { logger });
          const applied: string[] = [];
          const node = { c, applied, resyncs: 0, bus: undefined as PurgeBus | undefined };
          node.bus = new PurgeBus({
            connection: c,
            logger,
            onPurge: (message) => Promise.resolve(void applied.push(message.kind === 'source' ? message.sourceKey : 'all')),
            onResync: () => {
              node.resyncs += 1;
            },
            cursorStore: store,
          });
          await up(c);
          return node;
        };
        const stop = async (node: { c: RedisConnection; bus: PurgeBus | undefined }) => {
          await node.bus?.close();
          await node.c.close();
        };
        const purge = async (key: string) => {
          assert.equal(await senderBus.publish({ kind: 'source', sourceKey: key.repeat(32) }), true);
        };

        const first = await run();
        await eventually(() => first.resyncs === 1 && kept !== undefined); // subscribed, at the end of an empty log
        await purge('a1');
        await eventually(() => first.applied.length === 1);
        await stop(first);
        const afterFirst = kept;
        assert.ok(afterFirst !== undefined && afterFirst !== '0-0', `the cursor moved past the applied purge: ${String(afterFirst)}`);

        // Down: nobody with this cache directory is listening.
        await purge('b2');
        await purge('c3');
        const second = await run();
        await eventually(() => second.applied.length === 2);
        assert.deepEqual(second.applied, ['b2'.repeat(32), 'c3'.repeat(32)], 'the missed purges, not the one applied before the restart');
        assert.equal(second.resyncs, 0, 'everything missed was in the log: the memory tier is trusted');
        await stop(second);

        // Down again, and the log trimmed past its cursor (more purges than it keeps, or Redis lost it).
        await purge('d4');
        await sender.client.call('XTRIM', purgeLogKey(sender), 'MAXLEN', '0');
        await purge('e5');
        const { logger, lines } = capturingLogger();
        const third = await run(logger);
        await eventually(() => third.resyncs === 1 && third.applied.length === 1);
        assert.deepEqual(third.applied, ['e5'.repeat(32)], 'what the log still holds is applied; d4 is lost');
        assert.ok(lines.some((l) => typeof l.msg === 'string' && l.msg.includes('does not reach back')), 'the gap is logged');
        await stop(third);
        await senderBus.close();
      } finally {
        await own.stop();
      }
    });

    test('a purge reaches the other nodes, not the sender; a Redis restart is survived and makes nodes resync', async () => {
      const own = await startRedis();
      try {
        const { logger, lines } = capturingLogger();
        const { a, b, received, resyncs } = await purgeNodes(own.url, logger);
        await eventually(() => resyncs.a === 1 && resyncs.b === 1); // subscribed

        assert.equal(await a.bus.publish({ kind: 'source', sourceKey: 'ab'.repeat(32) }), true);
        await eventually(() => received.length === 1);
        assert.deepEqual(received, [{ node: 'b', message: { kind: 'source', sourceKey: 'ab'.repeat(32) } }]);

        await own.stop();
        await eventually(() => a.c.state === 'down' && b.c.state === 'down');
        assert.equal(await a.bus.publish({ kind: 'all' }), false, 'an unsent purge is reported, not thrown');
        await own.restart();
        await eventually(() => resyncs.a === 2 && resyncs.b === 2 && a.c.state === 'up' && b.c.state === 'up');
        assert.equal(await b.bus.publish({ kind: 'all' }), true);
        await eventually(() => received.length === 2);
        assert.deepEqual(received[1], { node: 'a', message: { kind: 'all' } });

        const changes = lines.filter((l) => typeof l.redis === 'string').map((l) => l.redis);
        assert.deepEqual(changes, ['up', 'down', 'up'], 'the outage is logged once, however many attempts failed');
      } finally {
        await own.stop();
      }
    });
  });
});
