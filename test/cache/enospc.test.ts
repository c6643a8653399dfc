/**
 * A full or read-only cache directory costs the cache, never the response:
 * images are still served, nothing is cached, one warning a minute, and the
 * cache keeps working once space is back. Simulated at the storage boundary,
 * and for real on a tiny tmpfs (when this process may mount one).
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { CacheManager } from '../../src/cache/cache-manager.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { manualClock, ProbedStorage, realLoader, recordingLogger, tempStorage } from './lifecycle-helpers.ts';

let origin: Origin;
const images: Buffer[] = [];
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  origin = await startOrigin();
  // Noise does not compress: each PNG is ~60 KB, so a few fill a tiny filesystem.
  for (let i = 0; i < 8; i++) {
    const png = await sharp(randomBytes(150 * 130 * 3), { raw: { width: 150, height: 130, channels: 3 } }).png().toBuffer();
    images.push(png);
    origin.serve(`/noise${i}.png`, png, { contentType: 'image/png', headers: { 'Cache-Control': 'max-age=3600' } });
  }
});
after(async () => origin.close());
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const src = (i: number) => ({ sourceUrl: `${origin.url}/noise${i}.png`, variant: '_' });
const storeWarnings = (lines: Array<Record<string, unknown>>) => lines.filter((l) => /could not store/.test(String(l.msg)));

for (const code of ['ENOSPC', 'EROFS']) {
  test(`${code} at the storage boundary: served, nothing cached, one warning a minute, recovers`, async () => {
    const clock = manualClock();
    const log = recordingLogger();
    const { storage, cleanup } = await tempStorage();
    const probed = new ProbedStorage(storage);
    probed.failWrites = code;
    const { loader, close } = realLoader();
    const cache = new CacheManager({ storage: probed, loader, logger: log.logger, now: clock.now });
    cleanups.push(cleanup, close, () => cache.close());

    for (let i = 0; i < 5; i++) {
      const r = await cache.get(src(i));
      assert.equal(r.status, 'MISS');
      assert.ok(r.body.equals(images[i] as Buffer), 'the image is served anyway');
    }
    assert.equal((await cache.get(src(0))).status, 'MISS', 'nothing was cached (not even in memory)');
    assert.equal((await storage.stats()).entries, 0);
    assert.equal(storeWarnings(log.lines()).length, 1, 'one warning, not one per request');
    assert.equal(storeWarnings(log.lines())[0]?.code, code);

    clock.advance(61_000);
    await cache.get(src(5));
    const warnings = storeWarnings(log.lines());
    assert.equal(warnings.length, 2, 'the next minute warns again');
    assert.equal(warnings[1]?.suppressed, 5, 'and says how many it held back');

    probed.failWrites = undefined;
    assert.equal((await cache.get(src(6))).status, 'MISS');
    assert.equal((await cache.get(src(6))).status, 'HIT', 'caching resumes once writes work');
    const stats = await cache.stats();
    assert.equal(stats.storeFailures, 7);
    assert.equal(stats.bytes, (await storage.stats()).bytes, 'failed writes left no accounting behind');
  });
}

/** A tmpfs of `size` bytes mounted on a fresh directory, or undefined when mounting is not allowed here. */
function tinyTmpfs(size: string): { dir: string; remountReadOnly: () => void; unmount: () => void } | undefined {
  const dir = execFileSync('mktemp', ['-d', path.join(os.tmpdir(), 'fic-tmpfs-XXXXXX')]).toString().trim();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    execFileSync('rmdir', [dir]);
    return undefined;
  }
  return {
    dir,
    remountReadOnly: () => execFileSync('mount', ['-o', 'remount,ro', dir]),
    unmount: () => {
      execFileSync('umount', [dir]);
      execFileSync('rmdir', [dir]);
    },
  };
}

const probe = tinyTmpfs('4k');
probe?.unmount();
const noMount = probe === undefined && 'this process may not mount a tmpfs (needs root / CAP_SYS_ADMIN)';

test('a really full disk (256 KiB tmpfs): every image served, the server keeps going', { skip: noMount }, async () => {
  const fsys = tinyTmpfs('256k');
  assert.ok(fsys);
  cleanups.push(() => {
    fsys.unmount();
    return Promise.resolve();
  });
  const log = recordingLogger();
  const storage = await FsStorage.open({ dir: path.join(fsys.dir, 'cache'), logger: log.logger });
  const { loader, close } = realLoader();
  const cache = new CacheManager({ storage, loader, logger: log.logger, memoryCacheBytes: 0 });
  cleanups.push(close, () => cache.close());

  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < images.length; i++) {
      const r = await cache.get(src(i));
      assert.ok(r.body.equals(images[i] as Buffer), `image ${i} served intact`);
    }
  }
  const stats = await cache.stats();
  assert.ok(stats.storeFailures > 0, 'some writes hit ENOSPC');
  assert.ok(stats.hits > 0, 'what fitted is served from the cache');
  assert.equal(storeWarnings(log.lines()).length, 1);
  assert.equal(storeWarnings(log.lines())[0]?.code, 'ENOSPC');
  const leftovers = await fs.readdir(path.join(storage.dir, 'tmp'));
  assert.deepEqual(leftovers, [], 'no half-written temp files left behind');
});

test('a read-only cache directory (remounted ro): the server starts, serves, caches nothing', { skip: noMount }, async () => {
  const fsys = tinyTmpfs('1m');
  assert.ok(fsys);
  cleanups.push(() => {
    fsys.unmount();
    return Promise.resolve();
  });
  const dir = path.join(fsys.dir, 'cache');
  await (await FsStorage.open({ dir, logger: recordingLogger().logger })).close();
  fsys.remountReadOnly();

  const log = recordingLogger();
  const storage = await FsStorage.open({ dir, logger: log.logger });
  const { loader, close } = realLoader();
  const cache = new CacheManager({ storage, loader, logger: log.logger });
  cleanups.push(close, () => cache.close());
  for (let i = 0; i < 3; i++) {
    const r = await cache.get(src(1));
    assert.equal(r.status, 'MISS');
    assert.ok(r.body.equals(images[1] as Buffer));
  }
  assert.equal(storeWarnings(log.lines()).length, 1);
  assert.equal(storeWarnings(log.lines())[0]?.code, 'EROFS');
});
