import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { encodeSource, sign } from '../../src/server/signature.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

/**
 * Transforms through the real server: options in the URL, f:auto with Vary,
 * one origin fetch for many sizes, expiring URLs, limits, SVG policy,
 * metadata stripping and the overload refusal.
 */

const PRESETS = { thumb: { width: 64, height: 64, fit: 'cover', format: 'webp', quality: 75 } };
const BASE = { presets: PRESETS, rateLimit: { perSecond: 0 } };

let origin: Origin;
let proxy: TestProxy;
let photo: Buffer; // 400 x 300 JPEG

before(async () => {
  origin = await startOrigin();
  proxy = await startProxy(BASE);
  photo = await makeImage('jpeg', 400, 300);
});
after(async () => {
  await proxy.close();
  await origin.close();
});

interface Got {
  status: number;
  headers: Headers;
  body: Buffer;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Got> {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

function expectRefusal(got: Got, status: number, code: string): void {
  assert.equal(got.status, status, got.body.toString('utf8', 0, 200));
  assert.match(got.headers.get('content-type') ?? '', /^application\/json/);
  const body = JSON.parse(got.body.toString('utf8')) as { error: string; message: string };
  assert.equal(body.error, code);
}

/** Every file under the cache directory, read whole. */
async function readCacheFiles(dir: string): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(await readFile(path.join(e.parentPath, e.name)));
  }
  return out;
}

async function size(body: Buffer): Promise<[number, number, string | undefined]> {
  const m = await sharp(body).metadata();
  return [m.width, m.height, m.format];
}

/** A PNG whose header claims 100000 × 100000 pixels, in a few hundred bytes. */
function pixelBomb(): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100_000, 0);
  ihdr.writeUInt32BE(100_000, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(256))), chunk('IEND', Buffer.alloc(0))]);
}

describe('options in the URL', () => {
  test('w:100 resizes keeping the aspect ratio, then is a HIT; f:webp converts', async () => {
    origin.serve('/photo.jpg', photo, { contentType: 'image/jpeg' });
    const first = await get(proxy.signedUrl(`${origin.url}/photo.jpg`, 'w:100'));
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'image/jpeg');
    assert.deepEqual(await size(first.body), [100, 75, 'jpeg']);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    assert.equal(first.headers.get('vary'), null);
    const again = await get(proxy.signedUrl(`${origin.url}/photo.jpg`, 'w:100'));
    assert.equal(again.headers.get('x-cache'), 'HIT');
    assert.ok(again.body.equals(first.body));

    const webp = await get(proxy.signedUrl(`${origin.url}/photo.jpg`, 'f:webp,h:30,w:30,fit:contain'));
    assert.equal(webp.headers.get('content-type'), 'image/webp');
    assert.deepEqual(await size(webp.body), [30, 30, 'webp']);
  });

  test('p:thumb gives the preset; equal spellings share one entry', async () => {
    origin.serve('/thumb.jpg', photo, { contentType: 'image/jpeg' });
    const thumb = await get(proxy.signedUrl(`${origin.url}/thumb.jpg`, 'p:thumb'));
    assert.equal(thumb.status, 200);
    assert.deepEqual(await size(thumb.body), [64, 64, 'webp']);
    const spelledOut = await get(proxy.signedUrl(`${origin.url}/thumb.jpg`, 'dpr:2,f:webp,q:75,h:32,w:32'));
    assert.equal(spelledOut.headers.get('x-cache'), 'HIT', 'same meaning, same cache entry');
    assert.ok(spelledOut.body.equals(thumb.body));
  });

  test('five sizes of one image cost one origin fetch; purge removes the source and every variant', async () => {
    origin.serve('/many.jpg', photo, { contentType: 'image/jpeg' });
    const sizes = [40, 80, 120, 160, 200];
    const results = await Promise.all(sizes.map((w) => get(proxy.signedUrl(`${origin.url}/many.jpg`, `w:${w}`))));
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, 200);
      assert.equal((await size(r.body))[0], sizes[i]);
    }
    assert.equal(origin.hits('/many.jpg'), 1, 'one origin fetch for all sizes');

    const removed = await proxy.imageCache.purge(`${origin.url}/many.jpg`);
    assert.ok(removed >= sizes.length + 1, `purged ${removed}`);
    const after = await get(proxy.signedUrl(`${origin.url}/many.jpg`, 'w:40'));
    assert.equal(after.headers.get('x-cache'), 'MISS');
    assert.equal(origin.hits('/many.jpg'), 2);
  });

  test('f:auto: AVIF, WebP or the source format from Accept, with Vary: Accept; one entry per negotiated format', async () => {
    origin.serve('/auto.jpg', photo, { contentType: 'image/jpeg' });
    const url = proxy.signedUrl(`${origin.url}/auto.jpg`, 'w:50,f:auto');
    const cases: Array<[string, string]> = [
      ['image/avif,image/webp,image/apng,image/*,*/*;q=0.8', 'image/avif'],
      ['image/webp,*/*', 'image/webp'],
      ['*/*', 'image/jpeg'],
    ];
    for (const [accept, type] of cases) {
      const r = await get(url, { accept });
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), type, accept);
      assert.equal(r.headers.get('vary'), 'Accept');
      assert.equal(r.headers.get('x-cache'), 'MISS');
      assert.equal((await size(r.body))[0], 50);
    }
    // Another browser's spelling of the same capabilities: the same entry.
    const firefox = await get(url, { accept: 'image/avif,image/webp,*/*' });
    assert.equal(firefox.headers.get('content-type'), 'image/avif');
    assert.equal(firefox.headers.get('x-cache'), 'HIT');
    const curl = await get(url);
    assert.equal(curl.headers.get('x-cache'), 'HIT');
    // A 304 says Vary too, so a shared cache keys it right.
    const etag = (await get(url, { accept: 'image/webp' })).headers.get('etag') ?? '';
    const notModified = await fetch(url, { headers: { accept: 'image/webp', 'if-none-match': etag } });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get('vary'), 'Accept');
    // An explicit format ignores Accept.
    const explicit = await get(proxy.signedUrl(`${origin.url}/auto.jpg`, 'w:50,f:webp'), { accept: 'image/avif' });
    assert.equal(explicit.headers.get('content-type'), 'image/webp');
    assert.equal(explicit.headers.get('vary'), null);
  });

  test('bad options are 400 bad_options with the generic message; the origin is not asked', async () => {
    for (const options of ['w:abc', 'w:5000', 'zz:1', 'w:10,w:20', 'p:nosuch', 'q:0', 'dpr:9', 'f:gif', 'w:2049,dpr:2']) {
      const r = await get(proxy.signedUrl(`${origin.url}/never.jpg`, options));
      expectRefusal(r, 400, 'bad_options');
      assert.equal((JSON.parse(r.body.toString()) as { message: string }).message, 'The options segment is not acceptable.');
    }
    assert.equal(origin.hits('/never.jpg'), 0);
  });

  test('exp: a past time is 410 expired, a future one serves; the time is covered by the signature', async () => {
    origin.serve('/exp.jpg', photo, { contentType: 'image/jpeg' });
    const now = Math.floor(Date.now() / 1000);
    expectRefusal(await get(proxy.signedUrl(`${origin.url}/exp.jpg`, `w:20,exp:${now - 10}`)), 410, 'expired');
    assert.equal(origin.hits('/exp.jpg'), 0);
    const fresh = await get(proxy.signedUrl(`${origin.url}/exp.jpg`, `exp:${now + 3600},w:20`));
    assert.equal(fresh.status, 200);
    assert.equal((await size(fresh.body))[0], 20);
    // Moving the expiry forward breaks the signature.
    const source = encodeSource(`${origin.url}/exp.jpg`);
    const signature = sign(proxy.key, `w:20,exp:${now - 10}`, source);
    expectRefusal(await get(`${proxy.url}/i/${signature}/w:20,exp:${now + 3600}/${source}`), 403, 'bad_signature');
  });
});

describe('safety', () => {
  test('a 100000 × 100000 pixel bomb is 413 too_large, fast', async () => {
    origin.serve('/bomb.png', pixelBomb(), { contentType: 'image/png' });
    const started = performance.now();
    expectRefusal(await get(proxy.signedUrl(`${origin.url}/bomb.png`, 'w:100')), 413, 'too_large');
    assert.ok(performance.now() - started < 2000);
  });

  test('a source sharp cannot decode is 415 not_an_image and nothing is stored', async () => {
    const broken = Buffer.concat([photo.subarray(0, 200), Buffer.alloc(200, 0x55)]);
    origin.serve('/broken.jpg', broken, { contentType: 'image/jpeg' });
    for (const options of ['_', 'w:10']) {
      expectRefusal(await get(proxy.signedUrl(`${origin.url}/broken.jpg`, options)), 415, 'not_an_image');
    }
  });

  test('a source that fails to decode only in the transform is 415, and passthrough never serves it', async () => {
    const corrupt = await makeImage('png', 64, 64);
    corrupt.fill(0xa5, corrupt.indexOf('IDAT') + 200, corrupt.indexOf('IDAT') + 600); // the header reads fine; the pixels do not decode
    origin.serve('/late-broken.png', corrupt, { contentType: 'image/png' });
    expectRefusal(await get(proxy.signedUrl(`${origin.url}/late-broken.png`, 'w:10')), 415, 'not_an_image');
    const passthrough = await get(proxy.signedUrl(`${origin.url}/late-broken.png`));
    expectRefusal(passthrough, 415, 'not_an_image');
  });

  test('passthrough strips EXIF and GPS; with stripMetadata off it serves the bytes as fetched', async () => {
    const tagged = await sharp(photo)
      .withExif({ IFD0: { Copyright: 'SECRET-OWNER' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 30/1' } })
      .jpeg()
      .toBuffer();
    origin.serve('/gps.jpg', tagged, { contentType: 'image/jpeg' });
    for (const options of ['_', 'w:100', 'f:webp']) {
      const r = await get(proxy.signedUrl(`${origin.url}/gps.jpg`, options));
      assert.equal(r.status, 200);
      assert.equal((await sharp(r.body).metadata()).exif, undefined, options);
      assert.ok(!r.body.includes('SECRET-OWNER'), options);
    }
    const keeping = await startProxy({ ...BASE, stripMetadata: false });
    try {
      const r = await get(keeping.signedUrl(`${origin.url}/gps.jpg`));
      assert.ok(r.body.equals(tagged));
    } finally {
      await keeping.close();
    }
  });

  test('a JPEG fetched for a variant keeps only its profile and orientation on disk; passthrough then serves it cleaned', async () => {
    // 400 x 300 stored, shown 300 x 400 (orientation 6), a Display P3 profile, GPS and a copyright in EXIF.
    const tagged = await sharp(photo)
      .withIccProfile('p3')
      .withExif({ IFD0: { Copyright: 'SECRET-OWNER' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 30/1' } })
      .withMetadata({ orientation: 6 })
      .jpeg()
      .toBuffer();
    const before = await sharp(tagged).metadata();
    assert.ok(before.icc && before.exif && before.orientation === 6, 'the test image carries profile, EXIF and orientation');
    origin.serve('/variant-first.jpg', tagged, { contentType: 'image/jpeg' });

    const small = await get(proxy.signedUrl(`${origin.url}/variant-first.jpg`, 'w:150'));
    assert.equal(small.status, 200);
    assert.deepEqual(await size(small.body), [150, 200, 'jpeg'], 'orientation applied to the variant');

    // On disk: the source keeps its profile and a bare orientation tag, never the GPS position or the copyright.
    const files = await readCacheFiles(proxy.cacheDir);
    assert.ok(files.length >= 2, 'source and variant stored');
    for (const f of files) {
      assert.ok(!f.includes('SECRET-OWNER'), 'copyright on disk');
      assert.ok(!f.includes(Buffer.from('48/1')) && !f.includes('GPS'), 'GPS on disk');
    }

    for (const expected of ['MISS', 'HIT']) {
      const whole = await get(proxy.signedUrl(`${origin.url}/variant-first.jpg`));
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get('x-cache'), expected);
      const meta = await sharp(whole.body).metadata();
      assert.equal(meta.exif, undefined, 'passthrough serves no EXIF');
      assert.equal(meta.icc, undefined, 'passthrough serves no profile (converted to sRGB)');
      assert.deepEqual([meta.width, meta.height], [300, 400], 'passthrough applies the orientation');
      assert.ok(!whole.body.includes('SECRET-OWNER'));
    }
    assert.equal(origin.hits('/variant-first.jpg'), 1, 'one origin fetch for the variant and passthrough');
  });

  test('SVG: 415 by default; with svg: rasterize a PNG, never SVG', async () => {
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="30" height="20"><rect width="30" height="20" fill="green"/></svg>';
    origin.serve('/pic.svg', svg, { contentType: 'image/svg+xml' });
    expectRefusal(await get(proxy.signedUrl(`${origin.url}/pic.svg`)), 415, 'not_an_image');
    const rasterizing = await startProxy({ ...BASE, svg: 'rasterize' });
    try {
      const whole = await get(rasterizing.signedUrl(`${origin.url}/pic.svg`));
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get('content-type'), 'image/png');
      assert.deepEqual(await size(whole.body), [30, 20, 'png']);
      const small = await get(rasterizing.signedUrl(`${origin.url}/pic.svg`, 'w:15,f:webp'));
      assert.equal(small.headers.get('content-type'), 'image/webp');
    } finally {
      await rasterizing.close();
    }
  });

  test('transforms.allowAdHoc: false serves presets only', async () => {
    origin.serve('/strict.jpg', photo, { contentType: 'image/jpeg' });
    const strict = await startProxy({ ...BASE, transforms: { allowAdHoc: false } });
    try {
      assert.equal((await get(strict.signedUrl(`${origin.url}/strict.jpg`, 'p:thumb'))).status, 200);
      assert.equal((await get(strict.signedUrl(`${origin.url}/strict.jpg`))).status, 200);
      expectRefusal(await get(strict.signedUrl(`${origin.url}/strict.jpg`, 'w:64')), 400, 'bad_options');
      expectRefusal(await get(strict.signedUrl(`${origin.url}/strict.jpg`, 'p:thumb,dpr:2')), 400, 'bad_options');
    } finally {
      await strict.close();
    }
  });

  test('a full transform queue answers 503 overloaded with Retry-After, while cache hits are served at once', async () => {
    const busy = await startProxy({ ...BASE, transforms: { concurrency: 1, queueSize: 0 } });
    try {
      const big = await makeImage('png', 1500, 1500);
      origin.serve('/big.png', big, { contentType: 'image/png' });
      origin.serve('/small.png', await makeImage('png', 20, 20), { contentType: 'image/png' });
      assert.equal((await get(busy.signedUrl(`${origin.url}/big.png`))).status, 200); // source cached
      assert.equal((await get(busy.signedUrl(`${origin.url}/small.png`))).status, 200);

      const burst = [1000, 1100, 1200, 1300, 1400].map((w) =>
        get(busy.signedUrl(`${origin.url}/big.png`, `w:${w},f:avif`)).then((r) => ({ ...r, at: performance.now() })),
      );
      const hit = await get(busy.signedUrl(`${origin.url}/small.png`));
      const hitAt = performance.now();
      const results = await Promise.all(burst);

      assert.equal(hit.status, 200);
      assert.equal(hit.headers.get('x-cache'), 'HIT');
      const done = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 503);
      assert.ok(done.length >= 1, 'the running transform finishes');
      assert.ok(refused.length >= 1, `statuses ${results.map((r) => r.status).join(',')}`);
      assert.ok(hitAt < Math.max(...done.map((r) => r.at)), 'the cache hit did not wait for the resize');
      for (const r of refused) {
        expectRefusal(r, 503, 'overloaded');
        assert.equal(r.headers.get('retry-after'), '1');
      }
    } finally {
      await busy.close();
    }
  });
});
