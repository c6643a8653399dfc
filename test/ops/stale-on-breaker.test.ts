/**
 * stale-if-error covers every kind of origin trouble: when the origin host's
 * circuit breaker is open (origin_unavailable) or its fetch slots are full
 * (overloaded), an expired entry within its stale-if-error window is served
 * (X-Cache: STALE) instead of a 503.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ServerResponse } from 'node:http';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startService, type TestService } from './service-helper.ts';

let proxy: TestService;
let png: Buffer;
const origins: Origin[] = [];

before(async () => {
  png = await makeImage('png', 24, 24);
  proxy = await startService({
    settings: {
      rateLimit: { perSecond: 0 },
      // Stored, but expired at once; no stale-while-revalidate, so an expired entry goes to the origin first.
      minTtl: 0,
      staleWhileRevalidate: 0,
      circuitBreaker: { failures: 2, cooldownMs: 60_000 },
      originLimits: { maxConcurrentPerHost: 1, maxQueuePerHost: 0 },
    },
  });
});
after(async () => {
  await proxy.close();
  for (const o of origins) await o.close();
});

/** Each test its own origin host: breakers and fetch slots are per host. */
async function newOrigin(): Promise<Origin> {
  const origin = await startOrigin();
  origins.push(origin);
  return origin;
}

function image(res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length, 'Cache-Control': 'max-age=0, stale-if-error=600' });
  res.end(png);
}

async function get(url: string): Promise<{ status: number; xCache: string | null; error?: string; body: Buffer }> {
  const res = await fetch(url);
  const body = Buffer.from(await res.arrayBuffer());
  const error = res.headers.get('content-type')?.startsWith('application/json') ? (JSON.parse(body.toString()) as { error: string }).error : undefined;
  return { status: res.status, xCache: res.headers.get('x-cache'), body, ...(error ? { error } : {}) };
}

test('the origin fails until its breaker opens: the next request gets the stale entry, without reaching the origin', async () => {
  const origin = await newOrigin();
  let failing = false;
  origin.handle('/cat.png', (_req, res) => {
    if (!failing) {
      image(res);
      return;
    }
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end('down');
  });
  const url = proxy.signedUrl(`${origin.url}/cat.png`);
  const first = await get(url);
  assert.equal(first.xCache, 'MISS');

  failing = true;
  // Two 5xx answers: served stale (origin_error), and the breaker (failures: 2) opens.
  for (let i = 0; i < 2; i++) assert.equal((await get(url)).xCache, 'STALE');
  assert.equal(origin.hits('/cat.png'), 3);
  assert.deepEqual((await proxy.service.stats()).unhealthyOrigins.map((o) => o.state), ['open']);

  // Breaker open: origin_unavailable, which the stale entry now hides.
  const stale = await get(url);
  assert.equal(stale.status, 200);
  assert.equal(stale.xCache, 'STALE');
  assert.deepEqual(stale.body, first.body);
  assert.equal(origin.hits('/cat.png'), 3, 'the open breaker kept the request from the origin');

  // Without a stored copy the breaker's refusal stands.
  const uncached = await get(proxy.signedUrl(`${origin.url}/other.png`));
  assert.equal(uncached.status, 503);
  assert.equal(uncached.error, 'origin_unavailable');
});

test('origin fetch slots full (overloaded): the expired entry is served stale instead of a 503', async () => {
  const origin = await newOrigin();
  origin.handle('/dog.png', (_req, res) => { image(res); });
  let releaseSlow: () => void = () => {};
  origin.handle('/slow.png', (_req, res) => {
    releaseSlow = () => { image(res); };
  });
  const url = proxy.signedUrl(`${origin.url}/dog.png`);
  const first = await get(url);
  assert.equal(first.xCache, 'MISS');

  // The host's one fetch slot (maxConcurrentPerHost: 1, no queue) is taken by a slow fetch.
  const slow = get(proxy.signedUrl(`${origin.url}/slow.png`));
  while (origin.hits('/slow.png') === 0) await new Promise((resolve) => setTimeout(resolve, 5));

  const stale = await get(url);
  assert.equal(stale.status, 200);
  assert.equal(stale.xCache, 'STALE');
  assert.deepEqual(stale.body, first.body);
  assert.equal(origin.hits('/dog.png'), 1, 'refused before reaching the origin');

  // Without a stored copy: 503 overloaded, as before.
  const uncached = await get(proxy.signedUrl(`${origin.url}/new.png`));
  assert.equal(uncached.status, 503);
  assert.equal(uncached.error, 'overloaded');

  releaseSlow();
  assert.equal((await slow).status, 200);
});
