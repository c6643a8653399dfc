import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createImageCache, FastImageCacheError, type ImageCache } from '../../src/index.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { testSettings, TEST_KEY_HEX } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

let origin: Origin;
let cache: ImageCache;
let png: Buffer;
const tmp = makeTempDir('fic-lib-');

before(async () => {
  origin = await startOrigin();
  png = await makeImage('png', 20, 20);
  origin.serve('/lib.png', png, { contentType: 'image/png' });
  cache = await createImageCache({
    env: { HOME: tmp.dir, FASTIMAGECACHE_KEY: TEST_KEY_HEX },
    settings: testSettings(tmp.dir),
  });
});
after(async () => {
  await cache.close();
  await origin.close();
  tmp.cleanup();
});

test('get() returns bytes, type, size, etag and cache status; purge() forgets', async () => {
  const url = `${origin.url}/lib.png`;
  const first = await cache.get(url);
  assert.equal(first.cacheStatus, 'MISS');
  assert.equal(first.contentType, 'image/png');
  assert.equal(first.size, png.length);
  assert.ok(first.body.equals(png));
  assert.match(first.etag, /^"[0-9a-f]+"$/);

  const second = await cache.get(url);
  assert.equal(second.cacheStatus, 'HIT');
  const chunks: Buffer[] = [];
  for await (const chunk of second.stream()) chunks.push(chunk as Buffer);
  assert.ok(Buffer.concat(chunks).equals(png));

  const stats = await cache.stats();
  assert.equal(stats.entries, 1);
  assert.ok(stats.bytes >= png.length);
  assert.ok(stats.hits >= 1 && stats.misses >= 1);

  assert.equal(await cache.purge(url), 1);
  assert.equal((await cache.get(url)).cacheStatus, 'MISS');
  assert.equal(origin.hits('/lib.png'), 2);
});

test('get() enforces the same URL policy as the server, with typed errors', async () => {
  await assert.rejects(cache.get('ftp://127.0.0.1/x.png'), (e: unknown) => e instanceof FastImageCacheError && e.code === 'scheme_denied');
  await assert.rejects(cache.get('http://10.0.0.1/x.png'), (e: unknown) => e instanceof FastImageCacheError && e.code === 'address_denied');
});

test('handler() mounts in a plain node:http app', async () => {
  const app: Server = createServer((req, res) => {
    if (req.url?.startsWith('/images/')) {
      req.url = req.url.slice('/images'.length);
      cache.handler()(req, res);
      return;
    }
    res.end('app');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  try {
    const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    const res = await fetch(`${base}/images${cache.sign(`${origin.url}/lib.png`)}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(png));
  } finally {
    await new Promise((resolve) => app.close(resolve));
  }
});

test('settings in code are validated like any other source', async () => {
  await assert.rejects(
    createImageCache({ env: { HOME: tmp.dir }, settings: { ...testSettings(join(tmp.dir, 'x')), maxRedirects: 99 } }),
    /maxRedirects/,
  );
});
