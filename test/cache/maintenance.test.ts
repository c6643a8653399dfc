import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheManager, type Loader } from '../../src/cache/cache-manager.ts';
import { countEntries, pruneEntries, purgeSource, verifyEntries } from '../../src/cache/maintenance.ts';
import { silentLogger } from '../../src/log.ts';
import { RemovalJournal } from '../../src/storage/removal-journal.ts';
import type { FsStorage } from '../../src/storage/fs-storage.ts';
import { manualClock, tempStorage } from './lifecycle-helpers.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const loaderWith = (cacheControl: string): Loader => ({ url }) =>
  Promise.resolve({
    status: 200,
    body: Buffer.from(`\x89PNG bytes of ${url}`.repeat(20)),
    contentType: 'image/png',
    origin: { cacheControl },
  });
const url = (n: string) => `https://img.example/${n}.png`;
const src = (n: string) => ({ sourceUrl: url(n), variant: '_' });
const variant = (n: string, v: string) => ({ sourceUrl: url(n), variant: v, transform: (s: { body: Buffer }) => Promise.resolve({ body: Buffer.concat([Buffer.from(v), s.body]), contentType: 'image/webp' }) });

async function filled(names: string[], opts: { now?: () => number; cacheControl?: string } = {}): Promise<{ storage: FsStorage; cache: CacheManager }> {
  const { storage, cleanup } = await tempStorage();
  const cache = new CacheManager({ storage, loader: loaderWith(opts.cacheControl ?? 'max-age=3600'), logger: silentLogger(), memoryCacheBytes: 0, ...(opts.now ? { now: opts.now } : {}) });
  cleanups.push(cleanup, () => cache.close());
  for (const n of names) {
    await cache.get(src(n));
    await cache.get(variant(n, 'w_10'));
  }
  return { storage, cache };
}

async function fileOf(storage: FsStorage, n: string, v = '_'): Promise<string> {
  for await (const batch of storage.scan()) {
    for (const e of batch) {
      const meta = await storage.readMeta(e.id);
      if (meta?.sourceUrl === url(n) && meta.variant === v) return path.join(storage.dir, e.id.slice(0, 2), e.id);
    }
  }
  throw new Error(`no entry for ${n} ${v}`);
}

test('verify re-hashes every entry and removes exactly the damaged ones', async () => {
  const { storage, cache } = await filled(['a', 'b', 'c', 'd', 'e']);
  const flipped = await fileOf(storage, 'a');
  const bytes = await fs.readFile(flipped);
  bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0x40;
  await fs.writeFile(flipped, bytes);
  const truncated = await fileOf(storage, 'b', 'w_10');
  await fs.truncate(truncated, 30);
  // An intact entry copied over another one: sound bytes, wrong place.
  await fs.copyFile(await fileOf(storage, 'c'), await fileOf(storage, 'd'));

  const seen: number[] = [];
  const total = await countEntries(storage);
  assert.equal(total, 10);
  const summary = await verifyEntries(storage, { total, onProgress: (done) => seen.push(done) });
  assert.equal(summary.checked, 10);
  assert.equal(summary.ok, 7);
  assert.equal(summary.removed.length, 3);
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(await countEntries(storage), 7);
  const again = await verifyEntries(storage);
  assert.deepEqual([again.checked, again.ok, again.removed.length], [7, 7, 0], 'a second run finds nothing');
  assert.equal((await cache.get(src('c'))).status, 'HIT', 'sound entries still serve');
});

test('prune removes what is past every stale window (variants judged with their source), then enforces the limits', async () => {
  const clock = manualClock();
  const { storage } = await filled(['short1', 'short2'], { now: clock.now, cacheControl: 'max-age=10, stale-while-revalidate=0, stale-if-error=0' });
  // Long-lived entries in the same directory, written by a second manager.
  const long = new CacheManager({ storage, loader: loaderWith('max-age=86400, stale-if-error=0'), logger: silentLogger(), now: clock.now, memoryCacheBytes: 0 });
  cleanups.push(() => long.close());
  for (const n of ['long1', 'long2', 'long3']) await long.get(src(n));
  assert.equal(await countEntries(storage), 7);

  clock.advance(3600 * 1000);
  const summary = await pruneEntries(storage, { now: clock.now, maxBytes: 1024 ** 3, logger: silentLogger() });
  assert.equal(summary.expired.length, 4, 'both short sources and their variants');
  assert.equal(summary.evicted.length, 0);
  assert.equal(await countEntries(storage), 3);

  const one = (await storage.stats()).bytes / 3;
  const limited = await pruneEntries(storage, { now: clock.now, maxBytes: Math.floor(one * 2), logger: silentLogger() });
  assert.equal(limited.evicted.length, 1);
  assert.ok((await storage.stats()).bytes <= one * 2);
});

test('purge of a source removes all its variants, and running managers on the directory forget them (memory tier too)', async () => {
  const { storage, cleanup } = await tempStorage();
  cleanups.push(cleanup);
  const server = new CacheManager({ storage, loader: loaderWith('max-age=3600'), logger: silentLogger(), removals: new RemovalJournal(storage.dir), removalPollMs: 20 });
  cleanups.push(() => server.close());
  await server.get(src('x'));
  await server.get(variant('x', 'w_10'));
  await server.get(variant('x', 'w_20'));
  await server.get(src('y'));
  assert.equal((await server.get(variant('x', 'w_10'))).status, 'HIT');

  // The CLI's purge: straight on the directory, then a notice for running servers.
  const removed = await purgeSource(storage, 'HTTPS://IMG.EXAMPLE/x.png#frag');
  assert.equal(removed.length, 3);
  await new RemovalJournal(storage.dir, { pid: 1 }).announce(removed);
  const deadline = Date.now() + 3000;
  while ((await server.stats()).memoryEntries > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal((await server.get(variant('x', 'w_10'))).status, 'MISS', 'not served from memory after the purge');
  assert.equal((await server.get(src('y'))).status, 'HIT', 'other sources untouched');
  assert.equal(await server.purge(url('x')), 2, 'the library purge: the source and the variant made again');
});
