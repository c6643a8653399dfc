import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheManager, type Loader } from '../../src/cache/cache-manager.ts';
import { silentLogger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { deferred, ProbedStorage } from './lifecycle-helpers.ts';

// Disk hits go through entry files kept open between reads (FsStorage.read):
// what a user relies on is that purges still purge and damage is still caught.

const scratch: string[] = [];
const managers: CacheManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function diskOnly() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-disk-hits-'));
  scratch.push(dir);
  const storage = await FsStorage.open({ dir, logger: silentLogger() });
  let loads = 0;
  const loader: Loader = ({ url }) => {
    loads += 1;
    return Promise.resolve({ status: 200, body: Buffer.from(`\x89PNG bytes of ${url} #${loads}`), contentType: 'image/png', origin: { cacheControl: 'max-age=3600' } });
  };
  const cache = new CacheManager({ storage, loader, logger: silentLogger(), memoryCacheBytes: 0 });
  managers.push(cache);
  return { cache, dir, loads: () => loads };
}

async function entryFile(dir: string): Promise<string> {
  const files = (await fs.readdir(dir, { recursive: true })).filter((f) => /\/[0-9a-f]{8}$/.test(f));
  assert.equal(files.length, 1);
  return path.join(dir, files[0] ?? '');
}

test('a purge after disk hits makes the next request a miss', async () => {
  const { cache, loads } = await diskOnly();
  const url = 'https://images.example/p.png';
  assert.equal((await cache.get({ sourceUrl: url, variant: '_' })).status, 'MISS');
  for (let i = 0; i < 3; i++) assert.equal((await cache.get({ sourceUrl: url, variant: '_' })).status, 'HIT');
  assert.equal(await cache.purge(url), 1);
  const after = await cache.get({ sourceUrl: url, variant: '_' });
  assert.equal(after.status, 'MISS');
  assert.equal(after.body.toString(), `\x89PNG bytes of ${url} #2`);
  assert.equal(loads(), 2);
});

test('a byte flipped in an entry file after several disk hits is not served: the entry is fetched again', async () => {
  const { cache, dir, loads } = await diskOnly();
  const url = 'https://images.example/f.png';
  const first = await cache.get({ sourceUrl: url, variant: '_' });
  // The first disk hit is hashed by the manager, the second by the storage, later ones by CRC-32.
  for (let i = 0; i < 4; i++) assert.ok((await cache.get({ sourceUrl: url, variant: '_' })).body.equals(first.body));
  const file = await entryFile(dir);
  const bytes = await fs.readFile(file);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x01;
  await fs.writeFile(file, bytes);

  const again = await cache.get({ sourceUrl: url, variant: '_' });
  assert.equal(again.status, 'MISS', 'a damaged entry must be fetched again, not served');
  assert.equal(again.body.toString(), `\x89PNG bytes of ${url} #2`);
  assert.equal(loads(), 2);
  assert.equal((await cache.stats()).corruptEntries, 1);
  assert.equal((await cache.get({ sourceUrl: url, variant: '_' })).status, 'HIT', 'the new entry is served from then on');
});

describe('disk hits whose body is lent (CacheRequest.lend)', () => {
  async function largeBodies(memoryCacheBytes: number) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-disk-lend-'));
    scratch.push(dir);
    const storage = await FsStorage.open({ dir, logger: silentLogger() });
    const loader: Loader = ({ url }) =>
      Promise.resolve({ status: 200, body: Buffer.concat([Buffer.from('\x89PNG'), Buffer.alloc(100_000, url.slice(-5, -4))]), contentType: 'image/png', origin: { cacheControl: 'max-age=3600' } });
    const cache = new CacheManager({ storage, loader, logger: silentLogger(), memoryCacheBytes });
    managers.push(cache);
    return cache;
  }
  const a = { sourceUrl: 'https://images.example/a.png', variant: '_' };
  const b = { sourceUrl: 'https://images.example/b.png', variant: '_' };

  test('only a caller that asked and got the body alone may give it back; the buffer then holds the next hit, whole', async () => {
    const cache = await largeBodies(0);
    const expectedA = (await cache.get(a)).body;
    const expectedB = (await cache.get(b)).body;
    for (const r of [a, b]) await cache.get(r); // the first disk hit opens the file; later ones read it open

    assert.equal((await cache.get(a)).release, undefined, 'not asked to lend');
    const lent = await cache.get({ ...a, lend: true });
    assert.equal(lent.status, 'HIT');
    assert.ok(lent.release, 'asked, alone, and the memory tier does not keep it: lent');
    assert.ok(lent.body.equals(expectedA));

    const [one, two] = await Promise.all([cache.get({ ...b, lend: true }), cache.get({ ...b, lend: true })]);
    assert.equal(one.release, undefined, 'two callers got one read: neither may give it back');
    assert.equal(two.release, undefined);
    assert.equal(one.body, two.body);

    lent.release();
    const next = await cache.get({ ...b, lend: true });
    assert.equal(next.body.buffer, lent.body.buffer, 'the buffer given back serves the next lent hit');
    assert.ok(next.body.equals(expectedB));
  });

  test('a disk hit the memory tier admits is kept there and never lent', async () => {
    const cache = await largeBodies(1024 * 1024); // about ten of these bodies
    const others = (from: number) => Array.from({ length: 10 }, (_, i) => ({ sourceUrl: `https://images.example/o${from + i}.png`, variant: '_' }));
    await cache.get(a);
    for (const o of others(0)) await cache.get(o); // new entries push a out of memory
    await cache.get(a); // read from disk (its file kept open), asked for more often than the others: admitted
    for (const o of others(10)) await cache.get(o);
    const before = (await cache.stats()).memoryHits;
    const got = await cache.get({ ...a, lend: true });
    assert.equal(got.status, 'HIT');
    assert.equal(got.release, undefined, 'admitted to the memory tier: a buffer of its own');
    assert.equal((await cache.stats()).memoryHits, before, 'that one came from disk');
    await cache.get({ ...a, lend: true });
    assert.equal((await cache.stats()).memoryHits, before + 1, 'and the next from memory');
  });
});

/**
 * `url` stored ("version 1") by one cache manager, then a second one over the same directory (a new process: its
 * memory tier is empty, so a request reads the disk), through ProbedStorage. Each origin fetch makes a new version.
 */
async function reopenedOverStoredImage(url: string): Promise<{ cache: CacheManager; probed: ProbedStorage }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-disk-purge-race-'));
  scratch.push(dir);
  let loads = 0;
  const loader: Loader = () => {
    loads += 1;
    return Promise.resolve({ status: 200, body: Buffer.from(`\x89PNG version ${loads}`), contentType: 'image/png', origin: { cacheControl: 'max-age=3600' } });
  };
  const filler = new CacheManager({ storage: await FsStorage.open({ dir, logger: silentLogger() }), loader, logger: silentLogger() });
  await filler.get({ sourceUrl: url, variant: '_' });
  await filler.close();
  const probed = new ProbedStorage(await FsStorage.open({ dir, logger: silentLogger() }));
  const cache = new CacheManager({ storage: probed, loader, logger: silentLogger() });
  managers.push(cache);
  return { cache, probed };
}

test('a disk read still in flight when its source is purged does not put the purged image back in memory', async () => {
  const url = 'https://images.example/raced.png';
  const { cache, probed } = await reopenedOverStoredImage(url);
  let release!: () => void;
  probed.holdReads = new Promise((resolve) => {
    release = resolve;
  });
  const inFlight = cache.get({ sourceUrl: url, variant: '_' });
  while (probed.reads === 0) await new Promise((resolve) => setImmediate(resolve));
  assert.equal(await cache.purge(url), 1);
  release();
  probed.holdReads = undefined;
  assert.equal((await inFlight).body.toString(), '\x89PNG version 1', 'the request that started before the purge gets what it read');
  const after = await cache.get({ sourceUrl: url, variant: '_' });
  assert.equal(after.status, 'MISS', 'the purged image is not served from memory');
  assert.equal(after.body.toString(), '\x89PNG version 2');
});

for (const [scope, read] of [['source', 'done'], ['source', 'in flight'], ['all', 'done'], ['all', 'in flight']] as const) {
  test(`a disk read ${read === 'done' ? 'made' : 'still in flight'} while a purge (${scope}) removes the files does not put the purged image back in memory`, async () => {
    const url = 'https://images.example/raced-removal.png';
    const { cache, probed } = await reopenedOverStoredImage(url);
    let releaseRemoval!: () => void;
    probed.holdRemovals = new Promise((resolve) => {
      releaseRemoval = resolve;
    });
    const removing = deferred();
    probed.onRemoval = () => {
      removing.resolve();
    };
    // The purge has begun (memory dropped, epoch moved) but the files are still there: a slow removal, a loaded machine.
    const purging = scope === 'source' ? cache.purge(url) : cache.purgeAll();
    await removing.promise;
    let releaseRead!: () => void;
    if (read === 'in flight') {
      probed.holdReads = new Promise((resolve) => {
        releaseRead = resolve;
      });
    }
    const during = cache.get({ sourceUrl: url, variant: '_' });
    if (read === 'done') assert.equal((await during).body.toString(), '\x89PNG version 1', 'a request during the removal may still get the old bytes');
    else while (probed.reads === 0) await new Promise((resolve) => setImmediate(resolve));
    releaseRemoval();
    probed.holdRemovals = undefined;
    await purging;
    if (read === 'in flight') {
      releaseRead();
      probed.holdReads = undefined;
      assert.equal((await during).body.toString(), '\x89PNG version 1', 'what it read before the files went');
    }
    const after = await cache.get({ sourceUrl: url, variant: '_' });
    assert.equal(after.body.toString(), '\x89PNG version 2', 'the purged image is not served once the purge is done');
    assert.equal(after.status, 'MISS');
  });
}
