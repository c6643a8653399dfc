import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

// Disk hits that the memory tier does not keep are read into buffers lent for
// one response and reused once its last write has completed. What users rely
// on: every response carries its own image, whole, however slowly a client
// reads, and whatever else is served meanwhile.

let origin: Origin;
let proxy: TestProxy;
const images = {} as Record<'x' | 'y' | 'z', { url: string; sha256: string }>;

/** A PNG of noise: incompressible, so about `width × height × 3` bytes (6 MB here: more than the kernel buffers a paused loopback connection, so the proxy's write waits). */
async function noisePng(width: number, height: number): Promise<Buffer> {
  return sharp(randomBytes(width * height * 3), { raw: { width, height, channels: 3 } }).png({ compressionLevel: 1 }).toBuffer();
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function get(url: string, method = 'GET', headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: Buffer; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .request(url, { method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
        });
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), headers: res.headers });
        });
        res.on('error', reject);
      })
      .on('error', reject)
      .end();
  });
}

before(async () => {
  origin = await startOrigin();
  // A 1 MiB memory tier keeps nothing over 128 KiB: every repeat request below is a disk hit.
  proxy = await startProxy({ memoryCacheBytes: 1024 * 1024, rateLimit: { perSecond: 0 } });
  for (const name of ['x', 'y', 'z'] as const) {
    origin.serve(`/${name}.png`, await noisePng(1500, 1400), { contentType: 'image/png' });
    const url = proxy.signedUrl(`${origin.url}/${name}.png`);
    // A miss, a disk hit that opens the file, then disk hits through the open file (the ones that are lent).
    const first = await get(url);
    assert.equal(first.status, 200);
    for (let i = 0; i < 2; i++) assert.equal(sha256((await get(url)).body), sha256(first.body));
    images[name] = { url, sha256: sha256(first.body) };
  }
});

after(async () => {
  await proxy.close();
  await origin.close();
});

test('a client that reads slowly gets its own image whole, while the same buffers serve many other disk hits', async () => {
  const { x, y, z } = images;
  const slow = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(x.url, { agent: false }, resolve).on('error', reject);
  });
  slow.pause(); // the proxy's write now waits on the socket
  assert.equal(slow.headers['x-cache'], 'HIT');
  for (let round = 0; round < 10; round++) {
    const [gy, gz, gy2] = await Promise.all([get(y.url), get(z.url), get(y.url)]);
    assert.equal(sha256(gy.body), y.sha256, `round ${round}: y`);
    assert.equal(sha256(gz.body), z.sha256, `round ${round}: z`);
    assert.equal(sha256(gy2.body), y.sha256, `round ${round}: y again`);
  }
  const chunks: Buffer[] = [];
  slow.on('data', (c: Buffer) => {
    chunks.push(c);
  });
  slow.resume();
  await new Promise((resolve) => slow.on('end', resolve));
  assert.equal(sha256(Buffer.concat(chunks)), x.sha256, 'the slow client got x, unmixed');
});

test('clients that hang up mid-body, HEAD requests and 304s leave every later response whole', async () => {
  const { x, y } = images;
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = http.get(x.url, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNRESET') resolve();
        else reject(err);
      });
    });
    const head = await get(x.url, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    const etag = head.headers.etag ?? '';
    assert.equal((await get(x.url, 'GET', { 'if-none-match': etag })).status, 304);
    const [gx, gy] = await Promise.all([get(x.url), get(y.url)]);
    assert.equal(sha256(gx.body), x.sha256, `round ${i}: x`);
    assert.equal(sha256(gy.body), y.sha256, `round ${i}: y`);
  }
});
