import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { FastImageCacheError } from '../../src/errors.ts';
import { originFailureKind } from '../../src/download/resilience.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startService, type TestService } from './service-helper.ts';

async function get(url: string): Promise<{ status: number; error?: string; retryAfter: string | null }> {
  const res = await fetch(url);
  const retryAfter = res.headers.get('retry-after');
  if (res.headers.get('content-type')?.startsWith('application/json')) {
    return { status: res.status, error: ((await res.json()) as { error: string }).error, retryAfter };
  }
  await res.arrayBuffer();
  return { status: res.status, retryAfter };
}

/** Serves `body` as a PNG after `delayMs`. */
function failing(origin: Origin, path: string, status: number): void {
  origin.handle(path, (_req, res) => {
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end('down');
  });
}

test('failure kinds: only 5xx, timeouts and broken connections trip a breaker', () => {
  assert.equal(originFailureKind(new FastImageCacheError('origin_error', 'origin said 503')), 'status_5xx');
  assert.equal(originFailureKind(new FastImageCacheError('origin_error', 'origin said 429')), 'status_5xx');
  assert.equal(originFailureKind(new FastImageCacheError('origin_error', 'origin said 403')), 'status_4xx');
  assert.equal(originFailureKind(new FastImageCacheError('origin_error', 'ECONNREFUSED: connect ECONNREFUSED')), 'connection');
  assert.equal(originFailureKind(new FastImageCacheError('origin_error', 'more than 3 redirects')), 'protocol');
  assert.equal(originFailureKind(new FastImageCacheError('origin_timeout', 'over 10 ms')), 'timeout');
  assert.equal(originFailureKind(new FastImageCacheError('not_found', 'origin said 404')), 'not_found');
});

describe('origin fetch limits', () => {
  let origin: Origin;
  let other: Origin;
  let proxy: TestService;
  let png: Buffer;

  before(async () => {
    origin = await startOrigin();
    other = await startOrigin();
    png = await makeImage('png', 8, 8);
    proxy = await startService({
      settings: { rateLimit: { perSecond: 0 }, originLimits: { maxConcurrent: 2, maxQueue: 1, maxConcurrentPerHost: 1, maxQueuePerHost: 1 } },
    });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
    await other.close();
  });

  test('beyond the per-host slot and its queue: 503 overloaded with Retry-After; the queued one is served', async () => {
    for (const name of ['a', 'b', 'c']) origin.slowHeaders(`/${name}.png`, 300, png);
    const running = get(proxy.signedUrl(`${origin.url}/a.png`));
    await sleep(50);
    const queued = get(proxy.signedUrl(`${origin.url}/b.png`));
    await sleep(50);
    const refused = await get(proxy.signedUrl(`${origin.url}/c.png`));
    assert.equal(refused.status, 503);
    assert.equal(refused.error, 'overloaded');
    assert.equal(refused.retryAfter, '1');
    assert.equal(origin.hits('/c.png'), 0, 'a refused fetch never reaches the origin');
    // Another host has its own slot, so it is not held up by this one.
    other.serve('/d.png', png, { contentType: 'image/png' });
    assert.equal((await get(proxy.signedUrl(`${other.url}/d.png`))).status, 200);
    assert.equal((await running).status, 200);
    assert.equal((await queued).status, 200);
    const metric = await proxy.metrics.registry.getSingleMetricAsString('fastimagecache_overload_refusals_total');
    assert.match(metric, /scope="host"\} 1/);
  });

  test('beyond the global slots and the global queue: 503 overloaded', async () => {
    const hosts = [origin, other];
    for (const o of hosts) for (const name of ['g1', 'g2']) o.slowHeaders(`/${name}.png`, 300, png);
    const third = await startOrigin();
    try {
      third.slowHeaders('/g3.png', 300, png);
      // Two run (one per host), the third host's fetch queues globally, the fourth finds the queue full.
      const a = get(proxy.signedUrl(`${origin.url}/g1.png`));
      const b = get(proxy.signedUrl(`${other.url}/g1.png`));
      await sleep(50);
      const c = get(proxy.signedUrl(`${third.url}/g3.png`));
      await sleep(50);
      const fourth = await startOrigin();
      try {
        fourth.serve('/g4.png', png, { contentType: 'image/png' });
        const refused = await get(proxy.signedUrl(`${fourth.url}/g4.png`));
        assert.equal(refused.status, 503);
        assert.equal(refused.error, 'overloaded');
      } finally {
        await fourth.close();
      }
      assert.deepEqual([(await a).status, (await b).status, (await c).status], [200, 200, 200]);
    } finally {
      await third.close();
    }
  });
});

describe('per-origin circuit breaker', () => {
  let origin: Origin;
  let notFoundOrigin: Origin;
  let proxy: TestService;
  let png: Buffer;
  const COOLDOWN_MS = 400;

  before(async () => {
    origin = await startOrigin();
    notFoundOrigin = await startOrigin();
    png = await makeImage('png', 8, 8);
    proxy = await startService({
      settings: { rateLimit: { perSecond: 0 }, circuitBreaker: { failures: 2, cooldownMs: COOLDOWN_MS } },
    });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
    await notFoundOrigin.close();
  });

  async function breakerGauge(state: string): Promise<number> {
    const text = await proxy.metrics.registry.getSingleMetricAsString('fastimagecache_circuit_breakers');
    return Number(new RegExp(`state="${state}"\\} (\\d+)`).exec(text)?.[1]);
  }

  test('client errors (404) never open it', async () => {
    for (let i = 0; i < 4; i++) {
      const res = await get(proxy.signedUrl(`${notFoundOrigin.url}/missing-${i}.png`));
      assert.equal(res.status, 404);
    }
    assert.equal(notFoundOrigin.totalHits(), 4);
  });

  test('open after repeated 5xx, then one half-open probe, closed again when it succeeds', async () => {
    failing(origin, '/x1.png', 500);
    failing(origin, '/x2.png', 503);
    assert.equal((await get(proxy.signedUrl(`${origin.url}/x1.png`))).error, 'origin_error');
    assert.equal((await get(proxy.signedUrl(`${origin.url}/x2.png`))).error, 'origin_error');

    // Open: the host is skipped without asking it.
    const refused = await get(proxy.signedUrl(`${origin.url}/x3.png`));
    assert.equal(refused.status, 503);
    assert.equal(refused.error, 'origin_unavailable');
    assert.equal(refused.retryAfter, '1');
    assert.equal(origin.totalHits(), 2);
    assert.equal(await breakerGauge('open'), 1);
    const stats = await proxy.service.stats();
    assert.deepEqual(stats.unhealthyOrigins, [{ host: new URL(origin.url).host, state: 'open' }]);

    await sleep(COOLDOWN_MS + 50);
    // Half-open: the first request is the single probe; another one waits for its verdict.
    origin.slowHeaders('/probe.png', 250, png);
    origin.serve('/waiter.png', png, { contentType: 'image/png' });
    const probe = get(proxy.signedUrl(`${origin.url}/probe.png`));
    await sleep(60);
    const waiter = get(proxy.signedUrl(`${origin.url}/waiter.png`));
    await sleep(60);
    assert.equal(await breakerGauge('half_open'), 1);
    assert.equal(origin.hits('/waiter.png'), 0, 'only the probe reaches the origin while half-open');
    assert.equal((await probe).status, 200);
    assert.equal((await waiter).status, 200);
    assert.equal(await breakerGauge('open'), 0);
    assert.equal(await breakerGauge('half_open'), 0);
    assert.deepEqual((await proxy.service.stats()).unhealthyOrigins, []);
  });

  test('a failed probe opens it again for another cool-down', async () => {
    failing(origin, '/y1.png', 502);
    failing(origin, '/y2.png', 502);
    await get(proxy.signedUrl(`${origin.url}/y1.png`));
    await get(proxy.signedUrl(`${origin.url}/y2.png`));
    assert.equal((await get(proxy.signedUrl(`${origin.url}/y3.png`))).error, 'origin_unavailable');
    await sleep(COOLDOWN_MS + 50);
    const hitsBefore = origin.totalHits();
    assert.equal((await get(proxy.signedUrl(`${origin.url}/y1.png`))).error, 'origin_error', 'the probe fails');
    assert.equal((await get(proxy.signedUrl(`${origin.url}/y4.png`))).error, 'origin_unavailable', 'open again');
    assert.equal(origin.totalHits(), hitsBefore + 1);
    const transitions = await proxy.metrics.registry.getSingleMetricAsString('fastimagecache_circuit_breaker_transitions_total');
    assert.match(transitions, /state="half_open"\} 2/);
    assert.match(transitions, /state="open"\} 3/);
  });
});
