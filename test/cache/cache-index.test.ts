/**
 * Limits and eviction through the real cache manager and cache directory:
 * admission before the write, segmented LRU order, the byte limit under a
 * burst, maxEntries, the background rebuild at start, and an index reached
 * only through structured clones (as over IPC).
 */
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheIndex, type CacheIndexApi } from '../../src/cache/cache-index.ts';
import { sourceKey } from '../../src/cache/cache-key.ts';
import { CacheManager, type CacheManagerOptions, type Loader } from '../../src/cache/cache-manager.ts';
import { silentLogger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import type { EntryId, PreparedEntry, StorageBackend } from '../../src/storage/types.ts';
import { deferred, ProbedStorage, tempStorage } from './lifecycle-helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Every source is `size` bytes; the loader counts its calls per URL. */
function sizedLoader(size: number) {
  const calls = new Map<string, number>();
  const loader: Loader = ({ url }) => {
    calls.set(url, (calls.get(url) ?? 0) + 1);
    return Promise.resolve({ status: 200, body: Buffer.alloc(size, url.length % 251), contentType: 'image/png', origin: { cacheControl: 'max-age=3600' } });
  };
  return { loader, calls };
}

async function setup(opts: Partial<CacheManagerOptions> & { size?: number } = {}) {
  const { storage, cleanup } = await tempStorage();
  const { loader, calls } = sizedLoader(opts.size ?? 1000);
  const cache = new CacheManager({ storage: opts.storage ?? storage, loader, logger: silentLogger(), memoryCacheBytes: 0, ...opts });
  cleanups.push(cleanup, () => cache.close());
  await cache.ready();
  return { cache, storage, calls };
}

const src = (name: string) => ({ sourceUrl: `https://img.example/${name}.png`, variant: '_' });
/** Bytes one entry of `setup` takes on disk (header + metadata + body). */
async function entrySize(): Promise<number> {
  const { cache, storage } = await setup();
  await cache.get(src('probe'));
  return (await storage.stats()).bytes;
}
/** Which of `names` are on disk, looked up without using them (a lookup would change the LRU order). */
async function onDisk(storage: StorageBackend, names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    const key = sourceKey(`https://img.example/${n}.png`);
    if ((await storage.read(storage.entryId(key, key))) !== undefined) out.push(n);
  }
  return out;
}

test('segmented LRU: least recently used goes first, and a scan of one-hit wonders does not flush the hot set', async () => {
  const one = await entrySize();
  const { cache, storage, calls } = await setup({ maxCacheBytes: one * 4 + 10 });
  for (const n of ['a', 'b', 'c', 'd']) await cache.get(src(n));
  await cache.get(src('a')); // a and b are used again: protected
  await cache.get(src('b'));
  await cache.get(src('e')); // full: the least recently used of probation goes (c)
  assert.equal((await storage.stats()).entries, 4);
  assert.deepEqual(await onDisk(storage, ['a', 'b', 'c', 'd', 'e']), ['a', 'b', 'd', 'e']);

  for (let i = 0; i < 20; i++) await cache.get(src(`scan${i}`)); // one-hit wonders
  assert.deepEqual(await onDisk(storage, ['a', 'b']), ['a', 'b'], 'the hot set survived the scan');
  assert.equal((await cache.get(src('a'))).status, 'HIT');
  assert.equal(calls.get('https://img.example/a.png'), 1);
  const stats = await cache.stats();
  assert.ok(stats.evictions >= 20);
  assert.ok(stats.bytes <= one * 4 + 10);
  assert.equal(stats.bytes, (await storage.stats()).bytes, 'accounting matches the real file sizes');
});

/** Storage that records, after each write, the real bytes on disk and the writes still running. */
class MeasuringStorage extends ProbedStorage {
  inFlight = 0;
  worst = 0;
  worstInFlight = 0;
  readonly sizes = new Map<EntryId, number>();
  override async write(id: EntryId, entry: PreparedEntry): Promise<void> {
    this.inFlight += 1;
    try {
      await super.write(id, entry);
      this.sizes.set(id, entry.bytes);
    } finally {
      this.inFlight -= 1;
    }
    const onDisk = (await this.inner.stats()).bytes;
    if (onDisk > this.worst) {
      this.worst = onDisk;
      this.worstInFlight = this.inFlight;
    }
  }
}

test('the byte limit holds under a burst of 120 concurrent inserts: never exceeded on disk, every image served', async () => {
  const one = await entrySize();
  const { storage: fsStorage, cleanup } = await tempStorage();
  cleanups.push(cleanup);
  const measuring = new MeasuringStorage(fsStorage);
  const limit = one * 10;
  const { cache } = await setup({ storage: measuring, maxCacheBytes: limit });
  const results = await Promise.all(Array.from({ length: 120 }, (_, i) => cache.get(src(`burst${i}`))));
  assert.ok(results.every((r) => r.status === 'MISS' && r.size === 1000));
  assert.ok(measuring.worst <= limit, `worst ${measuring.worst} with ${measuring.worstInFlight} writes running, limit ${limit}`);
  const settled = await fsStorage.stats();
  assert.ok(settled.bytes <= limit && settled.entries <= 10, `settled at ${settled.bytes} ≤ ${limit}`);
  assert.equal((await cache.stats()).bytes, settled.bytes, 'accounting matches the real file sizes');

  // A second burst over a full cache evicts instead: still within the limit.
  await Promise.all(Array.from({ length: 60 }, (_, i) => cache.get(src(`again${i}`))));
  assert.ok(measuring.worst <= limit, `worst ${measuring.worst}`);
  assert.ok((await cache.stats()).evictions > 0);
  assert.equal((await cache.stats()).bytes, (await fsStorage.stats()).bytes);
});

test('maxEntries limits the count; an entry larger than the whole limit is served, not stored', async () => {
  const one = await entrySize();
  const counted = await setup({ maxEntries: 3 });
  for (const n of ['a', 'b', 'c', 'd', 'e']) await counted.cache.get(src(n));
  assert.equal((await counted.storage.stats()).entries, 3);

  const tiny = await setup({ maxCacheBytes: one - 100 });
  assert.equal((await tiny.cache.get(src('big'))).status, 'MISS');
  assert.equal((await tiny.cache.get(src('big'))).status, 'MISS');
  assert.equal((await tiny.storage.stats()).entries, 0);
});

test('restart: answers at once while the index rebuilds, then evicts the oldest writes down to a lower limit', async () => {
  const { storage, base, cleanup } = await tempStorage();
  cleanups.push(cleanup);
  const { loader } = sizedLoader(1000);
  const first = new CacheManager({ storage, loader, logger: silentLogger() });
  const names = ['old', 'middle', 'new', 'newest'];
  for (const n of names) await first.get(src(n));
  await first.close();
  const one = (await storage.stats()).bytes / names.length;
  // Write times decide the order after a restart.
  const files = new Map<string, string>();
  for await (const batch of storage.scan()) {
    for (const e of batch) {
      const meta = await storage.readMeta(e.id);
      files.set(new URL(meta?.sourceUrl ?? '').pathname.slice(1, -4), path.join(storage.dir, e.id.slice(0, 2), e.id));
    }
  }
  for (const [i, n] of names.entries()) {
    const when = new Date(Date.UTC(2029, 0, 1 + i));
    await fs.utimes(files.get(n) as string, when, when);
  }

  const reopened = await FsStorage.open({ dir: path.join(base, 'cache'), logger: silentLogger() });
  const gate = deferred();
  /** The directory listing waits for the gate: the index cannot load until the test says so. */
  class GatedScan extends ProbedStorage {
    override async *scan() {
      await gate.promise;
      yield* this.inner.scan();
    }
  }
  const { loader: second, calls } = sizedLoader(1000);
  const cache = new CacheManager({
    storage: new GatedScan(reopened),
    loader: second,
    logger: silentLogger(),
    maxCacheBytes: Math.floor(one * 2.5),
    memoryCacheBytes: 0,
  });
  cleanups.push(() => cache.close());
  try {
    const hit = await cache.get(src('old'));
    assert.equal(hit.status, 'HIT', 'a hit before the index is loaded');
    assert.equal((await cache.stats()).indexReady, false);
  } finally {
    gate.resolve();
  }
  await cache.ready();
  const stats = await cache.stats();
  assert.equal(stats.indexReady, true);
  assert.equal(stats.entries, 2);
  assert.ok(stats.bytes <= one * 2.5);
  assert.equal(calls.size, 0);
  // Write times order the rebuilt entries: the oldest writes went first.
  assert.deepEqual(await onDisk(reopened, names), ['new', 'newest']);
});

/** An index reachable only through structured clones of arguments and results: what IPC to a cluster primary allows. */
function overStructuredClone(index: CacheIndexApi): CacheIndexApi {
  const call = async <T>(fn: () => Promise<T>): Promise<T> => structuredClone(await fn());
  return {
    reserve: (id, bytes) => call(() => index.reserve(structuredClone(id), structuredClone(bytes))),
    commit: (token) => call(() => index.commit(structuredClone(token))),
    release: (token) => call(() => index.release(structuredClone(token))),
    touch: (id) => call(() => index.touch(structuredClone(id))),
    remove: (ids) => call(() => index.remove(structuredClone(ids))),
    clear: () => call(() => index.clear()),
    stats: () => call(() => index.stats()),
  };
}

test('two managers share one index through a structured-clone boundary, as cluster workers would', async () => {
  const one = await entrySize();
  const { storage, cleanup } = await tempStorage();
  cleanups.push(cleanup);
  const shared = new CacheIndex({ storage, maxBytes: one * 3, logger: silentLogger() });
  const workers = [0, 1].map(() => {
    const { loader } = sizedLoader(1000);
    const m = new CacheManager({ storage, loader, logger: silentLogger(), index: overStructuredClone(shared), memoryCacheBytes: 0 });
    cleanups.push(() => m.close());
    return m;
  });
  for (let i = 0; i < 8; i++) await (workers[i % 2] as CacheManager).get(src(`w${i}`));
  const onDisk = await storage.stats();
  assert.equal(onDisk.entries, 3, 'one limit for both workers');
  assert.equal((await shared.stats()).bytes, onDisk.bytes);
  assert.equal((await workers[0]?.stats())?.evictions, 5);
});
