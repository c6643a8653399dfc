import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { FastImageCacheError } from '../../src/errors.ts';
import { createImageCache, type ImageCache } from '../../src/image-cache.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { TEST_KEY_HEX, testSettings } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

/** The library's get()/sign() with options as an object, and `fastimagecache sign --options`. */

const tmp = makeTempDir('fic-lib-transform-');
let origin: Origin;
let images: ImageCache;

before(async () => {
  origin = await startOrigin();
  origin.serve('/cat.png', await makeImage('png', 200, 100), { contentType: 'image/png' });
  images = await createImageCache({
    env: { FASTIMAGECACHE_KEY: TEST_KEY_HEX },
    settings: { ...testSettings(tmp.dir), presets: { thumb: { width: 40, height: 40, format: 'webp' } } },
  });
});
after(async () => {
  await images.close();
  await origin.close();
  tmp.cleanup();
});

describe('library', () => {
  test('get() takes the URL options as an object', async () => {
    const small = await images.get(`${origin.url}/cat.png`, { width: 50, format: 'webp' });
    assert.equal(small.contentType, 'image/webp');
    assert.deepEqual([(await sharp(small.body).metadata()).width, (await sharp(small.body).metadata()).height], [50, 25]);
    assert.equal(small.vary, undefined);

    const thumb = await images.get(`${origin.url}/cat.png`, { preset: 'thumb' });
    assert.equal((await sharp(thumb.body).metadata()).width, 40);

    const auto = await images.get(`${origin.url}/cat.png`, { width: 50, format: 'auto', accept: 'image/avif,image/webp' });
    assert.equal(auto.contentType, 'image/avif');
    assert.equal(auto.vary, 'Accept');

    const same = await images.get(`${origin.url}/cat.png`, { width: 25, dpr: 2, format: 'webp', quality: 80 });
    assert.equal(same.cacheStatus, 'HIT', 'normalized like the URL form');
    assert.equal(origin.hits('/cat.png'), 1);
  });

  test('get() refuses bad options and past expiry with the server codes', async () => {
    const bad = [{ width: 99_999 }, { fit: 'stretch' }, { preset: 'nosuch' }, { colour: 'red' }] as unknown as Array<Record<string, unknown>>;
    for (const options of bad) {
      await assert.rejects(images.get(`${origin.url}/cat.png`, options), (err: unknown) => err instanceof FastImageCacheError && err.code === 'bad_options');
    }
    await assert.rejects(
      images.get(`${origin.url}/cat.png`, { expires: Math.floor(Date.now() / 1000) - 1 }),
      (err: unknown) => err instanceof FastImageCacheError && err.code === 'expired' && err.status === 410,
    );
  });

  test('sign() takes options as a string or an object, and refuses what the server would', () => {
    assert.match(images.sign(`${origin.url}/cat.png`, { width: 300, format: 'webp' }), /^\/i\/[\w-]{43}\/w:300,f:webp\/[\w-]+$/);
    assert.match(images.sign(`${origin.url}/cat.png`, 'p:thumb'), /\/p:thumb\//);
    assert.throws(() => images.sign(`${origin.url}/cat.png`, 'w:99999'), (err: unknown) => err instanceof FastImageCacheError && err.code === 'bad_options');
  });
});

describe('fastimagecache sign --options', () => {
  const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
  const configFile = join(tmp.dir, 'presets.yaml');
  writeFileSync(configFile, 'presets:\n  thumb: { width: 150, height: 150, format: webp }\n');
  /** One CLI run (they start in parallel: each costs a Node start-up). */
  const run = (options: string) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [CLI, 'sign', 'https://example.com/cat.jpg', '--config', configFile, '--options', options],
        { env: { PATH: process.env.PATH ?? '', HOME: tmp.dir, FASTIMAGECACHE_KEY: TEST_KEY_HEX }, encoding: 'utf8', timeout: 20_000 },
        (err, stdout, stderr) => {
          resolve({ status: err ? Number(err.code) : 0, stdout, stderr });
        },
      );
    });

  test('signs valid options as written; refuses invalid ones naming the key, exit 2', async () => {
    const valid = ['w:300,f:webp', 'p:thumb,exp:1767225600'];
    const invalid: Array<[string, RegExp]> = [
      ['w:99999', /w: width 99999 out of range/],
      ['p:nosuch', /p: no such preset/],
    ];
    const results = await Promise.all([...valid, ...invalid.map(([o]) => o)].map(run));
    for (const [i, options] of valid.entries()) {
      const r = results[i];
      assert.ok(r);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim().split('/')[3], options);
    }
    for (const [i, [options, message]] of invalid.entries()) {
      const r = results[valid.length + i];
      assert.ok(r);
      assert.equal(r.status, 2, options);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    }
  });
});
