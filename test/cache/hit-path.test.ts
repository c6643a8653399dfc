import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BoundedMemo } from '../../src/cache/bounded-memo.ts';
import { CacheManager, type Loader } from '../../src/cache/cache-manager.ts';
import { silentLogger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { ProbedStorage } from './lifecycle-helpers.ts';

const scratch: string[] = [];
const managers: CacheManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

/** Counts the entry-id HMACs the manager asks for (the keys' hashes come with them). */
class CountingStorage extends ProbedStorage {
  ids = 0;
  override entryId(sourceKey: string, entryKey: string): string {
    this.ids += 1;
    return super.entryId(sourceKey, entryKey);
  }
}

async function manager(memoryCacheBytes: number) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-hit-path-'));
  scratch.push(dir);
  const storage = new CountingStorage(await FsStorage.open({ dir, logger: silentLogger() }));
  let loads = 0;
  const loader: Loader = ({ url }) => {
    loads += 1;
    return Promise.resolve({ status: 200, body: Buffer.from(`\x89PNG bytes of ${url}`), contentType: 'image/png', origin: { cacheControl: 'max-age=3600' } });
  };
  const cache = new CacheManager({ storage, loader, logger: silentLogger(), memoryCacheBytes });
  managers.push(cache);
  return { cache, storage, dir, loads: () => loads };
}

test('a repeated hit computes no keys or entry ids again, from memory or from disk', async () => {
  for (const memoryCacheBytes of [64 * 1024 * 1024, 0]) {
    const { cache, storage, loads } = await manager(memoryCacheBytes);
    const url = 'https://images.example/a.png';
    assert.equal((await cache.get({ sourceUrl: url, variant: '_' })).status, 'MISS');
    const idsAfterMiss = storage.ids;
    const readsAfterMiss = storage.reads;
    for (let i = 0; i < 5; i++) assert.equal((await cache.get({ sourceUrl: url, variant: '_' })).status, 'HIT');
    assert.equal(storage.ids, idsAfterMiss, `memoryCacheBytes=${memoryCacheBytes}: entry ids computed again on a hit`);
    assert.equal(loads(), 1);
    // The memory tier serves without the disk; without it every hit is a verified read.
    assert.equal(storage.reads - readsAfterMiss, memoryCacheBytes > 0 ? 0 : 5);
  }
});

test('a damaged file is still caught on a disk hit with remembered keys', async () => {
  const { cache, dir, loads } = await manager(0);
  const url = 'https://images.example/b.png';
  await cache.get({ sourceUrl: url, variant: '_' });
  await cache.get({ sourceUrl: url, variant: '_' }); // keys remembered now
  const files = (await fs.readdir(dir, { recursive: true })).filter((f) => /\/[0-9a-f]{8}$/.test(f));
  assert.equal(files.length, 1);
  const file = path.join(dir, files[0] ?? '');
  const bytes = await fs.readFile(file);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
  await fs.writeFile(file, bytes);
  const again = await cache.get({ sourceUrl: url, variant: '_' });
  assert.equal(again.status, 'MISS', 'a corrupt entry must be refetched, not served');
  assert.equal(loads(), 2);
});

test('BoundedMemo keeps at most its limit, forgets the oldest first, and never remembers a throw', () => {
  const memo = new BoundedMemo<number>(2);
  let computed = 0;
  const square = (n: number) => memo.getOrCompute(String(n), () => (computed++, n * n));
  assert.equal(square(2), 4);
  assert.equal(square(2), 4);
  assert.equal(computed, 1);
  square(3);
  square(4); // forgets 2
  assert.equal(memo.size, 2);
  assert.equal(memo.get('2'), undefined);
  assert.equal(memo.get('4'), 16);
  assert.throws(() => memo.getOrCompute('bad', () => { throw new Error('refused'); }), /refused/);
  assert.equal(memo.get('bad'), undefined);
  assert.equal(new BoundedMemo<number>(0).getOrCompute('x', () => 1), 1);
});
