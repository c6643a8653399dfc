import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheManager, type Loader } from '../../src/cache/cache-manager.ts';
import { silentLogger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';

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
