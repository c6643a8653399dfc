import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildImagePath, encodeSource, sign } from '../../src/server/signature.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

let origin: Origin;
let proxy: TestProxy;
let jpeg: Buffer;
let png: Buffer;

before(async () => {
  origin = await startOrigin();
  proxy = await startProxy();
  jpeg = await makeImage('jpeg', 120, 80);
  png = await makeImage('png', 40, 30);
});
after(async () => {
  await proxy.close();
  await origin.close();
});

async function errorBody(res: Response): Promise<{ error: string; message: string }> {
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { error: string; message: string };
  assert.deepEqual(Object.keys(body).sort(), ['error', 'message']);
  return body;
}

async function expectError(res: Response, status: number, code: string): Promise<void> {
  const body = await errorBody(res);
  assert.equal(res.status, status, `status for ${code}: ${JSON.stringify(body)}`);
  assert.equal(body.error, code);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
}

/** Every entry file in the cache directory (entries live in fan-out subfolders). */
function entryFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const path = join(dir, name);
    if (!name.startsWith('tmp') && !name.startsWith('.') && statSync(path).isFile()) out.push(path);
  }
  return out;
}

describe('routes', () => {
  test('GET / explains the URL format; /healthz is 200', async () => {
    const index = await fetch(`${proxy.url}/`);
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(await index.text(), /\/i\/\{signature\}\/\{options\}\/\{source\}/);
    const health = await fetch(`${proxy.url}/healthz`);
    assert.equal(health.status, 200);
  });

  test('unknown routes are 404 not_found and other methods 405, as JSON', async () => {
    await expectError(await fetch(`${proxy.url}/nope`), 404, 'not_found');
    await expectError(await fetch(`${proxy.url}/`, { method: 'POST', body: 'x' }), 405, 'method_not_allowed');
  });
});

describe('serving and caching', () => {
  test('MISS then HIT with identical bytes, the sniffed type, and only our own headers', async () => {
    origin.serve('/photo.jpg', jpeg, {
      contentType: 'application/octet-stream', // origins lie; we sniff
      headers: {
        'Set-Cookie': 'session=1',
        'Content-Disposition': 'attachment; filename=x.html',
        Link: '</evil>; rel=preload',
        'Access-Control-Allow-Origin': '*',
        'X-Origin-Secret': 'internal',
      },
    });
    const url = proxy.signedUrl(`${origin.url}/photo.jpg`);
    const first = await fetch(url);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    const firstBody = Buffer.from(await first.arrayBuffer());
    assert.deepEqual(firstBody, jpeg);

    const second = await fetch(url);
    assert.equal(second.status, 200);
    assert.equal(second.headers.get('x-cache'), 'HIT');
    assert.deepEqual(Buffer.from(await second.arrayBuffer()), jpeg);
    assert.equal(origin.hits('/photo.jpg'), 1);

    const h = second.headers;
    assert.equal(h.get('content-type'), 'image/jpeg');
    assert.equal(h.get('content-length'), String(jpeg.length));
    assert.match(h.get('etag') ?? '', /^"[0-9a-f]{16,}"$/);
    assert.equal(h.get('etag'), first.headers.get('etag'));
    assert.equal(h.get('x-content-type-options'), 'nosniff');
    assert.equal(h.get('content-security-policy'), "default-src 'none'; sandbox");
    assert.match(h.get('cache-control') ?? '', /max-age=\d+/);
    for (const name of ['set-cookie', 'content-disposition', 'link', 'access-control-allow-origin', 'x-origin-secret']) {
      assert.equal(h.get(name), null, `${name} must not pass through`);
    }
  });

  test('If-None-Match gives 304; HEAD gives headers without a body', async () => {
    origin.serve('/etag.png', png, { contentType: 'image/png' });
    const url = proxy.signedUrl(`${origin.url}/etag.png`);
    const first = await fetch(url);
    await first.arrayBuffer();
    const etag = first.headers.get('etag') ?? '';
    const conditional = await fetch(url, { headers: { 'If-None-Match': etag } });
    assert.equal(conditional.status, 304);
    assert.equal(conditional.headers.get('etag'), etag);
    assert.equal((await conditional.arrayBuffer()).byteLength, 0);
    const other = await fetch(url, { headers: { 'If-None-Match': '"something-else"' } });
    assert.equal(other.status, 200);
    await other.arrayBuffer();

    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(png.length));
    assert.equal(head.headers.get('content-type'), 'image/png');
    assert.equal((await head.arrayBuffer()).byteLength, 0);
  });

  test('50 concurrent cold requests make exactly one origin request and all get the same bytes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    origin.handle('/stampede.jpg', (_req, res) => {
      void gate.then(() => {
        res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': jpeg.length });
        res.end(jpeg);
      });
    });
    const url = proxy.signedUrl(`${origin.url}/stampede.jpg`);
    const pending = Array.from({ length: 50 }, () => fetch(url).then(async (r) => ({ status: r.status, body: Buffer.from(await r.arrayBuffer()) })));
    // Let every request reach the proxy before the origin answers.
    await new Promise((resolve) => setTimeout(resolve, 200));
    release();
    const results = await Promise.all(pending);
    assert.equal(origin.hits('/stampede.jpg'), 1);
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.deepEqual(r.body, jpeg);
    }
  });

  test('equivalent source URLs share one entry', async () => {
    origin.serve('/same.png', png, { contentType: 'image/png' });
    const a = await fetch(proxy.signedUrl(`${origin.url}/same.png`));
    await a.arrayBuffer();
    const b = await fetch(proxy.signedUrl(`${origin.url.replace('http://', 'HTTP://')}/same.png#fragment`));
    assert.equal(b.status, 200);
    assert.equal(b.headers.get('x-cache'), 'HIT');
    await b.arrayBuffer();
    assert.equal(origin.hits('/same.png'), 1);
  });

  test('a cached file altered on disk is never served: it is fetched again', async () => {
    // No memory tier: the second request must read the altered file from disk.
    const { dir, cleanup } = await isolatedCacheDir({ memoryCacheBytes: 0 });
    try {
      origin.serve('/tamper.png', png, { contentType: 'image/png' });
      const url = dir.proxy.signedUrl(`${origin.url}/tamper.png`);
      await (await fetch(url)).arrayBuffer();
      const files = entryFiles(dir.proxy.cacheDir);
      assert.equal(files.length, 1);
      const file = files[0] ?? '';
      const bytes = readFileSync(file);
      bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff; // inside the image body
      writeFileSync(file, bytes);

      const again = await fetch(url);
      assert.equal(again.status, 200);
      assert.equal(again.headers.get('x-cache'), 'MISS');
      assert.deepEqual(Buffer.from(await again.arrayBuffer()), png);
      assert.equal(origin.hits('/tamper.png'), 2);
    } finally {
      await cleanup();
    }
  });

  test('cache directory is 0700 and entry files 0600', () => {
    assert.equal(statSync(proxy.cacheDir).mode & 0o777, 0o700);
    const files = entryFiles(proxy.cacheDir);
    assert.ok(files.length > 0);
    for (const f of files) assert.equal(statSync(f).mode & 0o777, 0o600, f);
  });
});

/** A second proxy with its own cache, for tests that inspect the directory. */
async function isolatedCacheDir(overrides: Record<string, unknown> = {}): Promise<{ dir: { proxy: TestProxy }; cleanup: () => Promise<void> }> {
  const own = await startProxy(overrides);
  return { dir: { proxy: own }, cleanup: () => own.close() };
}

describe('signatures', () => {
  test('missing, wrong and malformed signatures are 403 bad_signature; the origin is not contacted', async () => {
    origin.serve('/signed.png', png, { contentType: 'image/png' });
    const source = encodeSource(`${origin.url}/signed.png`);
    const wrongKey = sign(Buffer.alloc(32, 9), '_', source);
    for (const sig of ['unsafe', wrongKey, 'abc', sign(proxy.key, '_', encodeSource(`${origin.url}/other.png`))]) {
      await expectError(await fetch(`${proxy.url}/i/${sig}/_/${source}`), 403, 'bad_signature');
    }
    assert.equal(origin.hits('/signed.png'), 0);
  });

  test('any of several keys verifies (rotation)', async () => {
    const oldKey = Buffer.alloc(32, 3);
    const { dir, cleanup } = await isolatedCacheDir({ key: [Buffer.alloc(32, 4).toString('hex'), oldKey.toString('hex')] });
    try {
      origin.serve('/rotate.png', png, { contentType: 'image/png' });
      const res = await fetch(dir.proxy.url + buildImagePath(oldKey, `${origin.url}/rotate.png`));
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    } finally {
      await cleanup();
    }
  });

  test('"unsafe" works only when the operator turns signing off', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ requireSignature: false });
    try {
      origin.serve('/unsafe.png', png, { contentType: 'image/png' });
      const res = await fetch(`${dir.proxy.url}/i/unsafe/_/${encodeSource(`${origin.url}/unsafe.png`)}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    } finally {
      await cleanup();
    }
  });
});

describe('input validation', () => {
  test('unknown options are 400 bad_options (after the signature check)', async () => {
    const source = encodeSource(`${origin.url}/x.png`);
    await expectError(await fetch(`${proxy.url}/i/${sign(proxy.key, 'zz:100', source)}/zz:100/${source}`), 400, 'bad_options');
  });

  const badSources: Array<[string, string, number, string]> = [
    ['not base64url', '', 400, 'bad_url'],
    ['relative URL', '/just/a/path.png', 400, 'bad_url'],
    ['userinfo', 'http://user:pass@127.0.0.1/x.png', 400, 'bad_url'],
    ['ftp scheme', 'ftp://127.0.0.1/x.png', 403, 'scheme_denied'],
    ['javascript scheme', 'javascript:alert(1)', 403, 'scheme_denied'],
    ['file scheme', 'file:///etc/passwd', 403, 'scheme_denied'],
    ['too long', `http://127.0.0.1/${'a'.repeat(9000)}`, 400, 'bad_url'],
  ];
  for (const [name, source, status, code] of badSources) {
    test(`source: ${name} → ${status} ${code}`, async () => {
      const encoded = source === '' ? 'not*base64' : encodeSource(source);
      const sig = sign(proxy.key, '_', encoded);
      await expectError(await fetch(`${proxy.url}/i/${sig}/_/${encoded}`), status, code);
    });
  }
});

describe('the secure default policy', () => {
  test('plain HTTP is refused unless allowed', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ allowHttp: false });
    try {
      origin.serve('/http.png', png, { contentType: 'image/png' });
      await expectError(await fetch(dir.proxy.signedUrl(`${origin.url}/http.png`)), 403, 'scheme_denied');
      assert.equal(origin.hits('/http.png'), 0);
    } finally {
      await cleanup();
    }
  });

  test('ports outside allowedPorts are refused', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ allowedPorts: [80, 443] });
    try {
      await expectError(await fetch(dir.proxy.signedUrl(`${origin.url}/port.png`)), 403, 'port_denied');
      assert.equal(origin.hits('/port.png'), 0);
    } finally {
      await cleanup();
    }
  });

  test('host allow-list and deny-list', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ deniedHosts: ['*.example.com', 'localhost'] });
    try {
      await expectError(await fetch(dir.proxy.signedUrl(`http://localhost:${origin.port}/h.png`)), 403, 'host_denied');
      await expectError(await fetch(dir.proxy.signedUrl('http://img.example.com/h.png')), 403, 'host_denied');
    } finally {
      await cleanup();
    }
    const allow = await isolatedCacheDir({ allowedHosts: ['images.example.org'] });
    try {
      await expectError(await fetch(allow.dir.proxy.signedUrl(`${origin.url}/h.png`)), 403, 'host_denied');
    } finally {
      await allow.cleanup();
    }
    assert.equal(origin.hits('/h.png'), 0);
  });

  test('every denied address form is refused and the origin sees nothing', async () => {
    // Same proxy settings as the others, but no private range allowed.
    const { dir, cleanup } = await isolatedCacheDir({ allowedPrivateRanges: [] });
    try {
      origin.serve('/private.png', png, { contentType: 'image/png' });
      const port = origin.port;
      const forms = [
        `http://127.0.0.1:${port}/private.png`,
        `http://localhost:${port}/private.png`,
        `http://[::ffff:127.0.0.1]:${port}/private.png`,
        `http://[::ffff:7f00:1]:${port}/private.png`,
        `http://2130706433:${port}/private.png`,
        `http://0x7f.0.0.1:${port}/private.png`,
        `http://0177.0.0.1:${port}/private.png`,
        `http://127.1:${port}/private.png`,
        `http://[::1]:${port}/private.png`,
        `http://0.0.0.0:${port}/private.png`,
        `http://169.254.169.254/latest/meta-data/`,
        `http://[64:ff9b::7f00:1]:${port}/private.png`,
        `http://[2002:7f00:1::]:${port}/private.png`,
        `http://10.0.0.1:${port}/private.png`,
        `http://192.168.1.1:${port}/private.png`,
        `http://[fd00:ec2::254]/latest/meta-data/`,
      ];
      for (const form of forms) {
        await expectError(await fetch(dir.proxy.signedUrl(form)), 403, 'address_denied');
      }
      assert.equal(origin.hits('/private.png'), 0);
    } finally {
      await cleanup();
    }
  });

  test('a redirect from an allowed origin to a denied address is refused', async () => {
    // 127.0.0.1 is allowed; 127.0.0.2 (also loopback, and where this origin also answers) is not.
    origin.redirect('/hop', `http://127.0.0.2:${origin.port}/private2.png`);
    origin.serve('/private2.png', png, { contentType: 'image/png' });
    await expectError(await fetch(proxy.signedUrl(`${origin.url}/hop`)), 403, 'address_denied');
    assert.equal(origin.hits('/hop'), 1);
    assert.equal(origin.hits('/private2.png'), 0);
  });

  test('redirects within policy are followed, up to maxRedirects', async () => {
    origin.serve('/final.png', png, { contentType: 'image/png' });
    origin.redirect('/r1', '/final.png');
    origin.redirect('/r2', '/r1');
    origin.redirect('/r3', '/r2');
    origin.redirect('/r4', '/r3');
    const ok = await fetch(proxy.signedUrl(`${origin.url}/r3`));
    assert.equal(ok.status, 200);
    assert.deepEqual(Buffer.from(await ok.arrayBuffer()), png);
    await expectError(await fetch(proxy.signedUrl(`${origin.url}/r4`)), 502, 'origin_error');
  });

  test('a source pointing back at the proxy itself is refused', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ allowedPrivateRanges: ['127.0.0.0/8'] });
    try {
      const self = `${dir.proxy.url}/healthz`;
      await expectError(await fetch(dir.proxy.signedUrl(self)), 403, 'loop_denied');
    } finally {
      await cleanup();
    }
  });

  test('client request headers are not forwarded to the origin', async () => {
    origin.serve('/headers.png', png, { contentType: 'image/png' });
    const res = await fetch(proxy.signedUrl(`${origin.url}/headers.png`), {
      headers: { Cookie: 'session=secret', Authorization: 'Bearer t', 'X-Forwarded-For': '1.2.3.4', Referer: 'https://app/' },
    });
    await res.arrayBuffer();
    const seen = origin.lastRequestHeaders('/headers.png') ?? {};
    for (const name of ['cookie', 'authorization', 'x-forwarded-for', 'referer']) {
      assert.equal(seen[name], undefined, `${name} reached the origin`);
    }
  });
});

describe('origin failures', () => {
  test('origin 404 is 404 not_found; 500 is 502 origin_error; no origin body leaks', async () => {
    origin.serve('/missing.png', Buffer.from('secret internal page 10.1.2.3'), { status: 404, contentType: 'text/html' });
    origin.serve('/broken.png', Buffer.from('stack trace at /srv/app.js'), { status: 500, contentType: 'text/plain' });
    const missing = await fetch(proxy.signedUrl(`${origin.url}/missing.png`));
    const text404 = await missing.clone().text();
    await expectError(missing, 404, 'not_found');
    assert.ok(!text404.includes('secret'));
    const broken = await fetch(proxy.signedUrl(`${origin.url}/broken.png`));
    const text500 = await broken.clone().text();
    await expectError(broken, 502, 'origin_error');
    assert.ok(!text500.includes('stack') && !text500.includes('127.0.0.1'));
  });

  test('HTML served as an image is 415 not_an_image and never cached', async () => {
    origin.serve('/page.jpg', Buffer.from('<!doctype html><script>alert(1)</script>'), { contentType: 'image/jpeg' });
    const url = proxy.signedUrl(`${origin.url}/page.jpg`);
    await expectError(await fetch(url), 415, 'not_an_image');
    await expectError(await fetch(url), 415, 'not_an_image');
    // The refusal is remembered for negativeTtl (the origin is asked once); the bytes never are.
    assert.equal(origin.hits('/page.jpg'), 1);
  });

  test('a truncated image (lying Content-Length) is never a 200', async () => {
    origin.handle('/cut.jpg', (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': jpeg.length });
      res.write(jpeg.subarray(0, jpeg.length >> 1));
      setTimeout(() => res.destroy(), 20);
    });
    const res = await fetch(proxy.signedUrl(`${origin.url}/cut.jpg`));
    await expectError(res, 502, 'origin_error');
  });

  test('size limit: 413 too_large, whatever Content-Length claims', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ maxSourceBytes: 1000 });
    try {
      origin.serve('/big.jpg', jpeg, { contentType: 'image/jpeg' }); // jpeg > 1000 bytes
      assert.ok(jpeg.length > 1000);
      await expectError(await fetch(dir.proxy.signedUrl(`${origin.url}/big.jpg`)), 413, 'too_large');
      origin.handle('/big-chunked.jpg', (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'image/jpeg' }); // no Content-Length: chunked
        res.end(jpeg);
      });
      await expectError(await fetch(dir.proxy.signedUrl(`${origin.url}/big-chunked.jpg`)), 413, 'too_large');
    } finally {
      await cleanup();
    }
  });

  test('a slow origin is 504 origin_timeout, in about the configured time', async () => {
    const { dir, cleanup } = await isolatedCacheDir({ headersTimeoutMs: 300, totalTimeoutMs: 600 });
    try {
      origin.handle('/slow.jpg', () => {
        /* never answers */
      });
      origin.handle('/drip.jpg', (_req, res) => {
        res.writeHead(200, { 'Content-Type': 'image/jpeg' });
        const timer = setInterval(() => res.write(Buffer.from([0xff])), 50);
        res.on('close', () => { clearInterval(timer); });
      });
      const started = Date.now();
      await expectError(await fetch(dir.proxy.signedUrl(`${origin.url}/slow.jpg`)), 504, 'origin_timeout');
      await expectError(await fetch(dir.proxy.signedUrl(`${origin.url}/drip.jpg`)), 504, 'origin_timeout');
      assert.ok(Date.now() - started < 5000, 'timeouts must not stall');
    } finally {
      await cleanup();
    }
  });
});

test('the content hash in metadata matches what is served', async () => {
  origin.serve('/hash.png', png, { contentType: 'image/png' });
  const res = await fetch(proxy.signedUrl(`${origin.url}/hash.png`));
  const body = Buffer.from(await res.arrayBuffer());
  const sha = createHash('sha256').update(body).digest('hex');
  assert.ok((res.headers.get('etag') ?? '').includes(sha.slice(0, 16)));
});
