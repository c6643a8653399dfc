import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, TEST_KEY_HEX, type TestProxy } from '../helpers/proxy.ts';
import { REDIS_SKIP, startRedis, type RedisServer } from '../helpers/redis.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { startService, type TestService } from '../ops/service-helper.ts';
import { purgeAcrossCluster } from '../../src/cluster-config.ts';
import { createLogger } from '../../src/log.ts';

/**
 * Three nodes, each with its own cache directory, sharing one real Redis:
 * what operators rely on when they put several nodes behind a load balancer.
 */

const LOCK_TTL_MS = 1_000;

function nodeSettings(redisUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    redis: { url: redisUrl, lockTtlMs: LOCK_TTL_MS, commandTimeoutMs: 300, connectTimeoutMs: 500, keyPrefix: 'cluster-test:' },
    ...extra,
  };
}

/**
 * How long a purge owed while Redis was down may take to reach the other nodes
 * once it is back: each node's command and subscriber connections reconnect
 * with a backoff of up to 2 s (plus jitter), a failed carry waits out its 1 s
 * cool-down and 1 s retry, an owed purge left in a directory is looked for
 * every 2 s, and a catch-up read is retried every 250 ms. Those add up to
 * about the 8 s default, so a loaded machine missed it now and then.
 */
const AFTER_REDIS_RESTART_MS = 20_000;

/** Resolves once `predicate` holds (checked every 20 ms, bounded). */
async function eventually(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) assert.fail(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function fetchImage(url: string): Promise<{ status: number; cache: string | null; sha: string }> {
  const res = await fetch(url);
  const body = Buffer.from(await res.arrayBuffer());
  return { status: res.status, cache: res.headers.get('x-cache'), sha: sha(body) };
}

function get(node: TestProxy, sourceUrl: string): Promise<{ status: number; cache: string | null; sha: string }> {
  return fetchImage(node.signedUrl(sourceUrl));
}

function statesOf(nodes: TestProxy[]): Array<string | undefined> {
  return nodes.map((n) => n.imageCache.redisHealth()?.state);
}

/** Answers after `ms`, so concurrent requests really overlap at the origin. */
function slowImage(origin: Origin, path: string, body: Buffer, ms: number): void {
  origin.handle(path, (_req, res: ServerResponse) => {
    setTimeout(() => res.writeHead(200, { 'content-type': 'image/png', 'content-length': body.length }).end(body), ms);
  });
}

/** A node in its own process, so the test can kill it the way a crash would. */
async function startChildNode(settings: Record<string, unknown>): Promise<{ url: string; child: ChildProcess }> {
  const script = fileURLToPath(new URL('./fixtures/cluster-node.ts', import.meta.url));
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, FIC_NODE_SETTINGS: JSON.stringify(settings) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      reject(new Error(`child node did not start: ${out}`));
    }, 15_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /READY (\S+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`child node exited ${String(code)}: ${out}`));
    });
  });
  return { url, child };
}

/** A node in its own process that purges `sourceUrl` and crashes the moment the purge is acknowledged. */
async function purgeThenCrash(settings: Record<string, unknown>, sourceUrl: string): Promise<void> {
  const script = fileURLToPath(new URL('./fixtures/cluster-node.ts', import.meta.url));
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, FIC_NODE_SETTINGS: JSON.stringify(settings), FIC_NODE_PURGE_THEN_CRASH: sourceUrl },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => { resolve(sig); }));
  assert.equal(signal, 'SIGKILL', 'the node crashed after its purge');
}

/** `fastimagecache purge <url>` as an operator runs it, on `cacheDir`, with `redisUrl` (in its own process). */
async function cliPurge(cacheDir: string, redisUrl: string, sourceUrl: string): Promise<{ status: number | null; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FASTIMAGECACHE_') && v !== undefined) env[k] = v;
  Object.assign(env, {
    FASTIMAGECACHE_CACHE_DIR: cacheDir,
    FASTIMAGECACHE_KEY: TEST_KEY_HEX,
    FASTIMAGECACHE_REDIS_URL: redisUrl,
    FASTIMAGECACHE_REDIS_KEY_PREFIX: 'cluster-test:',
    FASTIMAGECACHE_REDIS_CONNECT_TIMEOUT_MS: '300',
  });
  const child = spawn(process.execPath, [fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url)), 'purge', sourceUrl], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const status = await new Promise<number | null>((resolve) => child.once('exit', (code) => { resolve(code); }));
  return { status, stderr };
}

describe('three nodes, one Redis', { skip: REDIS_SKIP }, () => {
  let redis: RedisServer;
  let origin: Origin;
  let png: Buffer;
  let nodes: TestProxy[] = [];
  let a: TestProxy;
  let b: TestProxy;
  let c: TestProxy;
  let services: TestService[] = [];

  before(async () => {
    redis = await startRedis();
    origin = await startOrigin();
    png = await makeImage('png', 64, 48);
    nodes = await Promise.all([0, 1, 2].map(() => startProxy(nodeSettings(redis.url))));
    [a, b, c] = nodes as [TestProxy, TestProxy, TestProxy];
    await eventually(() => statesOf(nodes).every((s) => s === 'up'), 'nodes connected');
  });
  after(async () => {
    await Promise.all([...nodes, ...services].map((n) => n.close()));
    await origin.close();
    await redis.stop();
  });

  test('a stampede for one cold image across three nodes makes one origin request', async () => {
    slowImage(origin, '/stampede.png', png, 300);
    const source = `${origin.url}/stampede.png`;
    const results = await Promise.all(nodes.flatMap((n) => Array.from({ length: 5 }, () => get(n, source))));
    assert.equal(origin.hits('/stampede.png'), 1, '15 requests on 3 nodes, 1 origin request');
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.sha, sha(png));
    }
  });

  test('an image fetched through node A is served by node B without an origin request', async () => {
    origin.serve('/shared.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/shared.png`;
    const sharedHitsBefore = (await b.imageCache.stats()).sharedHits;
    assert.equal((await get(a, source)).cache, 'MISS');
    const fromB = await get(b, source);
    assert.equal(fromB.status, 200);
    assert.equal(fromB.cache, 'HIT');
    assert.equal(fromB.sha, sha(png));
    assert.equal(origin.hits('/shared.png'), 1);
    assert.equal((await b.imageCache.stats()).sharedHits, sharedHitsBefore + 1, 'served from the shared tier');
    assert.equal((await get(b, source)).cache, 'HIT', 'and kept in B’s own tiers');
    assert.equal((await b.imageCache.stats()).sharedHits, sharedHitsBefore + 1);
  });

  test('a purge on node B removes the image from A and C (and Redis): every node serves the new bytes', async () => {
    origin.serve('/purged.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/purged.png`;
    for (const n of [a, c]) assert.equal((await get(n, source)).status, 200);
    assert.equal(origin.hits('/purged.png'), 1);

    const replacement = await makeImage('png', 32, 32);
    origin.serve('/purged.png', replacement, { contentType: 'image/png' });
    await b.imageCache.purge(source);
    // Pub/sub is asynchronous: each node serves the new bytes as soon as the purge has reached it.
    for (const n of [a, c]) await eventually(async () => (await get(n, source)).sha === sha(replacement), 'the purged image is gone');
    assert.equal(origin.hits('/purged.png'), 2);
  });

  test('a node restarted over its cache directory applies the purges made while it was down', async () => {
    const home = makeTempDir();
    try {
      const settings = nodeSettings(redis.url, { cacheDir: join(home.dir, 'cache') });
      origin.serve('/purged-while-down.png', png, { contentType: 'image/png' });
      const source = `${origin.url}/purged-while-down.png`;
      const before = await startProxy(settings);
      await eventually(() => before.imageCache.redisHealth()?.state === 'up', 'the node connected');
      assert.equal((await get(before, source)).cache, 'MISS');
      // Its cursor is first written once it has subscribed and read where the log ends.
      await eventually(() => existsSync(join(before.cacheDir, '.purge-cursor.json')), 'the node recorded its place in the purge log');
      await before.close();

      const replacement = await makeImage('png', 28, 28);
      origin.serve('/purged-while-down.png', replacement, { contentType: 'image/png' });
      await b.imageCache.purge(source);
      const restarted = await startProxy(settings);
      try {
        // Its disk still holds the old image: only the purge log can tell it that the image is gone.
        await eventually(async () => (await get(restarted, source)).sha === sha(replacement), 'the purge made while it was down is applied');
        assert.equal(origin.hits('/purged-while-down.png'), 2);
      } finally {
        await restarted.close();
      }
    } finally {
      home.cleanup();
    }
  });

  test('`fastimagecache purge` (no server) reaches every node through Redis too', async () => {
    origin.serve('/cli-purged.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/cli-purged.png`;
    for (const n of nodes) assert.equal((await get(n, source)).status, 200);
    const replacement = await makeImage('png', 24, 24);
    origin.serve('/cli-purged.png', replacement, { contentType: 'image/png' });
    assert.equal(await purgeAcrossCluster(a.imageCache.config, a.cacheDir, { sourceUrl: source }, createLogger('silent')), 'sent');
    for (const n of nodes) await eventually(async () => (await get(n, source)).sha === sha(replacement), 'the CLI purge is applied');
    assert.equal(origin.hits('/cli-purged.png'), 2);
  });

  test('a lock holder killed mid-fetch: another node completes the request', async () => {
    let hung = false;
    origin.handle('/orphan.png', (_req, res) => {
      if (!hung) {
        hung = true; // the first fetch never gets an answer
        return;
      }
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length }).end(png);
    });
    const source = `${origin.url}/orphan.png`;
    const doomed = await startChildNode(nodeSettings(redis.url));
    try {
      const path = a.signedUrl(source).slice(a.url.length); // same key on every node
      const dying = fetch(doomed.url + path).catch(() => 'killed');
      await eventually(() => origin.hits('/orphan.png') === 1, 'the doomed node is fetching');
      const started = Date.now();
      const survivor = get(b, source);
      await new Promise((r) => setTimeout(r, 100)); // b is waiting on the lock by now
      doomed.child.kill('SIGKILL');
      const r = await survivor;
      assert.equal(r.status, 200);
      assert.equal(r.sha, sha(png));
      assert.equal(origin.hits('/orphan.png'), 2);
      assert.ok(Date.now() - started >= LOCK_TTL_MS / 2, 'b waited for the dead holder’s lock to expire');
      await dying;
    } finally {
      doomed.child.kill('SIGKILL');
    }
  });

  test('a per-client rate limit is counted across nodes; /readyz and /metrics report Redis', async () => {
    // Full servers this time (front door, rate limits, readiness, metrics), sharing the same Redis.
    services = await Promise.all([0, 1, 2].map(() => startService({ settings: nodeSettings(redis.url, { rateLimit: { perSecond: 3, burst: 0 } }) })));
    const [s1, s2, s3] = services as [TestService, TestService, TestService];
    await eventually(() => services.every((s) => s.service.imageCache.redisHealth()?.state === 'up'), 'services connected');
    origin.serve('/limited.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/limited.png`;
    const statuses: number[] = [];
    for (const s of [s1, s2, s3, s3, s1]) statuses.push((await fetchImage(s.signedUrl(source))).status);
    assert.deepEqual(statuses, [200, 200, 200, 429, 429], '3 per second per client, whichever node answers');

    const ready = await fetch(`${s1.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as { checks: { redis?: string } }).checks.redis, 'up');
    assert.match((await s1.metrics.exposition()).body, /^fastimagecache_redis_up 1$/m);
  });

  test('Redis stopped mid-test: every node keeps serving, and all recover when it restarts', async () => {
    origin.serve('/before.png', png, { contentType: 'image/png' });
    const warm = `${origin.url}/before.png`;
    for (const n of nodes) assert.equal((await get(n, warm)).status, 200);

    await redis.stop();
    await eventually(() => statesOf(nodes).every((s) => s === 'down'), 'nodes see Redis down');
    const started = Date.now();
    for (const n of nodes) {
      const r = await get(n, warm);
      assert.equal(r.status, 200);
      assert.equal(r.cache, 'HIT', 'local tiers keep serving');
    }
    origin.serve('/during.png', png, { contentType: 'image/png' });
    for (const n of nodes) assert.equal((await get(n, `${origin.url}/during.png`)).status, 200, 'cold images are fetched locally');
    assert.ok(Date.now() - started < 3_000, 'no request waited on the dead Redis');
    const [s1] = services as [TestService];
    await eventually(() => s1.service.imageCache.redisHealth()?.state === 'down', 'service sees Redis down');
    const ready = await fetch(`${s1.url}/readyz`);
    assert.equal(ready.status, 200, 'still ready: it serves from its own tiers');
    assert.equal(((await ready.json()) as { checks: { redis?: string } }).checks.redis, 'down');
    assert.match((await s1.metrics.exposition()).body, /^fastimagecache_redis_up 0$/m);
    // Redis refused this client a moment ago (the test before), for one second: once that has passed, the node's own
    // counters limit it alone, at the same 3 per second.
    await new Promise((r) => setTimeout(r, 1_100));
    const limited: number[] = [];
    for (let i = 0; i < 4; i++) limited.push((await fetchImage(s1.signedUrl(warm))).status);
    assert.deepEqual(limited, [200, 200, 200, 429], 'rate limits fall back to local counters');

    await redis.restart();
    await eventually(() => statesOf(nodes).every((s) => s === 'up'), 'nodes reconnect');
    slowImage(origin, '/after.png', png, 200);
    const after = `${origin.url}/after.png`;
    const results = await Promise.all(nodes.flatMap((n) => [get(n, after), get(n, after)]));
    for (const r of results) assert.equal(r.status, 200);
    assert.equal(origin.hits('/after.png'), 1, 'single-flight across nodes works again');
  });

  test('a purge made while Redis is down reaches the other nodes once it is back', async () => {
    origin.serve('/purged-offline.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/purged-offline.png`;
    for (const n of [a, c]) assert.equal((await get(n, source)).sha, sha(png));

    await redis.stop();
    await eventually(() => statesOf(nodes).every((s) => s === 'down'), 'nodes see Redis down');
    const replacement = await makeImage('png', 40, 20);
    origin.serve('/purged-offline.png', replacement, { contentType: 'image/png' });
    await b.imageCache.purge(source);
    assert.equal((await get(b, source)).sha, sha(replacement), 'B purged at once');
    assert.equal((await get(a, source)).sha, sha(png), 'A has not heard of it yet: Redis is down');

    await redis.restart();
    // Reconnecting only drops A's and C's memory tiers; their disks still hold the old image until B's purge arrives.
    for (const n of [a, c]) await eventually(async () => (await get(n, source)).sha === sha(replacement), 'the owed purge is carried', AFTER_REDIS_RESTART_MS);
  });

  test('`fastimagecache purge` run while Redis is down: the server on that cache directory carries it once Redis is back', async () => {
    origin.serve('/cli-owed.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/cli-owed.png`;
    for (const n of nodes) assert.equal((await get(n, source)).sha, sha(png));
    await redis.stop();
    await eventually(() => statesOf(nodes).every((s) => s === 'down'), 'nodes see Redis down');
    const replacement = await makeImage('png', 22, 30);
    origin.serve('/cli-owed.png', replacement, { contentType: 'image/png' });
    const purged = await cliPurge(a.cacheDir, redis.url, source);
    assert.equal(purged.status, 0, purged.stderr);
    assert.match(purged.stderr, /carries the purge to the other nodes once Redis is back/);

    await redis.restart();
    for (const n of nodes) await eventually(async () => (await get(n, source)).sha === sha(replacement), 'the CLI purge reached every node', AFTER_REDIS_RESTART_MS);
  });

  test('a purge owed while Redis is down survives a crash of its node: the next start over its directory carries it', async () => {
    origin.serve('/owed-crash.png', png, { contentType: 'image/png' });
    const source = `${origin.url}/owed-crash.png`;
    for (const n of [a, c]) assert.equal((await get(n, source)).sha, sha(png));
    const home = makeTempDir();
    try {
      const settings = nodeSettings(redis.url, { cacheDir: join(home.dir, 'cache') });
      await redis.stop();
      await eventually(() => statesOf(nodes).every((s) => s === 'down'), 'nodes see Redis down');
      const replacement = await makeImage('png', 36, 20);
      origin.serve('/owed-crash.png', replacement, { contentType: 'image/png' });
      await purgeThenCrash(settings, source);

      await redis.restart();
      await eventually(() => statesOf(nodes).every((s) => s === 'up'), 'nodes reconnect');
      assert.equal((await get(a, source)).sha, sha(png), 'nobody has carried the purge yet: A serves its disk copy');
      const restarted = await startProxy(settings);
      try {
        for (const n of [a, c]) await eventually(async () => (await get(n, source)).sha === sha(replacement), 'the restarted node carries the owed purge', AFTER_REDIS_RESTART_MS);
      } finally {
        await restarted.close();
      }
    } finally {
      home.cleanup();
    }
  });
});
