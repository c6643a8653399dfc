/** Freshness as clients see it through the real server: X-Cache REVALIDATED and STALE, and limits from the settings. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

let origin: Origin;
let proxy: TestProxy;
let png: Buffer;

before(async () => {
  origin = await startOrigin();
  png = await makeImage('png');
  // minTtl 0: the origin's own lifetimes apply as they are.
  proxy = await startProxy({ minTtl: 0, staleWhileRevalidate: 0 });
});
after(async () => {
  await proxy.close();
  await origin.close();
});

async function xcache(path: string): Promise<string | null> {
  const res = await fetch(proxy.signedUrl(`${origin.url}${path}`));
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(png));
  return res.headers.get('x-cache');
}

test('an expired entry with an ETag is revalidated: X-Cache REVALIDATED, the origin answers 304', async () => {
  origin.serve('/rv.png', png, { contentType: 'image/png', headers: { ETag: '"rv1"', 'Cache-Control': 'max-age=0' } });
  assert.equal(await xcache('/rv.png'), 'MISS');
  assert.equal(await xcache('/rv.png'), 'REVALIDATED');
  assert.equal(origin.lastRequestHeaders('/rv.png')?.['if-none-match'], '"rv1"');
});

test('stale-while-revalidate from the origin: X-Cache STALE at once, refreshed in the background', async () => {
  origin.serve('/swr.png', png, { contentType: 'image/png', headers: { ETag: '"s1"', 'Cache-Control': 'max-age=0, stale-while-revalidate=60' } });
  assert.equal(await xcache('/swr.png'), 'MISS');
  assert.equal(await xcache('/swr.png'), 'STALE');
  for (let i = 0; i < 50 && origin.hits('/swr.png') < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(origin.hits('/swr.png'), 2, 'one background refresh');
});

test('a 404 is remembered for negativeTtl: a second request does not reach the origin', async () => {
  const first = await fetch(proxy.signedUrl(`${origin.url}/nothing-here.png`));
  assert.equal(first.status, 404);
  const second = await fetch(proxy.signedUrl(`${origin.url}/nothing-here.png`));
  assert.equal(second.status, 404);
  assert.equal(origin.hits('/nothing-here.png'), 1);
});

test('no-store: served, never stored', async () => {
  origin.serve('/ns.png', png, { contentType: 'image/png', headers: { 'Cache-Control': 'no-store' } });
  assert.equal(await xcache('/ns.png'), 'MISS');
  assert.equal(await xcache('/ns.png'), 'MISS');
  assert.equal(origin.hits('/ns.png'), 2);
});
