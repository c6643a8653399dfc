import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { FastImageCacheError } from '../../src/errors.ts';
import type { Variant } from '../../src/image/negotiate.ts';
import { cleanSource, transformImage, type TransformSettings } from '../../src/image/transform.ts';
import { verifyImage } from '../../src/image/verify.ts';
import { makeImage } from '../helpers/images.ts';

const SETTINGS: TransformSettings = { maxSourcePixels: 50_000_000, maxSourceFrames: 1000, stripMetadata: true, timeoutMs: 10_000 };

async function meta(buf: Buffer, animated = false): Promise<Metadata> {
  return sharp(buf, { animated }).metadata();
}

async function failure(run: Promise<unknown>): Promise<FastImageCacheError> {
  const err = await run.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FastImageCacheError, String(err));
  return err;
}

/** An animated image of `frames` distinct solid frames. */
async function animation(format: 'gif' | 'webp', frames: number, width: number, height: number): Promise<Buffer> {
  const parts = await Promise.all(
    Array.from({ length: frames }, (_, i) =>
      sharp({ create: { width, height, channels: 3, background: { r: (i * 37) % 256, g: (i * 91) % 256, b: (i * 13) % 256 } } })
        .png()
        .toBuffer(),
    ),
  );
  const joined = sharp(parts, { join: { animated: true } });
  return format === 'gif' ? joined.gif({ loop: 0 }).toBuffer() : joined.webp({ lossless: true, loop: 0 }).toBuffer();
}

/** A PNG whose header claims width×height, with a tiny (invalid) IDAT: a decompression bomb's shape. */
function pngClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    return out; // CRC left zero: the limit must trip before anything reads that far
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('transformImage: size and fit', () => {
  test('width only keeps the aspect ratio; both sizes give exactly that size for cover, contain and fill', async () => {
    const src = await makeImage('jpeg', 400, 300);
    const cases: Array<[Variant, number, number]> = [
      [{ width: 100 }, 100, 75],
      [{ height: 60 }, 80, 60],
      [{ width: 100, height: 100 }, 100, 100],
      [{ width: 100, height: 100, fit: 'contain' }, 100, 100],
      [{ width: 100, height: 100, fit: 'fill' }, 100, 100],
      [{ width: 100, height: 100, fit: 'inside' }, 100, 75],
      [{ width: 100, height: 100, fit: 'outside' }, 133, 100],
      [{ width: 100, fit: 'fill' }, 100, 300],
      [{ width: 800 }, 800, 600], // enlarging when asked
    ];
    for (const [variant, width, height] of cases) {
      const out = await transformImage(src, variant, SETTINGS);
      const m = await meta(out.body);
      assert.deepEqual([m.width, m.height, out.width, out.height], [width, height, width, height], JSON.stringify(variant));
      assert.equal(out.contentType, 'image/jpeg', 'no format asked: the source format');
    }
  });

  test('each output format decodes with its own type; TIFF is kept as PNG', async () => {
    const src = await makeImage('png', 64, 48);
    for (const format of ['jpeg', 'png', 'webp', 'avif'] as const) {
      const out = await transformImage(src, { format, width: 32 }, SETTINGS);
      const m = await meta(out.body);
      assert.equal(out.contentType, `image/${format}`);
      assert.equal(m.format, format === 'avif' ? 'heif' : format);
      assert.equal(m.width, 32);
      await verifyImage(out.body);
    }
    const fromTiff = await transformImage(await makeImage('tiff', 30, 20), {}, SETTINGS);
    assert.equal(fromTiff.contentType, 'image/png');
  });

  test('quality reaches the encoder', async () => {
    const src = await makeImage('png', 200, 150);
    const low = await transformImage(src, { format: 'webp', quality: 10 }, SETTINGS);
    const high = await transformImage(src, { format: 'webp', quality: 95 }, SETTINGS);
    assert.ok(low.body.length < high.body.length, `${low.body.length} vs ${high.body.length}`);
  });

  test('JPEG output of a transparent image has a white background, not black', async () => {
    const clear = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toBuffer();
    const out = await transformImage(clear, { format: 'jpeg' }, SETTINGS);
    const { data } = await sharp(out.body).raw().toBuffer({ resolveWithObject: true });
    assert.ok((data[0] ?? 0) > 250, `pixel ${data[0]}`);
  });
});

describe('transformImage: orientation, colour and metadata', () => {
  test('EXIF orientation is applied before metadata is stripped', async () => {
    const stored = await sharp(await makeImage('png', 64, 48))
      .withMetadata({ orientation: 6 })
      .withExif({ IFD0: { Copyright: 'SECRET' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '1/1 2/1 3/1' } })
      .jpeg()
      .toBuffer();
    assert.equal((await meta(stored)).orientation, 6);
    for (const variant of [{ format: 'webp' as const }, { width: 24 }, {}]) {
      const out = await transformImage(stored, variant, SETTINGS);
      const m = await meta(out.body);
      assert.equal(m.orientation, undefined);
      assert.equal(m.exif, undefined, 'EXIF (GPS) stripped');
      assert.ok(!out.body.includes('SECRET'));
      assert.ok(m.height > m.width, `turned upright: ${m.width}x${m.height}`);
    }
  });

  test('CMYK and profiled images come out sRGB without a profile; stripMetadata: false keeps EXIF', async () => {
    const cmyk = await sharp(await makeImage('png', 40, 30)).toColourspace('cmyk').jpeg().toBuffer();
    assert.equal((await meta(cmyk)).space, 'cmyk');
    const out = await transformImage(cmyk, { format: 'png' }, SETTINGS);
    const m = await meta(out.body);
    assert.equal(m.space, 'srgb');
    assert.equal(m.channels, 3);
    assert.equal(m.icc, undefined);

    const tagged = await sharp(await makeImage('png', 40, 30)).withExif({ IFD0: { Copyright: 'KEEP-ME' } }).jpeg().toBuffer();
    const kept = await transformImage(tagged, { width: 20 }, { ...SETTINGS, stripMetadata: false });
    assert.ok((await meta(kept.body)).exif, 'EXIF kept when stripMetadata is off');
    assert.ok(kept.body.includes('KEEP-ME'));
  });
});

describe('transformImage: animation', () => {
  test('animated GIF stays animated as GIF and WebP, per frame resized; other formats get the first frame', async () => {
    const gif = await animation('gif', 3, 40, 20);
    for (const format of [undefined, 'webp'] as const) {
      const out = await transformImage(gif, { width: 20, ...(format ? { format } : {}) }, SETTINGS);
      const m = await meta(out.body, true);
      assert.equal(m.pages, 3, `${format ?? 'gif'} keeps 3 frames`);
      assert.equal(m.width, 20);
      assert.equal(m.pageHeight, 10);
      assert.equal(out.frames, 3);
    }
    for (const format of ['png', 'jpeg', 'avif'] as const) {
      const out = await transformImage(gif, { format, width: 20 }, SETTINGS);
      const m = await meta(out.body, true);
      assert.equal(m.pages ?? 1, 1, format);
      assert.deepEqual([m.width, m.height], [20, 10], `${format}: one frame, not the stacked strip`);
    }
  });

  test('avif+webp (f:auto for a client taking both): AVIF for stills, animated WebP for animations', async () => {
    const still = await transformImage(await makeImage('png', 30, 30), { format: 'avif+webp' }, SETTINGS);
    assert.equal(still.contentType, 'image/avif');
    const moving = await transformImage(await animation('webp', 4, 30, 30), { format: 'avif+webp' }, SETTINGS);
    assert.equal(moving.contentType, 'image/webp');
    assert.equal((await meta(moving.body, true)).pages, 4);
  });

  test('an animation taller than WebP and AVIF allow when stacked (20000 px) is handled', async () => {
    const tall = await animation('webp', 100, 13, 200);
    assert.equal((await meta(tall, true)).height, 20_000);
    const webp = await transformImage(tall, { width: 26, height: 400 }, SETTINGS);
    const m = await meta(webp.body, true);
    assert.equal(webp.contentType, 'image/webp');
    assert.deepEqual([m.width, m.pageHeight ?? m.height], [26, 400], 'each frame has the requested size');
    const avif = await transformImage(tall, { format: 'avif', width: 26 }, SETTINGS);
    assert.deepEqual([(await meta(avif.body)).width, (await meta(avif.body)).height], [26, 400], 'first frame only');
  });

  test('an animation whose frames together exceed maxSourcePixels keeps only its first frame; too many frames is too_large', async () => {
    const gif = await animation('gif', 3, 20, 10);
    const out = await transformImage(gif, { format: 'webp' }, { ...SETTINGS, maxSourcePixels: 400 });
    assert.equal((await meta(out.body, true)).pages ?? 1, 1);
    const err = await failure(transformImage(gif, {}, { ...SETTINGS, maxSourceFrames: 2 }));
    assert.equal(err.code, 'too_large');
    assert.match(err.detail ?? '', /3 frames, limit 2/);
  });
});

describe('limits', () => {
  test('a 100000 × 100000 PNG header is refused with too_large, fast, by verify and by transform', async () => {
    const bomb = pngClaiming(100_000, 100_000);
    assert.ok(bomb.length < 2000);
    const started = performance.now();
    assert.equal((await failure(verifyImage(bomb, { maxPixels: 50_000_000 }))).code, 'too_large');
    assert.equal((await failure(transformImage(bomb, { width: 100 }, SETTINGS))).code, 'too_large');
    assert.ok(performance.now() - started < 1000, `took ${performance.now() - started} ms`);
  });

  test('maxSourcePixels is checked from the header: one pixel over is refused', async () => {
    const src = await makeImage('png', 100, 100);
    await transformImage(src, { width: 10 }, { ...SETTINGS, maxSourcePixels: 10_000 });
    assert.equal((await failure(transformImage(src, { width: 10 }, { ...SETTINGS, maxSourcePixels: 9_999 }))).code, 'too_large');
    assert.equal((await failure(verifyImage(src, { maxPixels: 9_999 }))).code, 'too_large');
  });
});

describe('cleanSource (passthrough with stripMetadata)', () => {
  test('strips losslessly when it can, re-encodes upright when it must, and never leaves EXIF', async () => {
    const plain = await makeImage('jpeg', 64, 48);
    assert.ok((await cleanSource(plain, SETTINGS)).body.equals(plain), 'nothing to strip: the same bytes');

    const gps = await sharp(plain).withExif({ IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '1/1 2/1 3/1' } }).jpeg().toBuffer();
    const stripped = await cleanSource(gps, SETTINGS);
    assert.equal((await meta(stripped.body)).exif, undefined);
    assert.ok((await sharp(stripped.body).raw().toBuffer()).equals(await sharp(gps).raw().toBuffer()), 'lossless: same pixels');

    const rotated = await sharp(plain).withMetadata({ orientation: 8 }).jpeg().toBuffer();
    const upright = await cleanSource(rotated, SETTINGS);
    const m = await meta(upright.body);
    assert.equal(upright.contentType, 'image/jpeg');
    assert.deepEqual([m.width, m.height, m.orientation, m.exif], [48, 64, undefined, undefined]);

    const tiff = await cleanSource(await makeImage('tiff', 20, 10), SETTINGS);
    assert.equal(tiff.contentType, 'image/png');

    const animated = await cleanSource(await animation('gif', 3, 20, 10), SETTINGS);
    assert.equal((await meta(animated.body, true)).pages, 3);
  });

  test('a JPEG profile that only restates sRGB is dropped losslessly; any other is converted by a re-encode', async () => {
    const plain = await makeImage('jpeg', 64, 48);
    const scans = (jpeg: Buffer) => jpeg.subarray(jpeg.indexOf(Buffer.from([0xff, 0xda])));
    const gps = { IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '1/1 2/1 3/1' } };

    const srgb = await sharp(plain).withIccProfile('srgb').withExif(gps).jpeg().toBuffer();
    assert.ok((await meta(srgb)).icc && (await meta(srgb)).exif, 'the test source carries a profile and GPS');
    const dropped = await cleanSource(Buffer.from(srgb), SETTINGS);
    assert.deepEqual([(await meta(dropped.body)).icc, (await meta(dropped.body)).exif], [undefined, undefined]);
    assert.ok(dropped.body.length < srgb.length && srgb.includes(scans(dropped.body)), 'the image data byte for byte: not re-encoded');
    assert.ok((await sharp(dropped.body).raw().toBuffer()).equals(await sharp(srgb).raw().toBuffer()), 'the same colours');

    const p3 = await sharp(plain).withIccProfile('p3').jpeg().toBuffer();
    const converted = await cleanSource(Buffer.from(p3), SETTINGS);
    assert.equal((await meta(converted.body)).icc, undefined);
    assert.ok(!p3.includes(scans(converted.body)), 'Display P3 is converted: new pixels');
  });
});
