import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { ConfigError, FastImageCacheError } from '../../src/errors.ts';
import { ImageProcessor, type ImageProcessorSettings } from '../../src/image/processor.ts';
import { makeImage } from '../helpers/images.ts';

function settings(overrides: Partial<ImageProcessorSettings> = {}): ImageProcessorSettings {
  return {
    presets: { thumb: { width: 150, height: 150, format: 'webp' } },
    transforms: { allowAdHoc: true, maxWidth: 4096, maxHeight: 4096, concurrency: 2, queueSize: 8, timeoutMs: 10_000 },
    maxSourcePixels: 50_000_000,
    maxSourceFrames: 1000,
    stripMetadata: true,
    svg: 'refuse',
    inputFormats: ['jpeg', 'png', 'gif', 'webp'],
    ...overrides,
  };
}

async function code(run: Promise<unknown>): Promise<string> {
  const err = await run.then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FastImageCacheError, String(err));
  return err.code;
}

const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect width="20" height="10" fill="blue"/></svg>');

describe('ImageProcessor', () => {
  test('inputFormats switch decoders off and on; AVIF and TIFF are not in the defaults', async () => {
    const avif = await makeImage('avif', 16, 16);
    const tiff = await makeImage('tiff', 16, 16);
    const strict = new ImageProcessor(settings());
    assert.equal(await code(strict.prepareSource(avif)), 'not_an_image');
    assert.equal(await code(strict.prepareSource(tiff)), 'not_an_image');
    const open = new ImageProcessor(settings({ inputFormats: ['jpeg', 'avif', 'tiff'] }));
    assert.equal((await open.prepareSource(avif)).contentType, 'image/avif');
    assert.equal((await open.prepareSource(tiff)).contentType, 'image/png', 'TIFF is kept as PNG');
    assert.equal(await code(open.prepareSource(await makeImage('png', 4, 4))), 'not_an_image', 'PNG switched off');
    // A source cached while its format was on is not decoded again once it is off.
    assert.equal(await code(strict.transform(avif, strict.plan({ width: 8 }, undefined))), 'not_an_image');
  });

  test('SVG: refused by default, rasterized to PNG when asked, never kept as SVG', async () => {
    assert.equal(await code(new ImageProcessor(settings()).prepareSource(SVG)), 'not_an_image');
    const rasterizing = new ImageProcessor(settings({ svg: 'rasterize' }));
    const source = await rasterizing.prepareSource(SVG);
    assert.equal(source.contentType, 'image/png');
    assert.deepEqual([(await sharp(source.body).metadata()).width, (await sharp(source.body).metadata()).height], [20, 10]);
    const variant = await rasterizing.transform(source.body, rasterizing.plan({ width: 10, format: 'webp' }, undefined));
    assert.equal(variant.contentType, 'image/webp');
  });

  test('stripMetadata decides what the cache keeps as the source', async () => {
    const tagged = await sharp(await makeImage('png', 32, 32)).withExif({ IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '1/1 2/1 3/1' } }).jpeg().toBuffer();
    const kept = await new ImageProcessor(settings({ stripMetadata: false })).prepareSource(tagged);
    assert.ok(kept.body.equals(tagged), 'stripMetadata off: the bytes as fetched');
    const cleaned = await new ImageProcessor(settings()).prepareSource(tagged);
    assert.equal((await sharp(cleaned.body).metadata()).exif, undefined);
    assert.equal(cleaned.contentType, 'image/jpeg');
  });

  test('a source fetched for a variant is decoded once, by the transform; passthrough decodes before serving', async () => {
    const images = new ImageProcessor(settings());
    const corrupt = await makeImage('png', 64, 64);
    corrupt.fill(0xa5, corrupt.indexOf('IDAT') + 200, corrupt.indexOf('IDAT') + 600); // inside IDAT: the header reads fine, the pixels do not decode
    const variant = images.plan({ width: 16 }, undefined);
    const passthrough = images.plan(undefined, undefined);

    // For a variant, only the cheap checks run here…
    const stored = await images.forRequest(variant, () => images.prepareSource(corrupt));
    // …and the transform's decode is the check: the source is refused there.
    assert.equal(await code(images.transform(stored.body, variant)), 'not_an_image');
    // Passthrough never serves what has not decoded.
    assert.equal(await code(images.ensureDecoded(stored.body, 'a'.repeat(64))), 'not_an_image');
    // Fetched for passthrough (or with no request context), the full decode runs at once.
    assert.equal(await code(images.forRequest(passthrough, () => images.prepareSource(corrupt))), 'not_an_image');
    assert.equal(await code(images.prepareSource(corrupt)), 'not_an_image');

    // A good source decoded by a transform is not decoded again for passthrough.
    const goodPng = await makeImage('png', 32, 32);
    const good = await images.forRequest(variant, () => images.prepareSource(goodPng));
    await images.transform(good.body, variant, 'b'.repeat(64));
    await images.ensureDecoded(Buffer.from('not even an image'), 'b'.repeat(64)); // known to decode: no work
  });

  test('plans: variant ids, Vary only for f:auto, presets', () => {
    const images = new ImageProcessor(settings());
    assert.deepEqual(images.plan(undefined, undefined), { id: '_', variant: {}, varyAccept: false });
    assert.equal(images.plan({ preset: 'thumb' }, 'image/avif,image/webp').id, 'f:webp,h:150,w:150');
    const auto = images.plan({ width: 100, format: 'auto' }, 'image/avif,image/webp,*/*');
    assert.deepEqual([auto.id, auto.varyAccept], ['f:avif+webp,w:100', true]);
    assert.equal(images.plan({ width: 100, format: 'auto' }, 'text/html').id, 'w:100');
  });

  test('the fingerprint follows what changes variant bytes', () => {
    const a = new ImageProcessor(settings()).fingerprint;
    assert.equal(new ImageProcessor(settings()).fingerprint, a);
    assert.notEqual(new ImageProcessor(settings({ stripMetadata: false })).fingerprint, a);
    assert.notEqual(new ImageProcessor(settings({ maxSourcePixels: 1000 })).fingerprint, a);
  });

  test('a preset larger than the size limits is a configuration error naming it', () => {
    assert.throws(
      () => new ImageProcessor(settings({ presets: { big: { width: 5000 } } })),
      (err: unknown) => err instanceof ConfigError && err.key === 'presets.big.width',
    );
  });
});
