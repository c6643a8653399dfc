import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { FastImageCacheError } from '../../src/errors.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { verifyImage } from '../../src/image/index.ts';
import type { ImageFormat } from '../../src/image/index.ts';

const FORMATS: Record<ImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  tiff: 'image/tiff',
};

function solid(width: number, height: number): Sharp {
  return sharp({ create: { width, height, channels: 3, background: { r: 30, g: 160, b: 220 } } });
}

/** Noise does not compress, so the file has real entropy-coded data all the way to its end. */
function noise(width: number, height: number): Sharp {
  return sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 50 } } });
}

async function assertRefused(promise: Promise<unknown>, code: ErrorCode, label?: string): Promise<FastImageCacheError> {
  const err = await promise.then(
    (value) => assert.fail(`${label ?? 'image'} verified but should be ${code}: ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FastImageCacheError, `${label ?? 'image'}: not a FastImageCacheError: ${String(err)}`);
  assert.equal(err.code, code, `${label ?? 'image'}: ${err.detail}`);
  return err;
}

/** One PNG chunk: length, type, data, CRC over type+data. */
function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** A valid-looking PNG of a few hundred bytes whose header claims width x height greyscale pixels. */
function pixelBombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.writeUInt8(8, 8); // bit depth
  ihdr.writeUInt8(0, 9); // colour type: greyscale
  // compression, filter, interlace: 0
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(1 + width))), // one filtered row; the rest would be zeros
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('verifyImage', () => {
  test('verifies each supported format with format, mime and size from the bytes', async () => {
    for (const [format, mime] of Object.entries(FORMATS) as [ImageFormat, string][]) {
      const buf = await solid(40, 30).toFormat(format).toBuffer();
      assert.deepEqual(await verifyImage(buf), { format, mime, width: 40, height: 30 }, format);
    }
  });

  test('reports AVIF as image/avif although sharp calls it heif', async () => {
    const buf = await solid(16, 16).avif().toBuffer();
    assert.equal((await sharp(buf).metadata()).format, 'heif');
    assert.equal((await verifyImage(buf)).mime, 'image/avif');
  });

  test('reports the stored size, before EXIF orientation', async () => {
    const buf = await solid(40, 30).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const verified = await verifyImage(buf);
    assert.equal(verified.width, 40);
    assert.equal(verified.height, 30);
  });

  test('a truncated JPEG is not an image', async () => {
    const buf = await noise(200, 150).jpeg().toBuffer();
    const err = await assertRefused(verifyImage(buf.subarray(0, buf.length >> 1)), 'not_an_image');
    assert.match(err.detail ?? '', /^sharp: /, 'sharp message kept for the log');
  });

  test('a JPEG missing only its last rows is not an image (no shrink-on-load shortcut)', async () => {
    // Large enough that a 64 px thumbnail would use JPEG shrink-on-load, which
    // never reads the final rows and so accepts this file.
    const buf = await noise(1200, 900).jpeg({ quality: 90 }).toBuffer();
    await assertRefused(verifyImage(buf.subarray(0, buf.length - 5000)), 'not_an_image');
  });

  test('a truncated PNG is not an image', async () => {
    const buf = await noise(200, 150).png().toBuffer();
    await assertRefused(verifyImage(buf.subarray(0, buf.length >> 1)), 'not_an_image', 'half');
    await assertRefused(verifyImage(buf.subarray(0, buf.length - 100)), 'not_an_image', 'last 100 bytes cut');
  });

  test('a truncated WebP is not an image, also when large', async () => {
    const buf = await noise(1200, 900).webp({ quality: 80 }).toBuffer();
    await assertRefused(verifyImage(buf.subarray(0, buf.length - 200)), 'not_an_image');
  });

  test('a corrupt body behind valid magic bytes is not an image', async () => {
    const png = await noise(64, 64).png().toBuffer();
    const corrupt = Buffer.from(png);
    corrupt.fill(0xa5, 60, 400); // inside IDAT: the chunk CRC and the deflate stream break
    await assertRefused(verifyImage(corrupt), 'not_an_image');
  });

  test('a pixel bomb is too_large, refused from its header in well under a second', async () => {
    const bomb = pixelBombPng(100_000, 100_000);
    assert.ok(bomb.length < 1000, `bomb is ${bomb.length} bytes`);
    const started = performance.now();
    const err = await assertRefused(verifyImage(bomb), 'too_large');
    const elapsed = performance.now() - started;
    assert.match(err.detail ?? '', /pixel limit/);
    assert.ok(elapsed < 1000, `took ${elapsed.toFixed(0)} ms`);
  });

  test('the pixel bomb is a well-formed PNG header (the refusal is the limit, not a parse error)', async () => {
    const meta = await sharp(pixelBombPng(100_000, 100_000), { limitInputPixels: false }).metadata();
    assert.equal(meta.width, 100_000);
    assert.equal(meta.height, 100_000);
  });

  test('non-images are not images, whatever they contain', async () => {
    const samples: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      svg: Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'),
      html: Buffer.from('<!DOCTYPE html><html><body>hello</body></html>'),
      pdf: Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n'),
      bmp: await solid(4, 4).raw().toBuffer().then((raw) => Buffer.concat([Buffer.from('BM'), raw])),
    };
    for (const [name, buf] of Object.entries(samples)) {
      await assertRefused(verifyImage(buf), 'not_an_image', name);
    }
  });

  test('JPEG takes the cheap shrink-on-load check, and no cut after the first scan gets through', async () => {
    for (const progressive of [false, true]) {
      const buf = await noise(1200, 900).jpeg({ quality: 90, progressive }).toBuffer();
      await verifyImage(Buffer.concat([buf, Buffer.from('trailing bytes after EOI are tolerated')]));
      const firstScan = buf.indexOf(Buffer.from([0xff, 0xda]));
      const cuts = [
        ...Array.from({ length: 12 }, (_, i) => firstScan + Math.floor(((buf.length - firstScan) * (i + 1)) / 13)),
        ...[2, 20, 200, 1000, 3000].map((k) => buf.length - k), // the last rows only
      ];
      for (const cut of cuts) {
        await assertRefused(verifyImage(buf.subarray(0, cut)), 'not_an_image', `progressive ${progressive}: cut at ${cut} of ${buf.length}`);
      }
    }
  });

  test('an embedded thumbnail\'s end marker does not vouch for a truncated main image', async () => {
    const main = await noise(800, 600).jpeg().toBuffer();
    const thumb = await noise(16, 16).jpeg().toBuffer();
    const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), thumb]);
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff]), payload]);
    const withThumb = Buffer.concat([main.subarray(0, 2), app1, main.subarray(2)]);
    await verifyImage(withThumb);
    await assertRefused(verifyImage(withThumb.subarray(0, withThumb.length - 3000)), 'not_an_image');
  });

  test('allowedFormats refuses formats outside the list', async () => {
    const png = await solid(8, 8).png().toBuffer();
    await assertRefused(verifyImage(png, { allowedFormats: ['jpeg', 'webp'] }), 'not_an_image');
    assert.equal((await verifyImage(png, { allowedFormats: ['png'] })).format, 'png');
  });
});
