import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { CacheManager, type CacheManagerOptions } from '../../src/cache/cache-manager.ts';
import { FastImageCacheError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { deferred, manualClock, realLoader, tempStorage } from './lifecycle-helpers.ts';

let origin: Origin;
const cleanups: Array<() => Promise<void>> = [];
before(async () => {
  origin = await startOrigin();
});
after(async () => origin.close());
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  origin.reset();
});

async function setup(opts: Partial<CacheManagerOptions> = {}) {
  const clock = manualClock();
  const { storage, cleanup } = await tempStorage();
  const { loader, close } = realLoader();
  const cache = new CacheManager({ storage, loader, logger: silentLogger(), now: clock.now, ...opts });
  cleanups.push(cleanup, close, () => cache.close());
  return { cache, clock };
}

const src = (url: string) => ({ sourceUrl: url, variant: '_' });
const isCode = (code: string) => (err: unknown) => err instanceof FastImageCacheError && err.code === code;

test('a flood of requests for a missing image: one origin request, every waiter fails at once, then remembered for negativeTtl', async () => {
  const gate = deferred();
  origin.handle('/missing.png', (_req, res) => {
    void gate.promise.then(() => {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('nope');
    });
  });
  const { cache, clock } = await setup({ negativeTtlMs: 60_000 });
  const url = `${origin.url}/missing.png`;
  const flood = Array.from({ length: 50 }, () => cache.get(src(url)));
  gate.resolve();
  const outcomes = await Promise.allSettled(flood);
  for (const o of outcomes) assert.ok(o.status === 'rejected' && isCode('not_found')(o.reason));
  assert.equal(origin.hits('/missing.png'), 1);

  clock.advance(59_000);
  await assert.rejects(cache.get(src(url)), isCode('not_found'));
  await assert.rejects(cache.get({ sourceUrl: url, variant: 'w_9', transform: (s) => Promise.resolve(s) }), isCode('not_found'), 'variants of it too');
  assert.equal(origin.hits('/missing.png'), 1, 'answered from the negative cache');
  assert.equal((await cache.stats()).negativeHits, 2);

  clock.advance(2_000);
  await assert.rejects(cache.get(src(url)), isCode('not_found'));
  assert.equal(origin.hits('/missing.png'), 2, 'asked again once the TTL is over');
  assert.equal((await cache.stats()).entries, 0, 'a refusal never stores bytes');
});

test('410, not_an_image and too_large are remembered; 5xx is not', async () => {
  origin.handle('/gone.png', (_req, res) => {
    res.writeHead(410);
    res.end();
  });
  origin.serve('/html.jpg', '<!doctype html><p>not an image', { contentType: 'image/jpeg' });
  origin.serve('/huge.png', Buffer.alloc(6 * 1024 * 1024, 1), { contentType: 'image/png' });
  origin.handle('/flaky.png', (_req, res) => {
    res.writeHead(503);
    res.end();
  });
  const { cache } = await setup();
  const cases: Array<[string, string, number]> = [
    ['/gone.png', 'not_found', 1],
    ['/html.jpg', 'not_an_image', 1],
    ['/huge.png', 'too_large', 1],
    ['/flaky.png', 'origin_error', 3],
  ];
  for (const [path, code, expectedHits] of cases) {
    for (let i = 0; i < 3; i++) await assert.rejects(cache.get(src(`${origin.url}${path}`)), isCode(code), path);
    assert.equal(origin.hits(path), expectedHits, path);
  }
});

test('negativeTtl 0 turns it off; a purge forgets a remembered refusal', async () => {
  origin.handle('/later.png', (_req, res) => {
    res.writeHead(404);
    res.end();
  });
  const off = await setup({ negativeTtlMs: 0 });
  const url = `${origin.url}/later.png`;
  await assert.rejects(off.cache.get(src(url)), isCode('not_found'));
  await assert.rejects(off.cache.get(src(url)), isCode('not_found'));
  assert.equal(origin.hits('/later.png'), 2);

  const on = await setup();
  await assert.rejects(on.cache.get(src(url)), isCode('not_found'));
  origin.serve('/later.png', await makeImage('png'), { contentType: 'image/png' });
  await assert.rejects(on.cache.get(src(url)), isCode('not_found'), 'still remembered');
  await on.cache.purge(url);
  assert.equal((await on.cache.get(src(url))).status, 'MISS', 'the purge forgot the refusal');
});

test('bad client input never reaches the origin nor the negative cache', async () => {
  const { cache } = await setup();
  await assert.rejects(cache.get(src('not a url')), isCode('bad_url'));
  await assert.rejects(cache.get({ sourceUrl: `${origin.url}/x.png`, variant: 'w_1' }), isCode('internal_error'));
  assert.equal(origin.totalHits(), 0);
});
