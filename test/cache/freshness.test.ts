import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_FRESHNESS,
  freshnessState,
  judgeResponse,
  judgeRevalidation,
  mayServeStaleOnError,
  type FreshnessSettings,
} from '../../src/cache/freshness.ts';

const NOW = Date.UTC(2030, 0, 1);
const S = 1000;
/** Wide clamps, so each test sees the origin's own lifetime unless it sets them. */
const OPEN: FreshnessSettings = { ...DEFAULT_FRESHNESS, minTtlMs: 0, maxTtlMs: 365 * 86_400 * S, defaultTtlMs: 3600 * S, staleWhileRevalidateMs: 30 * S, staleIfErrorMs: 600 * S };
const ttlOf = (cacheControl: string | undefined, extra: Record<string, string> = {}, settings = OPEN) =>
  judgeResponse({ ...(cacheControl === undefined ? {} : { cacheControl }), ...extra }, NOW, settings).freshness.freshUntil - NOW;

test('max-age gives the lifetime; s-maxage wins over it for a shared cache; Expires counts from the origin Date', () => {
  assert.equal(ttlOf('max-age=120'), 120 * S);
  assert.equal(ttlOf('max-age=120, s-maxage=30'), 30 * S);
  const date = new Date(NOW).toUTCString();
  assert.equal(ttlOf(undefined, { date, expires: new Date(NOW + 600 * S).toUTCString() }), 600 * S);
  assert.equal(ttlOf('max-age=50', { date, expires: new Date(NOW + 600 * S).toUTCString() }), 50 * S, 'max-age beats Expires');
  assert.equal(ttlOf('max-age=100', { age: '40' }), 60 * S, 'time already spent in other caches counts');
});

test('clamped between minTtl and maxTtl; defaultTtl when the origin says nothing', () => {
  const settings = { ...OPEN, minTtlMs: 60 * S, maxTtlMs: 3600 * S, defaultTtlMs: 900 * S };
  assert.equal(ttlOf('max-age=5', {}, settings), 60 * S);
  assert.equal(ttlOf('max-age=999999', {}, settings), 3600 * S);
  assert.equal(ttlOf(undefined, {}, settings), 900 * S);
  assert.equal(ttlOf('public', { lastModified: new Date(NOW - 86_400 * S).toUTCString() }, settings), 900 * S, 'no heuristic guess from Last-Modified');
  assert.equal(ttlOf('no-cache', {}, settings), 60 * S, 'no-cache is a zero lifetime, then clamped');
});

test('no-store and private are served but not stored, unless ignoreOriginCacheControl', () => {
  for (const cc of ['no-store', 'private, max-age=600', 'max-age=600, no-store']) {
    assert.equal(judgeResponse({ cacheControl: cc }, NOW, OPEN).storable, false, cc);
    const ignoring = judgeResponse({ cacheControl: cc }, NOW, { ...OPEN, ignoreOriginCacheControl: true });
    assert.equal(ignoring.storable, true, cc);
    assert.equal(ignoring.freshness.freshUntil - NOW, OPEN.defaultTtlMs, 'ignoring the origin means defaultTtl');
  }
  assert.equal(judgeResponse({ cacheControl: 'public, max-age=60' }, NOW, OPEN).storable, true);
});

test('stale windows: the origin\'s stale-while-revalidate / stale-if-error, else the configured ones', () => {
  const own = judgeResponse({ cacheControl: 'max-age=10, stale-while-revalidate=20, stale-if-error=300' }, NOW, OPEN).freshness;
  assert.deepEqual(own, { freshUntil: NOW + 10 * S, staleWhileRevalidateUntil: NOW + 30 * S, staleIfErrorUntil: NOW + 310 * S, mustRevalidate: false });
  const configured = judgeResponse({ cacheControl: 'max-age=10' }, NOW, OPEN).freshness;
  assert.equal(configured.staleWhileRevalidateUntil, NOW + 40 * S);
  assert.equal(configured.staleIfErrorUntil, NOW + 610 * S);

  assert.equal(freshnessState(own, NOW + 9 * S), 'fresh');
  assert.equal(freshnessState(own, NOW + 10 * S), 'stale-while-revalidate');
  assert.equal(freshnessState(own, NOW + 30 * S), 'stale');
  assert.equal(mayServeStaleOnError(own, NOW + 309 * S), true);
  assert.equal(mayServeStaleOnError(own, NOW + 310 * S), false);
});

test('must-revalidate, proxy-revalidate and no-cache forbid every stale serving', () => {
  for (const cc of ['max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60', 'max-age=10, proxy-revalidate', 'no-cache, stale-if-error=60']) {
    const f = judgeResponse({ cacheControl: cc }, NOW, OPEN).freshness;
    assert.equal(f.mustRevalidate, true, cc);
    assert.equal(freshnessState(f, f.freshUntil), 'stale', cc);
    assert.equal(mayServeStaleOnError(f, f.freshUntil), false, cc);
  }
});

test('a 304 merges headers and starts a new lifetime; a 304 for another strong validator does not match', () => {
  const stored = { etag: '"v1"', cacheControl: 'max-age=60', age: '50' };
  const later = NOW + 3600 * S;
  const ok = judgeRevalidation(stored, { etag: '"v1"', cacheControl: 'max-age=300' }, later, OPEN);
  assert.equal(ok.matches, true);
  assert.equal(ok.freshness.freshUntil, later + 300 * S, 'new max-age from the 304, the old Age forgotten');
  assert.equal(ok.origin.etag, '"v1"');
  assert.equal(ok.origin.cacheControl, 'max-age=300');

  const kept = judgeRevalidation(stored, { etag: '"v1"' }, later, OPEN);
  assert.equal(kept.freshness.freshUntil, later + 60 * S, 'without a new Cache-Control the stored one applies again');

  assert.equal(judgeRevalidation(stored, { etag: '"v2"' }, later, OPEN).matches, false);
});
