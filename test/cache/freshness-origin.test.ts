/**
 * Freshness rules end to end below HTTP: a real local origin that sets the
 * caching headers, the real loader (downloader + image check), a real cache
 * directory, and a clock that only moves when the test says so.
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CacheManager, type CacheManagerOptions, type Transform } from '../../src/cache/cache-manager.ts';
import { DEFAULT_FRESHNESS } from '../../src/cache/freshness.ts';
import { FastImageCacheError } from '../../src/errors.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { deferred, manualClock, realLoader, tempStorage, type ManualClock } from './lifecycle-helpers.ts';

let origin: Origin;
let v1: Buffer;
let v2: Buffer;
const cleanups: Array<() => Promise<void>> = [];

before(async () => {
  origin = await startOrigin();
  v1 = await makeImage('png', 32, 24);
  v2 = await makeImage('png', 40, 30);
});
after(async () => origin.close());
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** An origin resource whose body, validator and headers the test changes; counts full bodies and 304s. */
function resource(path: string, init: { body: Buffer; etag?: string; cacheControl?: string }) {
  const state = { ...init, status: 200, full: 0, notModified: 0, gate: undefined as Promise<void> | undefined };
  origin.handle(path, (req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      if (state.gate) await state.gate;
      if (state.status !== 200) {
        res.writeHead(state.status, { 'Content-Type': 'text/plain' });
        res.end('trouble');
        return;
      }
      const headers: Record<string, string> = {};
      if (state.etag) headers.ETag = state.etag;
      if (state.cacheControl) headers['Cache-Control'] = state.cacheControl;
      if (state.etag && req.headers['if-none-match'] === state.etag) {
        state.notModified += 1;
        res.writeHead(304, headers);
        res.end();
        return;
      }
      state.full += 1;
      res.writeHead(200, { ...headers, 'Content-Type': 'image/png', 'Content-Length': state.body.length });
      res.end(state.body);
    })();
  });
  return { url: `${origin.url}${path}`, state };
}

async function setup(opts: Partial<CacheManagerOptions> = {}): Promise<{ cache: CacheManager; clock: ManualClock }> {
  const clock = manualClock();
  const { storage, cleanup } = await tempStorage();
  const { loader, close } = realLoader();
  const cache = new CacheManager({
    storage,
    loader,
    logger: (await import('../../src/log.ts')).silentLogger(),
    now: clock.now,
    memoryCacheBytes: 0,
    freshness: { ...DEFAULT_FRESHNESS, minTtlMs: 0, staleWhileRevalidateMs: 0, staleIfErrorMs: 0, ...opts.freshness },
    ...opts,
  });
  cleanups.push(cleanup, close, () => cache.close());
  return { cache, clock };
}

const S = 1000;
const src = (url: string) => ({ sourceUrl: url, variant: '_' });

function tagging(tag: string, calls: string[]): Transform {
  return (source) => {
    calls.push(tag);
    return Promise.resolve({ body: Buffer.concat([Buffer.from(tag), source.body]), contentType: 'image/png' });
  };
}

test('max-age: HIT while fresh, then a conditional request; a 304 is REVALIDATED without downloading the body', async () => {
  const { url, state } = resource('/ttl.png', { body: v1, etag: '"v1"', cacheControl: 'max-age=10' });
  const { cache, clock } = await setup();
  assert.equal((await cache.get(src(url))).status, 'MISS');
  clock.advance(9 * S);
  assert.equal((await cache.get(src(url))).status, 'HIT');
  assert.deepEqual([state.full, state.notModified], [1, 0]);

  clock.advance(2 * S);
  const revalidated = await cache.get(src(url));
  assert.equal(revalidated.status, 'REVALIDATED');
  assert.ok(revalidated.body.equals(v1));
  assert.deepEqual([state.full, state.notModified], [1, 1], 'one body download in all');
  assert.equal(origin.lastRequestHeaders('/ttl.png')?.['if-none-match'], '"v1"');

  clock.advance(9 * S);
  assert.equal((await cache.get(src(url))).status, 'HIT', 'the 304 started a new lifetime');
  assert.deepEqual([state.full, state.notModified], [1, 1]);
});

test('defaultTtl when the origin is silent, clamped by minTtl / maxTtl when it is not', async () => {
  const silent = resource('/silent.png', { body: v1, etag: '"s"' });
  const shouty = resource('/short.png', { body: v1, etag: '"t"', cacheControl: 'max-age=1' });
  const { cache, clock } = await setup({ freshness: { ...DEFAULT_FRESHNESS, defaultTtlMs: 100 * S, minTtlMs: 30 * S, staleWhileRevalidateMs: 0, staleIfErrorMs: 0 } });
  await cache.get(src(silent.url));
  await cache.get(src(shouty.url));
  clock.advance(29 * S);
  assert.equal((await cache.get(src(shouty.url))).status, 'HIT', 'max-age=1 raised to minTtl');
  clock.advance(2 * S);
  assert.equal((await cache.get(src(shouty.url))).status, 'REVALIDATED');
  clock.advance(68 * S);
  assert.equal((await cache.get(src(silent.url))).status, 'HIT');
  clock.advance(2 * S);
  assert.equal((await cache.get(src(silent.url))).status, 'REVALIDATED');
});

test('variants share their source\'s freshness: a 304 refreshes all of them, a changed validator invalidates all of them', async () => {
  const { url, state } = resource('/family.png', { body: v1, etag: '"v1"', cacheControl: 'max-age=10' });
  const { cache, clock } = await setup();
  const transforms: string[] = [];
  const small = { sourceUrl: url, variant: 'w_10', transform: tagging('w_10', transforms) };
  const large = { sourceUrl: url, variant: 'w_20', transform: tagging('w_20', transforms) };
  await cache.get(small);
  await cache.get(large);
  assert.deepEqual([state.full, transforms.length], [1, 2]);

  clock.advance(11 * S);
  assert.equal((await cache.get(small)).status, 'REVALIDATED');
  assert.equal((await cache.get(large)).status, 'REVALIDATED');
  assert.equal((await cache.get(src(url))).status, 'HIT');
  assert.deepEqual([state.full, state.notModified, transforms.length], [1, 1, 2], 'one 304 for the whole family, no transform');

  state.body = v2;
  state.etag = '"v2"';
  clock.advance(11 * S);
  const changed = await cache.get(large);
  assert.equal(changed.status, 'MISS');
  assert.ok(changed.body.equals(Buffer.concat([Buffer.from('w_20'), v2])), 'made from the new source bytes');
  const other = await cache.get(small);
  assert.equal(other.status, 'MISS', 'the other variant of the old bytes is gone too');
  assert.ok(other.body.equals(Buffer.concat([Buffer.from('w_10'), v2])));
  assert.deepEqual([state.full, transforms.length], [2, 4]);
});

test('must-revalidate: never served stale, not even when the origin fails', async () => {
  const { url, state } = resource('/strict.png', { body: v1, etag: '"m"', cacheControl: 'max-age=10, must-revalidate, stale-if-error=600' });
  const { cache, clock } = await setup({ freshness: { ...DEFAULT_FRESHNESS, minTtlMs: 0, staleWhileRevalidateMs: 60 * S, staleIfErrorMs: 600 * S } });
  await cache.get(src(url));
  clock.advance(11 * S);
  state.status = 500;
  await assert.rejects(cache.get(src(url)), (err: unknown) => err instanceof FastImageCacheError && err.code === 'origin_error');
  state.status = 200;
  assert.equal((await cache.get(src(url))).status, 'REVALIDATED', 'revalidated synchronously, not served stale');
});

test('stale-while-revalidate: served STALE at once while exactly one background refresh runs', async () => {
  const { url, state } = resource('/swr.png', { body: v1, etag: '"w"', cacheControl: 'max-age=10, stale-while-revalidate=60' });
  const { cache, clock } = await setup();
  await cache.get(src(url));
  clock.advance(30 * S);

  const gate = deferred();
  state.gate = gate.promise; // the origin holds the refresh until every request below was answered
  const answers = await Promise.all(Array.from({ length: 20 }, () => cache.get(src(url))));
  for (const a of answers) {
    assert.equal(a.status, 'STALE');
    assert.ok(a.body.equals(v1));
  }
  gate.resolve();
  state.gate = undefined;
  await cache.ready(); // the background refresh settles
  assert.equal(origin.hits('/swr.png'), 2, 'the first fetch and exactly one refresh');
  assert.equal(state.notModified, 1);
  assert.equal((await cache.get(src(url))).status, 'HIT', 'fresh again after the refresh');

  clock.advance(80 * S); // past the window: no longer served stale
  assert.equal((await cache.get(src(url))).status, 'REVALIDATED');
});

test('stale-if-error: an expired entry is served when the origin fails, within the window only', async () => {
  const { url, state } = resource('/sie.png', { body: v1, etag: '"e"', cacheControl: 'max-age=10, stale-if-error=300' });
  const { cache, clock } = await setup();
  await cache.get(src(url));
  clock.advance(20 * S);
  state.status = 503;
  const stale = await cache.get(src(url));
  assert.equal(stale.status, 'STALE');
  assert.ok(stale.body.equals(v1));

  clock.advance(300 * S);
  await assert.rejects(cache.get(src(url)), (err: unknown) => err instanceof FastImageCacheError && err.code === 'origin_error');
  state.status = 200;
  assert.equal((await cache.get(src(url))).status, 'REVALIDATED');
});

test('an origin 404 on revalidation removes the entry and its variants; it is not served stale', async () => {
  const { url, state } = resource('/gone.png', { body: v1, etag: '"g"', cacheControl: 'max-age=10, stale-if-error=300' });
  const { cache, clock } = await setup();
  const calls: string[] = [];
  await cache.get({ sourceUrl: url, variant: 'w_5', transform: tagging('w_5', calls) });
  clock.advance(20 * S);
  state.status = 404;
  await assert.rejects(cache.get(src(url)), (err: unknown) => err instanceof FastImageCacheError && err.code === 'not_found');
  assert.equal((await cache.stats()).entries, 0, 'source and variant removed');
});

test('no-store and private are served but never stored; ignoreOriginCacheControl stores them', async () => {
  const noStore = resource('/nostore.png', { body: v1, cacheControl: 'no-store' });
  const priv = resource('/private.png', { body: v1, cacheControl: 'private, max-age=600' });
  const { cache } = await setup();
  for (const r of [noStore, priv]) {
    assert.equal((await cache.get(src(r.url))).status, 'MISS');
    const variant = await cache.get({ sourceUrl: r.url, variant: 'w_1', transform: tagging('w_1', []) });
    assert.equal(variant.status, 'MISS');
    assert.equal((await cache.get(src(r.url))).status, 'MISS');
  }
  assert.equal(noStore.state.full, 3);
  assert.equal((await cache.stats()).entries, 0, 'not a byte stored, variants included');

  const { cache: ignoring } = await setup({ freshness: { ...DEFAULT_FRESHNESS, ignoreOriginCacheControl: true } });
  await ignoring.get(src(noStore.url));
  assert.equal((await ignoring.get(src(noStore.url))).status, 'HIT');
});
