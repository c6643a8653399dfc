/**
 * `serve --workers 2` as operators run it: one origin fetch for a cold
 * stampede across workers (the fill lease in the primary), no wait beyond the
 * lease timeout when the fetching worker dies, and the primary's cache index
 * rebuilt from the directory at start, so limits hold after a restart.
 */
import assert from 'node:assert/strict';
import { readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { buildImagePath } from '../../src/server/signature.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { eventually, spawnServe, type ServeProcess } from './process-helper.ts';
import { TEST_KEY } from './service-helper.ts';

/** The primary hands a dead holder's lease on at once; a stuck one's after this (FILL_LEASE_TTL_MS in src/cli/workers.ts). */
const LEASE_TTL_MS = 5_000;

let origin: Origin;
let png: Buffer;
const tmp = makeTempDir('fic-workers-fill-');
before(async () => {
  origin = await startOrigin();
  png = await makeImage('png', 96, 64);
});
after(async () => {
  await origin.close();
  tmp.cleanup();
});

/**
 * One GET on its own connection, so the cluster spreads them over the workers.
 * Given up after `timeoutMs`: a connection the primary was handing to a worker
 * as it was killed is neither answered nor closed (Node's cluster keeps its copy
 * until the worker says it took it), so it would wait forever.
 */
async function get(url: string, timeoutMs = 30_000): Promise<{ status: number; body: Buffer; xCache: string | null }> {
  const res = await fetch(url, { headers: { Connection: 'close' }, signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), xCache: res.headers.get('x-cache') };
}

type LeaseLog = { msg?: unknown; pid?: unknown; cacheKey?: unknown };
const leaseLines = (server: ServeProcess, msg: string): LeaseLog[] => server.logs().filter((l: LeaseLog) => l.msg === msg);

describe('two workers, one cold source', () => {
  let server: ServeProcess;
  before(async () => {
    server = await spawnServe(join(tmp.dir, 'stampede'), ['--workers', '2'], { FASTIMAGECACHE_LOG_LEVEL: 'debug', FASTIMAGECACHE_RATE_LIMIT_PER_SECOND: '0' });
  });
  after(async () => {
    await server.stop();
  });

  test('200 concurrent requests for one uncached URL: exactly one origin request, 200 identical answers', async () => {
    // Slow enough that the whole stampede arrives while the one fetch runs.
    origin.slowHeaders('/stampede.png', 500, png, 'image/png');
    const url = server.url + buildImagePath(TEST_KEY, `${origin.url}/stampede.png`);
    const answers = await Promise.all(Array.from({ length: 200 }, () => get(url)));

    assert.equal(origin.hits('/stampede.png'), 1, 'one origin request for both workers');
    const first = answers[0]?.body;
    assert.ok(first && first.length > 0);
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.ok(a.body.equals(first), 'byte-identical');
    }
    // Both workers took part: one fetched, the other waited for it.
    const granted = leaseLines(server, 'fill lease granted');
    assert.equal(granted.length, 1);
    const waiters = leaseLines(server, 'waiting for the fill lease');
    assert.ok(waiters.some((w) => w.pid !== granted[0]?.pid), 'the other worker waited for the lease');
    assert.equal((await get(url)).xCache, 'HIT');
    assert.equal(origin.hits('/stampede.png'), 1);
  });

  test('the worker holding the lease is killed: the other fetches at once, long before the lease timeout', async () => {
    let calls = 0;
    origin.handle('/held.png', (_req, res) => {
      calls += 1;
      if (calls === 1) return; // the first fetch never completes: its worker dies with it
      res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length });
      res.end(png);
    });
    const url = server.url + buildImagePath(TEST_KEY, `${origin.url}/held.png`);
    const grantedBefore = leaseLines(server, 'fill lease granted').length;
    const started = Array.from({ length: 20 }, () =>
      get(url, 2 * LEASE_TTL_MS).then(
        (a) => ({ ...a, at: performance.now() }),
        () => undefined, // served by the killed worker (or handed to it as it died): cut off
      ),
    );
    const holder = await eventually(() => leaseLines(server, 'fill lease granted')[grantedBefore], 10_000, 'the lease of the held source');
    const holderPid = Number(holder.pid);
    await eventually(() => leaseLines(server, 'waiting for the fill lease').find((l) => l.cacheKey === holder.cacheKey && Number(l.pid) !== holderPid), 10_000, 'the other worker waiting');
    // The grant is logged before the holder's request reaches the origin: wait for it to arrive.
    await eventually(() => (origin.hits('/held.png') >= 1 ? true : undefined), 10_000, 'the holder\'s fetch at the origin');
    assert.equal(origin.hits('/held.png'), 1);

    const killedAt = performance.now();
    process.kill(holderPid, 'SIGKILL');
    const answers = (await Promise.all(started)).filter((a) => a !== undefined);
    assert.ok(answers.length > 0, 'the surviving worker answered its requests');
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.ok(a.body.equals(answers[0]?.body ?? Buffer.alloc(0)));
      assert.ok(a.at - killedAt < LEASE_TTL_MS, `answered ${Math.round(a.at - killedAt)} ms after the kill`);
    }
    assert.equal(origin.hits('/held.png'), 2, 'the dead worker\'s fetch, then one by the survivor');
  });
});

/** Entry files of a cache directory (`<g0g1>/<group>/<item>`). */
function entriesOnDisk(cacheDir: string): number {
  return readdirSync(cacheDir, { recursive: true, encoding: 'utf8' }).filter((rel) => /^[0-9a-f]{2}\/[0-9a-f]{16}\/[0-9a-f]{8}$/.test(rel)).length;
}

test('restart of two workers over a full cache: the primary rebuilds its index, so new writes evict the oldest entries', async () => {
  const home = join(tmp.dir, 'restart');
  const cacheDir = join(home, 'cache');
  const env = { FASTIMAGECACHE_LOG_LEVEL: 'warn', FASTIMAGECACHE_MAX_ENTRIES: '3', FASTIMAGECACHE_CACHE_DIR: cacheDir, FASTIMAGECACHE_RATE_LIMIT_PER_SECOND: '0' };
  for (let i = 0; i < 5; i++) origin.serve(`/limit-${i}.png`, await makeImage('png', 10 + i, 10), { contentType: 'image/png' });
  const urlOf = (server: ServeProcess, i: number) => server.url + buildImagePath(TEST_KEY, `${origin.url}/limit-${i}.png`);

  const first = await spawnServe(home, ['--workers', '2'], env);
  try {
    for (let i = 0; i < 3; i++) assert.equal((await get(urlOf(first, i))).status, 200);
    assert.equal(entriesOnDisk(cacheDir), 3);
  } finally {
    assert.equal(await first.stop(), 0);
  }
  // Write times (whole seconds in the index) give the order after a restart: make them a minute apart, limit-0 oldest.
  const storage = await FsStorage.open({ dir: cacheDir, logger: silentLogger() });
  for await (const batch of storage.scan()) {
    for (const { id } of batch) {
      const i = Number(/limit-(\d)\.png$/.exec((await storage.readMeta(id))?.sourceUrl ?? '')?.[1]);
      const when = new Date(Date.now() - (10 - i) * 60_000);
      utimesSync(join(cacheDir, id.slice(0, 2), id), when, when);
    }
  }

  const second = await spawnServe(home, ['--workers', '2'], env);
  try {
    // Two new sources on a directory already at its limit of 3 entries.
    for (let i = 3; i < 5; i++) assert.equal((await get(urlOf(second, i))).xCache, 'MISS');
    await eventually(() => (entriesOnDisk(cacheDir) === 3 ? true : undefined), 5_000, 'the limit of 3 entries on disk');
    // The least recently used went: 0 and 1. The newest of the old ones is still served from the cache.
    assert.equal((await get(urlOf(second, 2))).xCache, 'HIT');
    assert.equal(origin.hits('/limit-2.png'), 1);
    assert.equal((await get(urlOf(second, 0))).xCache, 'MISS');
    assert.equal(origin.hits('/limit-0.png'), 2, 'evicted, so fetched again');
    await eventually(() => (entriesOnDisk(cacheDir) === 3 ? true : undefined), 5_000, 'still 3 entries');
  } finally {
    assert.equal(await second.stop(), 0);
  }
});
