import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createImageCache, FastImageCacheError, type ImageCache } from '../../src/index.ts';
import { silentLogger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import type { StoredEntry } from '../../src/storage/types.ts';
import { sha256 } from '../helpers/entries.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { testSettings, TEST_KEY_HEX } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

// Passthrough serves a stored source only once it has seen it decode. A source
// fetched for passthrough was decoded before it was stored, and its entry says
// so (EntryMeta.decoded): after a restart it is served without a second decode.
// A source fetched only to make a variant was not, and is decoded once again.

let origin: Origin;
const tmp = makeTempDir('fic-decoded-');
const open = () => createImageCache({ env: { HOME: tmp.dir, FASTIMAGECACHE_KEY: TEST_KEY_HEX }, settings: testSettings(tmp.dir) });

before(async () => {
  origin = await startOrigin();
  origin.serve('/plain.png', await makeImage('png', 40, 30), { contentType: 'image/png' });
  origin.serve('/for-variant.jpg', await makeImage('jpeg', 400, 300), { contentType: 'image/jpeg' });
});
after(async () => {
  await origin.close();
  tmp.cleanup();
});

/** The stored source entries, by source URL path. */
async function storedSources(storage: FsStorage): Promise<Map<string, StoredEntry>> {
  const found = new Map<string, StoredEntry>();
  for await (const batch of storage.scan()) {
    for (const { id } of batch) {
      const entry = await storage.read(id);
      if (entry?.meta.variant === '_') found.set(new URL(entry.meta.sourceUrl).pathname, entry);
    }
  }
  return found;
}

test('after a restart, a source decoded when it was stored is not decoded again; one stored for a variant is', async () => {
  let cache: ImageCache = await open();
  assert.equal((await cache.get(`${origin.url}/plain.png`)).cacheStatus, 'MISS');
  assert.equal((await cache.get(`${origin.url}/for-variant.jpg`, { width: 100 })).cacheStatus, 'MISS');
  await cache.close();

  const storage = await FsStorage.open({ dir: join(tmp.dir, 'cache'), logger: silentLogger() });
  const sources = await storedSources(storage);
  assert.equal(sources.get('/plain.png')?.meta.decoded, true, 'fetched for passthrough: decoded before it was stored');
  assert.equal(sources.get('/for-variant.jpg')?.meta.decoded, undefined, 'fetched for a variant: not decoded on the way in');

  // Bytes that hash right but no longer decode tell whether a decode happens: each source's body is replaced.
  const garbage = Buffer.from('hashed like an entry, but not an image at all');
  for (const entry of sources.values()) {
    const meta = { ...entry.meta, size: garbage.length, sha256: sha256(garbage), sourceSha256: sha256(garbage) };
    await storage.write(storage.entryId(meta.sourceKey, meta.key), storage.prepare({ meta, body: garbage }));
  }
  await storage.close();

  cache = await open();
  try {
    const plain = await cache.get(`${origin.url}/plain.png`);
    assert.equal(plain.cacheStatus, 'HIT');
    assert.ok(plain.body.equals(garbage), 'served as stored, without a decode');
    await assert.rejects(
      cache.get(`${origin.url}/for-variant.jpg`),
      (err: unknown) => err instanceof FastImageCacheError && err.code === 'not_an_image',
      'decoded before passthrough serves it: refused',
    );
  } finally {
    await cache.close();
  }
});
