import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createClientAddressResolver, rateLimitKey } from '../../src/server/client-address.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startService, type TestService } from './service-helper.ts';

describe('client address from X-Forwarded-For', () => {
  const resolve = createClientAddressResolver(['10.0.0.0/8', '::1/128']);

  test('an untrusted peer is the client, whatever header it sends', () => {
    assert.equal(resolve('203.0.113.9', '198.51.100.1'), '203.0.113.9');
    assert.equal(resolve('::ffff:203.0.113.9', '10.1.1.1'), '203.0.113.9');
  });

  test('from a trusted peer the chain is walked from the right past trusted hops', () => {
    assert.equal(resolve('10.0.0.2', '198.51.100.7'), '198.51.100.7');
    assert.equal(resolve('10.0.0.2', '198.51.100.7, 10.0.0.5'), '198.51.100.7');
    // The client may prepend anything; only the hop our trusted proxy appended counts.
    assert.equal(resolve('10.0.0.2', '1.2.3.4, 198.51.100.7'), '198.51.100.7');
    assert.equal(resolve('10.0.0.2', ['1.2.3.4', '198.51.100.7, 10.9.9.9']), '198.51.100.7');
    assert.equal(resolve('::1', '[2001:db8::5]:443'), '2001:db8::5');
  });

  test('garbage in the chain stops the walk at the last trusted hop; no header means the peer', () => {
    assert.equal(resolve('10.0.0.2', 'evil, not-an-ip'), '10.0.0.2');
    assert.equal(resolve('10.0.0.2', '0x7f.1, 10.0.0.3'), '10.0.0.3');
    assert.equal(resolve('10.0.0.2', undefined), '10.0.0.2');
  });

  test('without trusted proxies the header is ignored', () => {
    assert.equal(createClientAddressResolver([])('10.0.0.2', '198.51.100.7'), '10.0.0.2');
  });

  test('IPv6 clients are counted per /64', () => {
    assert.equal(rateLimitKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(rateLimitKey('2001:db8:1:2:bbbb::9'), '2001:db8:1:2::/64');
    assert.equal(rateLimitKey('192.0.2.1'), '192.0.2.1');
  });
});

describe('rate limiting per client', () => {
  let origin: Origin;
  let proxy: TestService;
  let trustingProxy: TestService;

  before(async () => {
    origin = await startOrigin();
    origin.serve('/cat.png', await makeImage('png', 8, 8), { contentType: 'image/png' });
    // One request per second plus a burst of two: three pass at once, the fourth is refused.
    proxy = await startService({ settings: { rateLimit: { perSecond: 1, burst: 2 } } });
    trustingProxy = await startService({ settings: { rateLimit: { perSecond: 1, burst: 1 }, trustedProxies: ['127.0.0.1/32'] } });
  });
  after(async () => {
    await proxy.close();
    await trustingProxy.close();
    await origin.close();
  });

  test('beyond rate and burst: 429 rate_limited with Retry-After; cache hits count too; health checks never', async () => {
    const url = proxy.signedUrl(`${origin.url}/cat.png`);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(url);
      await res.arrayBuffer();
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [200, 200, 200]);
    assert.equal(origin.hits('/cat.png'), 1, 'two of the three were cache hits, and still counted');

    const refused = await fetch(url);
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as { error: string }).error, 'rate_limited');
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2, `Retry-After ${retryAfter}`);
    assert.equal(origin.hits('/cat.png'), 1);

    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    const spoofed = await fetch(url, { headers: { 'X-Forwarded-For': '198.51.100.23' } });
    await spoofed.arrayBuffer();
    assert.equal(spoofed.status, 429);

    for (const path of ['/healthz', '/readyz']) {
      const res = await fetch(`${proxy.url}${path}`);
      await res.arrayBuffer();
      assert.equal(res.status, 200, `${path} is not limited`);
    }
    const text = await proxy.metrics.registry.getSingleMetricAsString('fastimagecache_rate_limit_refusals_total');
    assert.match(text, /listener="main"\} 2/);
  });

  test('behind a trusted proxy each forwarded client has its own budget', async () => {
    const url = trustingProxy.signedUrl(`${origin.url}/cat.png`);
    const as = async (client: string) => {
      const res = await fetch(url, { headers: { 'X-Forwarded-For': client } });
      await res.arrayBuffer();
      return res.status;
    };
    assert.deepEqual([await as('198.51.100.1'), await as('198.51.100.1'), await as('198.51.100.1')], [200, 200, 429]);
    // Another client behind the same proxy is untouched by the first one's refusals.
    assert.equal(await as('198.51.100.2'), 200);
    // The client cannot escape by prepending addresses: the rightmost untrusted hop is what counts.
    assert.equal(await as('203.0.113.50, 198.51.100.1'), 429);
  });
});

describe('listening-side limits', () => {
  let proxy: TestService;
  before(async () => {
    proxy = await startService({ settings: { server: { maxUrlLength: 1024, headersTimeoutMs: 300, maxHeaderBytes: 4096 } } });
  });
  after(() => proxy.close());

  test('a URL over maxUrlLength is 414 uri_too_long before anything else', async () => {
    const res = await fetch(`${proxy.url}/i/${'a'.repeat(1100)}`);
    assert.equal(res.status, 414);
    assert.equal(((await res.json()) as { error: string }).error, 'uri_too_long');
    const ok = await fetch(`${proxy.url}/healthz?${'a'.repeat(900)}`);
    await ok.arrayBuffer();
    assert.equal(ok.status, 200);
  });

  test('headers over maxHeaderBytes are refused with 431', async () => {
    const res = await fetch(`${proxy.url}/healthz`, { headers: { 'X-Big': 'b'.repeat(5000) } });
    await res.arrayBuffer();
    assert.equal(res.status, 431);
  });

  test('a client that never finishes its headers is cut off after headersTimeoutMs', async () => {
    const { port } = new URL(proxy.url);
    const started = Date.now();
    const outcome = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1', () => socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: '));
      let received = '';
      socket.on('data', (d: Buffer) => (received += d.toString()));
      socket.on('close', () => { resolve(received); });
      socket.on('error', () => { resolve(received); });
      setTimeout(() => {
        socket.destroy();
        resolve('still open');
      }, 5_000).unref();
    });
    assert.notEqual(outcome, 'still open');
    assert.match(outcome, /^HTTP\/1\.1 408/);
    assert.ok(Date.now() - started < 3_000, 'cut off promptly');
  });
});
