import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EnvHttpProxyAgent } from 'undici';
import { createDownloader } from '../../src/download/downloader.ts';
import type { Downloader, DownloadPolicy, FetchRequest } from '../../src/download/types.ts';
import { FastImageCacheError, type ErrorCode } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { loopbackPolicy } from '../helpers/download-policy.ts';
import { expectRefusal } from '../helpers/refusal.ts';

/** The loopback origin let through explicitly, as an operator would have to. */
const localPolicy = loopbackPolicy;

let origin: Origin;
const downloaders: Downloader[] = [];

function downloader(overrides: Partial<DownloadPolicy> = {}): Downloader {
  const d = createDownloader(localPolicy(overrides), silentLogger());
  downloaders.push(d);
  return d;
}

function get(d: Downloader, path: string, extra: Omit<FetchRequest, 'url'> = {}) {
  return d.fetch({ url: new URL(path, origin.url), ...extra });
}

async function timed<T>(work: Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await work;
  return [value, performance.now() - start];
}

before(async () => {
  origin = await startOrigin();
});

afterEach(() => {
  origin.reset();
});

after(async () => {
  await Promise.all(downloaders.map((d) => d.close().catch(() => {})));
  await origin.close();
});

describe('successful fetches', () => {
  test('returns the bytes and keeps only the caching headers', async () => {
    const body = Buffer.from('\xff\xd8\xff\xe0 pretend jpeg', 'latin1');
    origin.serve('/photo.jpg', body, {
      contentType: 'image/jpeg',
      headers: {
        ETag: '"abc"',
        'Last-Modified': 'Wed, 21 Oct 2015 07:28:00 GMT',
        'Cache-Control': 'public, max-age=600',
        Expires: 'Thu, 22 Oct 2015 07:28:00 GMT',
        Age: '12',
        'Set-Cookie': 'session=secret',
        'X-Internal': 'nope',
        'Content-Disposition': 'attachment',
      },
    });
    const result = await get(downloader(), '/photo.jpg');
    assert.equal(result.status, 200);
    assert.deepEqual(result.body, body);
    assert.equal(result.finalUrl, `${origin.url}/photo.jpg`);
    assert.equal(result.redirects, 0);
    const { date, ...rest } = result.headers;
    assert.ok(date, 'Date is kept');
    assert.deepEqual(rest, {
      contentType: 'image/jpeg',
      etag: '"abc"',
      lastModified: 'Wed, 21 Oct 2015 07:28:00 GMT',
      cacheControl: 'public, max-age=600',
      expires: 'Thu, 22 Oct 2015 07:28:00 GMT',
      age: '12',
    });
  });

  test('sends only the documented headers, whatever the request carries', async () => {
    origin.serve('/h.png', 'png', { contentType: 'image/png' });
    await get(downloader(), '/h.png');
    const seen = origin.lastRequestHeaders('/h.png') ?? {};
    assert.deepEqual(Object.keys(seen).sort(), ['accept', 'accept-encoding', 'connection', 'host', 'user-agent']);
    assert.equal(seen['user-agent'], 'fastimagecache-test/1.0');
    assert.match(seen['accept'] ?? '', /^image\/\*/);
    assert.equal(seen['accept-encoding'], 'identity');
    assert.equal(seen['host'], `127.0.0.1:${origin.port}`);
  });

  test('a body of exactly maxBytes is accepted', async () => {
    origin.serve('/exact.jpg', Buffer.alloc(1000, 1), { contentType: 'image/jpeg' });
    const result = await get(downloader({ maxBytes: 1000 }), '/exact.jpg');
    assert.equal(result.body.length, 1000);
  });

  test('a chunked body without Content-Length is read whole', async () => {
    origin.handle('/chunked.jpg', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      for (let i = 0; i < 10; i++) res.write('abcd');
      res.end();
    });
    const result = await get(downloader(), '/chunked.jpg');
    assert.equal(result.body.toString(), 'abcd'.repeat(10));
  });
});

describe('conditional requests', () => {
  test('a matching ETag gets 304 with an empty body and the validators sent', async () => {
    origin.serve('/c.jpg', 'image bytes', { contentType: 'image/jpeg', headers: { ETag: '"v1"', 'Cache-Control': 'max-age=60' } });
    const result = await get(downloader(), '/c.jpg', { conditional: { etag: '"v1"' } });
    assert.equal(result.status, 304);
    assert.equal(result.body.length, 0);
    assert.equal(result.headers.etag, '"v1"');
    assert.equal(result.headers.cacheControl, 'max-age=60');
    assert.equal(origin.lastRequestHeaders('/c.jpg')?.['if-none-match'], '"v1"');
  });

  test('If-Modified-Since is sent; a changed resource comes back as 200', async () => {
    const lastModified = 'Wed, 21 Oct 2015 07:28:00 GMT';
    origin.serve('/m.jpg', 'new bytes', { contentType: 'image/jpeg', headers: { ETag: '"v2"', 'Last-Modified': lastModified } });
    const result = await get(downloader(), '/m.jpg', { conditional: { etag: '"v1"', lastModified } });
    assert.equal(result.status, 200);
    assert.equal(result.body.toString(), 'new bytes');
    const seen = origin.lastRequestHeaders('/m.jpg') ?? {};
    assert.equal(seen['if-none-match'], '"v1"');
    assert.equal(seen['if-modified-since'], lastModified);
  });

  test('a 304 to a request that was not conditional is an origin error', async () => {
    origin.serve('/odd.jpg', '', { status: 304 });
    await expectRefusal(get(downloader(), '/odd.jpg'), 'origin_error');
  });
});

describe('status mapping', () => {
  for (const [status, code] of [[404, 'not_found'], [410, 'not_found'], [500, 'origin_error'], [403, 'origin_error'],
    [204, 'origin_error'], [206, 'origin_error'], [503, 'origin_error']] as const) {
    test(`${status} → ${code}, the origin's body is not returned`, async () => {
      origin.serve(`/s${status}`, 'internal stack trace at /srv/app.js', { status, contentType: 'text/plain' });
      const err = await expectRefusal(get(downloader(), `/s${status}`), code);
      assert.doesNotMatch(`${err.message} ${err.detail ?? ''}`, /stack trace/);
    });
  }

  test('a compressed body despite Accept-Encoding: identity is refused, not decompressed', async () => {
    origin.serve('/gz.jpg', Buffer.from([0x1f, 0x8b, 8, 0]), { contentType: 'image/jpeg', headers: { 'Content-Encoding': 'gzip' } });
    await expectRefusal(get(downloader(), '/gz.jpg'), 'origin_error');
  });
});

describe('addresses: the loopback origin is unreachable unless allowed', () => {
  const strict = { allowedPrivateRanges: [] };
  const spellings = (port: number) => [
    `http://127.0.0.1:${port}/x.jpg`,
    `http://[::ffff:127.0.0.1]:${port}/x.jpg`,
    `http://[::ffff:7f00:1]:${port}/x.jpg`,
    `http://localhost:${port}/x.jpg`,
    `http://LOCALHOST:${port}/x.jpg`,
    `http://2130706433:${port}/x.jpg`,
    `http://0x7f000001:${port}/x.jpg`,
    `http://0177.0.0.1:${port}/x.jpg`,
    `http://0x7f.1:${port}/x.jpg`,
    `http://127.1:${port}/x.jpg`,
    `http://[64:ff9b::127.0.0.1]:${port}/x.jpg`,
    `http://0.0.0.0:${port}/x.jpg`,
  ];

  test('every spelling is refused with address_denied and the origin sees nothing', async () => {
    origin.serve('/x.jpg', 'secret', { contentType: 'image/jpeg' });
    const d = downloader(strict);
    for (const raw of spellings(origin.port)) {
      await expectRefusal(d.fetch({ url: new URL(raw) }), 'address_denied');
    }
    assert.equal(origin.totalHits(), 0);
  });

  test('the same spellings reach the origin once 127.0.0.1/32 is carved out (control)', async () => {
    origin.serve('/x.jpg', 'secret', { contentType: 'image/jpeg' });
    const d = downloader({ allowedPrivateRanges: ['127.0.0.1/32'] });
    for (const raw of [`http://127.0.0.1:${origin.port}/x.jpg`, `http://[::ffff:127.0.0.1]:${origin.port}/x.jpg`,
      `http://2130706433:${origin.port}/x.jpg`, `http://0x7f.1:${origin.port}/x.jpg`]) {
      assert.equal((await d.fetch({ url: new URL(raw) })).body.toString(), 'secret', raw);
    }
    assert.equal(origin.hits('/x.jpg'), 4);
  });

  test('localhost resolves and is checked at connect time: allowed with allowPrivateNetworks', async () => {
    origin.serve('/x.jpg', 'secret', { contentType: 'image/jpeg' });
    const result = await downloader({ allowedPrivateRanges: [], allowPrivateNetworks: true }).fetch({
      url: new URL(`http://localhost:${origin.port}/x.jpg`),
    });
    assert.equal(result.body.toString(), 'secret');
  });

  test('0.0.0.0 stays denied even with private networks allowed', async () => {
    origin.serve('/x.jpg', 'secret', { contentType: 'image/jpeg' });
    const d = downloader({ allowPrivateNetworks: true });
    await expectRefusal(d.fetch({ url: new URL(`http://0.0.0.0:${origin.port}/x.jpg`) }), 'address_denied');
    assert.equal(origin.totalHits(), 0);
  });

  test('a connection to this proxy itself is a loop', async () => {
    origin.serve('/x.jpg', 'secret', { contentType: 'image/jpeg' });
    for (const address of ['127.0.0.1', '0.0.0.0', '::']) {
      const d = downloader({ allowPrivateNetworks: true, selfEndpoints: () => [{ address, port: origin.port }] });
      await expectRefusal(d.fetch({ url: new URL(`http://127.0.0.1:${origin.port}/x.jpg`) }), 'loop_denied');
      await expectRefusal(d.fetch({ url: new URL(`http://localhost:${origin.port}/x.jpg`) }), 'loop_denied');
    }
    assert.equal(origin.totalHits(), 0);
    // Same address, another port: not a loop.
    const other = downloader({ allowPrivateNetworks: true, selfEndpoints: () => [{ address: '127.0.0.1', port: origin.port + 1 }] });
    assert.equal((await get(other, '/x.jpg')).status, 200);
  });
});

describe('redirects', () => {
  test('a relative chain is followed, each status code, counting hops', async () => {
    origin.redirect('/a/start', 'next', 301);
    origin.redirect('/a/next', '../b/then?x=1', 302);
    origin.redirect('/b/then', '/c/final.jpg', 307);
    origin.serve('/c/final.jpg', 'final', { contentType: 'image/jpeg' });
    const result = await get(downloader(), '/a/start');
    assert.equal(result.body.toString(), 'final');
    assert.equal(result.redirects, 3);
    assert.equal(result.finalUrl, `${origin.url}/c/final.jpg`);
    assert.equal(origin.hits('/b/then?x=1'), 1);
  });

  test('303 and 308 and absolute Locations are followed too', async () => {
    origin.redirect('/r303', `${origin.url}/r308`, 303);
    origin.redirect('/r308', '/done.jpg', 308);
    origin.serve('/done.jpg', 'done', { contentType: 'image/jpeg' });
    const result = await get(downloader(), '/r303');
    assert.equal(result.redirects, 2);
  });

  test('one hop more than maxRedirects is an origin error; the last hop is never requested', async () => {
    origin.redirect('/r1', '/r2');
    origin.redirect('/r2', '/r3');
    origin.redirect('/r3', '/final.jpg');
    origin.serve('/final.jpg', 'final', { contentType: 'image/jpeg' });
    await expectRefusal(get(downloader({ maxRedirects: 2 }), '/r1'), 'origin_error');
    assert.equal(origin.hits('/final.jpg'), 0);
    assert.equal(origin.hits('/r3'), 1);
    // Exactly at the limit is fine.
    assert.equal((await get(downloader({ maxRedirects: 3 }), '/r1')).redirects, 3);
  });

  test('a redirect loop ends at the limit', async () => {
    origin.redirect('/loop', '/loop');
    await expectRefusal(get(downloader({ maxRedirects: 5 }), '/loop'), 'origin_error');
    assert.equal(origin.hits('/loop'), 6);
  });

  test('a redirect to a denied address is refused; the origin sees only the first hop', async () => {
    origin.serve('/secret.jpg', 'secret', { contentType: 'image/jpeg' });
    const d = downloader({ allowedPrivateRanges: ['127.0.0.1/32'] });
    for (const target of [`http://0.0.0.0:${origin.port}/secret.jpg`, `http://[::1]:${origin.port}/secret.jpg`,
      `http://169.254.169.254/latest/meta-data/`, `http://10.0.0.1:${origin.port}/secret.jpg`]) {
      origin.reset();
      origin.serve('/secret.jpg', 'secret', { contentType: 'image/jpeg' });
      origin.redirect('/hop', target);
      await expectRefusal(get(d, '/hop'), 'address_denied');
      assert.equal(origin.hits('/hop'), 1, target);
      assert.equal(origin.totalHits(), 1, target);
    }
  });

  test('each hop is re-checked by the URL policy (scheme, host, port, userinfo)', async () => {
    const cases: Array<[string, ErrorCode, Partial<DownloadPolicy>]> = [
      ['ftp://127.0.0.1/x.jpg', 'scheme_denied', {}],
      [`http://user:pw@127.0.0.1:${origin.port}/x.jpg`, 'bad_url', {}],
      [`http://localhost:${origin.port}/x.jpg`, 'host_denied', { deniedHosts: ['localhost'] }],
      [`http://127.0.0.1:1/x.jpg`, 'port_denied', { allowedPorts: [origin.port] }],
    ];
    for (const [target, code, overrides] of cases) {
      origin.reset();
      origin.redirect('/hop', target);
      await expectRefusal(get(downloader(overrides), '/hop'), code);
      assert.equal(origin.totalHits(), 1, target);
    }
  });

  test('a redirect without Location is an origin error', async () => {
    origin.handle('/nowhere', (_req, res) => {
      res.writeHead(302);
      res.end();
    });
    await expectRefusal(get(downloader(), '/nowhere'), 'origin_error');
  });
});

describe('timeouts', () => {
  test('slow headers → origin_timeout at headersTimeoutMs', async () => {
    origin.slowHeaders('/slow-head.jpg', 10_000);
    const [err, ms] = await timed(expectRefusal(get(downloader({ headersTimeoutMs: 300 }), '/slow-head.jpg'), 'origin_timeout'));
    assert.ok(err);
    assert.ok(ms < 2000, `took ${ms} ms`);
  });

  test('slow headers → origin_timeout at the total deadline when it comes first', async () => {
    origin.slowHeaders('/slow-head2.jpg', 10_000);
    const d = downloader({ headersTimeoutMs: 30_000, totalTimeoutMs: 300 });
    const [, ms] = await timed(expectRefusal(get(d, '/slow-head2.jpg'), 'origin_timeout'));
    assert.ok(ms < 2000, `took ${ms} ms`);
  });

  test('a body that drips forever → origin_timeout at the total deadline', async () => {
    origin.slowBody('/drip.jpg', { chunk: 'x', intervalMs: 20 });
    const d = downloader({ totalTimeoutMs: 400 });
    const [, ms] = await timed(expectRefusal(get(d, '/drip.jpg'), 'origin_timeout'));
    assert.ok(ms >= 350 && ms < 2000, `took ${ms} ms`);
  });

  test("the caller's abort signal stops the fetch", async () => {
    origin.slowHeaders('/slow-head3.jpg', 10_000);
    const controller = new AbortController();
    const pending = get(downloader(), '/slow-head3.jpg', { signal: controller.signal });
    setTimeout(() => { controller.abort(); }, 50);
    const [err, ms] = await timed(pending.then(() => null, (e: unknown) => e));
    assert.ok(err instanceof FastImageCacheError);
    assert.ok(ms < 2000, `took ${ms} ms`);
  });
});

describe('size limits and broken bodies', () => {
  test('an honest Content-Length over maxBytes → too_large before the body is read', async () => {
    origin.handle('/big.jpg', (_req, res) => {
      // Promise 10 MB, send nothing: reading would hang until the deadline.
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': 10_000_000 });
      res.flushHeaders();
    });
    const [, ms] = await timed(expectRefusal(get(downloader({ maxBytes: 1000, totalTimeoutMs: 5000 }), '/big.jpg'), 'too_large'));
    assert.ok(ms < 1000, `took ${ms} ms`);
  });

  test('no Content-Length: counting stops the download past maxBytes', async () => {
    origin.handle('/chunked-big.jpg', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.end(Buffer.alloc(5000));
    });
    await expectRefusal(get(downloader({ maxBytes: 1000 }), '/chunked-big.jpg'), 'too_large');
  });

  test('an endless body → too_large, fast', async () => {
    origin.endlessBody('/endless.jpg');
    const [, ms] = await timed(expectRefusal(get(downloader({ maxBytes: 256 * 1024 }), '/endless.jpg'), 'too_large'));
    assert.ok(ms < 2000, `took ${ms} ms`);
  });

  test('a Content-Length that lies high (fewer bytes, then the connection closes) → origin_error', async () => {
    origin.lyingContentLength('/liar.jpg', Buffer.alloc(100, 7), 1000);
    await expectRefusal(get(downloader({ maxBytes: 10_000 }), '/liar.jpg'), 'origin_error');
  });

  test('a connection reset mid-body (chunked) → origin_error, never a truncated image', async () => {
    origin.handle('/reset.jpg', (req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.write(Buffer.alloc(500), () => setTimeout(() => req.socket.destroy(), 20));
    });
    await expectRefusal(get(downloader(), '/reset.jpg'), 'origin_error');
  });

  test('HTML served as image/jpeg comes back as bytes (judging content is not the downloader’s job)', async () => {
    origin.htmlAsJpeg('/page.jpg');
    const result = await get(downloader(), '/page.jpg');
    assert.equal(result.headers.contentType, 'image/jpeg');
    assert.match(result.body.toString(), /<html>/);
  });
});

describe('beforeBody: room for a body before it is read', () => {
  /** A beforeBody that records its calls and resolves when the test says so. */
  function gate() {
    const calls: Array<number | undefined> = [];
    let open: () => void = () => {};
    const opened = new Promise<void>((resolve) => (open = resolve));
    const beforeBody = async (declared: number | undefined) => {
      calls.push(declared);
      await opened;
    };
    return { calls, open, beforeBody };
  }

  test('is told the Content-Length; the body stays in the socket until it resolves (the origin cannot finish sending)', async () => {
    const big = Buffer.alloc(32 * 1024 * 1024, 7); // far more than loopback's socket buffers hold
    let finished = false;
    origin.handle('/held.jpg', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': big.length });
      res.end(big, () => (finished = true));
    });
    const g = gate();
    let settled = false;
    const pending = get(downloader({ maxBytes: 64 * 1024 * 1024 }), '/held.jpg', { beforeBody: g.beforeBody }).finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(g.calls, [big.length]);
    assert.equal(settled, false, 'the fetch waits for beforeBody');
    assert.equal(finished, false, 'nothing reads the body meanwhile: the origin is held back by TCP');
    g.open();
    const result = await pending;
    assert.ok(result.body.equals(big));
    assert.equal(finished, true);
  });

  test('no Content-Length: told undefined; redirect hops and refused statuses never call it', async () => {
    origin.handle('/chunked.jpg', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg' });
      res.end(Buffer.from('chunked body'));
    });
    origin.redirect('/hop.jpg', '/chunked.jpg');
    const g = gate();
    g.open();
    const result = await get(downloader(), '/hop.jpg', { beforeBody: g.beforeBody });
    assert.equal(result.body.toString(), 'chunked body');
    assert.deepEqual(g.calls, [undefined], 'once, for the final 200 only');
    await expectRefusal(get(downloader(), '/missing.jpg', { beforeBody: g.beforeBody }), 'not_found');
    assert.deepEqual(g.calls, [undefined]);
  });

  test('the deadline passing while it waits → overloaded (our wait, not the origin: no origin_timeout for the breaker)', async () => {
    origin.serve('/waits.jpg', 'body', { contentType: 'image/jpeg' });
    const beforeBody = (_declared: number | undefined, signal: AbortSignal) =>
      new Promise<void>((_resolve, reject) => {
        signal.addEventListener('abort', () => {
          reject(signal.reason as Error);
        });
      });
    const [err, ms] = await timed(expectRefusal(get(downloader({ totalTimeoutMs: 300 }), '/waits.jpg', { beforeBody }), 'overloaded'));
    assert.equal(err.retryAfterSeconds, 1);
    assert.ok(ms < 2000, `took ${ms} ms`);
    // One that ignores the signal and finds room only after the deadline: the same.
    const late = () => new Promise<void>((resolve) => setTimeout(resolve, 500));
    await expectRefusal(get(downloader({ totalTimeoutMs: 300 }), '/waits.jpg', { beforeBody: late }), 'overloaded');
  });

  test('what it throws fails the fetch as it is', async () => {
    origin.serve('/refused.jpg', 'body', { contentType: 'image/jpeg' });
    const beforeBody = () => Promise.reject(new FastImageCacheError('too_large', 'no room'));
    const err = await expectRefusal(get(downloader(), '/refused.jpg', { beforeBody }), 'too_large');
    assert.equal(err.detail, 'no room');
  });
});

describe('environment proxies are ignored', () => {
  const names = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy', 'NO_PROXY', 'no_proxy'];
  let saved: Record<string, string | undefined> = {};
  let proxy: http.Server;
  let proxied = 0;

  before(async () => {
    proxy = http.createServer((_req, res) => {
      proxied++;
      res.writeHead(502);
      res.end();
    });
    proxy.on('connect', (_req, socket) => {
      proxied++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    for (const n of names) Reflect.deleteProperty(process.env, n);
    for (const n of ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy']) process.env[n] = proxyUrl;
  });

  after(async () => {
    for (const [n, v] of Object.entries(saved)) {
      if (v === undefined) Reflect.deleteProperty(process.env, n);
      else process.env[n] = v;
    }
    proxy.closeAllConnections();
    await new Promise<void>((resolve) => proxy.close(() => { resolve(); }));
  });

  test('the origin is reached directly and the proxy sees nothing', async () => {
    origin.serve('/direct.jpg', 'direct', { contentType: 'image/jpeg' });
    // Control: a client that honours these variables does go through the fake proxy.
    const envAgent = new EnvHttpProxyAgent();
    const viaProxy = await envAgent.request({ origin: origin.url, path: '/direct.jpg', method: 'GET' });
    await viaProxy.body.dump();
    await envAgent.close();
    assert.equal(proxied, 1);
    assert.equal(origin.hits('/direct.jpg'), 0);

    const result = await get(downloader(), '/direct.jpg');
    assert.equal(result.body.toString(), 'direct');
    assert.equal(origin.hits('/direct.jpg'), 1);
    assert.equal(proxied, 1, 'the downloader must not use the proxy');
  });
});

describe('close', () => {
  test('close() resolves and later fetches fail', async () => {
    origin.serve('/c.jpg', 'c', { contentType: 'image/jpeg' });
    const d = createDownloader(localPolicy(), silentLogger());
    await get(d, '/c.jpg');
    await d.close();
    await assert.rejects(get(d, '/c.jpg'));
  });
});
