import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import sharp from 'sharp';
import { carriesTransformOnlyMetadata, stripJpegForTransforms, stripMetadataLosslessly } from '../../src/image/strip-metadata.ts';
import { fuzzParameters } from '../fuzz/fuzz-settings.ts';
import { makeImage } from '../helpers/images.ts';

const EXIF = {
  IFD0: { Copyright: 'SECRET-COPYRIGHT', ImageDescription: 'SECRET-DESC' },
  IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 30/1', GPSLongitudeRef: 'E', GPSLongitude: '2/1 17/1 40/1' },
};
const XMP =
  '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description>SECRET-XMP</rdf:Description></rdf:RDF></x:xmpmeta>';

async function withMetadata(format: 'jpeg' | 'png' | 'webp'): Promise<Buffer> {
  const plain = await makeImage('png', 64, 48);
  return sharp(plain).withExif(EXIF).withXmp(XMP)[format]().toBuffer();
}

async function pixels(buf: Buffer): Promise<Buffer> {
  return sharp(buf).raw().toBuffer();
}

async function assertNoMetadata(buf: Buffer): Promise<void> {
  const meta = await sharp(buf).metadata();
  assert.equal(meta.exif, undefined, 'EXIF left');
  assert.equal(meta.xmp, undefined, 'XMP left');
  assert.equal(meta.iptc, undefined, 'IPTC left');
  assert.equal(meta.icc, undefined, 'ICC left');
  for (const secret of ['SECRET', 'GPS']) assert.ok(!buf.includes(secret), `${secret} still in the bytes`);
}

/** A PNG chunk with its CRC. */
function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

describe('lossless metadata stripping', () => {
  for (const format of ['jpeg', 'png', 'webp'] as const) {
    test(`${format}: EXIF (GPS) and XMP are dropped, pixels untouched`, async () => {
      const source = await withMetadata(format);
      const before = await sharp(source).metadata();
      assert.ok(before.exif && before.xmp, 'the test image carries metadata');
      const stripped = stripMetadataLosslessly(source, format, before.orientation);
      assert.ok(stripped, 'strippable without re-encoding');
      assert.ok(stripped.length < source.length);
      await assertNoMetadata(stripped);
      assert.ok((await pixels(stripped)).equals(await pixels(source)), 'pixels changed');
    });
  }

  test('jpeg: comments, APPn segments and bytes after EOI are dropped', async () => {
    const jpeg = await makeImage('jpeg', 40, 30);
    const com = Buffer.from([0xff, 0xfe, 0x00, 0x0e, ...Buffer.from('<?php x(); ?>', 'latin1').subarray(0, 12)]);
    const app13 = Buffer.concat([Buffer.from([0xff, 0xed, 0x00, 0x0e]), Buffer.from('Photoshop3.0')]);
    const hostile = Buffer.concat([jpeg.subarray(0, 2), com, app13, jpeg.subarray(2), Buffer.from('<script>trailing</script>')]);
    assert.ok((await pixels(hostile)).equals(await pixels(jpeg)), 'the hostile file still decodes the same');
    const stripped = stripMetadataLosslessly(hostile, 'jpeg', undefined);
    assert.ok(stripped);
    for (const text of ['<?php', 'Photoshop', '<script>']) assert.ok(!stripped.includes(text), text);
    assert.ok((await pixels(stripped)).equals(await pixels(jpeg)));
  });

  test('png: text, eXIf and unknown ancillary chunks and bytes after IEND are dropped', async () => {
    const png = await makeImage('png', 40, 30);
    const text = pngChunk('tEXt', Buffer.from('Comment\0<?php system($_GET[1]); ?>', 'latin1'));
    const privateChunk = pngChunk('prVt', Buffer.from('tracking-id-123'));
    const hostile = Buffer.concat([png.subarray(0, 33), text, privateChunk, png.subarray(33), Buffer.from('trailer')]);
    const stripped = stripMetadataLosslessly(hostile, 'png', undefined);
    assert.ok(stripped);
    for (const textLeft of ['<?php', 'tracking-id', 'trailer']) assert.ok(!stripped.includes(textLeft), textLeft);
    assert.ok((await pixels(stripped)).equals(await pixels(png)));
  });

  test('gif: comments and foreign application blocks are dropped; an animation keeps its frames and loop', async () => {
    const frames = await Promise.all(
      [0, 1, 2].map((i) => sharp({ create: { width: 20, height: 10, channels: 3, background: { r: 80 * i, g: 40, b: 200 - 60 * i } } }).png().toBuffer()),
    );
    const gif = await sharp(frames, { join: { animated: true } }).gif({ loop: 3 }).toBuffer();
    const comment = Buffer.concat([Buffer.from([0x21, 0xfe, 9]), Buffer.from('SECRET-GC'), Buffer.from([0])]);
    const xmpApp = Buffer.concat([Buffer.from([0x21, 0xff, 11]), Buffer.from('XMP DataXMP'), Buffer.from([4]), Buffer.from('SECR'), Buffer.from([0])]);
    const tableEnd = 13 + 3 * 2 ** (((gif[10] ?? 0) & 7) + 1);
    const hostile = Buffer.concat([gif.subarray(0, tableEnd), comment, xmpApp, gif.subarray(tableEnd)]);
    const stripped = stripMetadataLosslessly(hostile, 'gif', undefined);
    assert.ok(stripped);
    assert.ok(!stripped.includes('SECR'));
    const meta = await sharp(stripped, { animated: true }).metadata();
    assert.equal(meta.pages, 3);
    assert.equal(meta.loop, 3);
    assert.ok((await sharp(stripped, { animated: true }).raw().toBuffer()).equals(await sharp(gif, { animated: true }).raw().toBuffer()));
  });

  test('webp: VP8X flags no longer announce the dropped EXIF and XMP', async () => {
    const stripped = stripMetadataLosslessly(await withMetadata('webp'), 'webp', undefined);
    assert.ok(stripped);
    assert.equal(stripped.readUInt32LE(4) + 8, stripped.length, 'RIFF size matches');
    const vp8x = stripped.indexOf('VP8X');
    if (vp8x >= 0) assert.equal((stripped[vp8x + 8] ?? 0) & 0x0c, 0);
  });

  test('what needs new pixels is left to the re-encoder', async () => {
    const jpeg = await makeImage('jpeg', 40, 30);
    assert.equal(stripMetadataLosslessly(jpeg, 'jpeg', 6), undefined, 'EXIF orientation 6 must be applied');
    const withIcc = await sharp(jpeg).withIccProfile('p3').jpeg().toBuffer();
    assert.equal(stripMetadataLosslessly(withIcc, 'jpeg', undefined), undefined, 'an ICC profile must be converted');
    const pngIcc = await sharp(jpeg).withIccProfile('p3').png().toBuffer();
    assert.equal(stripMetadataLosslessly(pngIcc, 'png', undefined), undefined);
    const cmyk = await sharp(jpeg).toColourspace('cmyk').jpeg().toBuffer();
    assert.equal(stripMetadataLosslessly(cmyk, 'jpeg', undefined), undefined, 'CMYK must be converted');
    assert.equal(stripMetadataLosslessly(await makeImage('avif', 16, 16), 'avif', undefined), undefined);
    assert.equal(stripMetadataLosslessly(await makeImage('tiff', 16, 16), 'tiff', undefined), undefined);
  });

  test('truncated or mangled files are never "stripped": undefined, no exception', async () => {
    const files = { jpeg: await withMetadata('jpeg'), png: await withMetadata('png'), webp: await withMetadata('webp'), gif: await makeImage('gif', 20, 20) };
    for (const [format, buf] of Object.entries(files) as Array<[keyof typeof files, Buffer]>) {
      for (const cut of [1, 10, Math.floor(buf.length / 2), buf.length - 3]) {
        assert.equal(stripMetadataLosslessly(buf.subarray(0, cut), format, undefined), undefined, `${format} cut at ${cut}`);
      }
    }
    fc.assert(
      fc.property(fc.constantFrom(...(Object.keys(files) as Array<keyof typeof files>)), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (format, edits) => {
        const copy = Buffer.from(files[format]);
        for (const [at, value] of edits) copy[at % copy.length] = value;
        stripMetadataLosslessly(copy, format, undefined); // must return, never throw
      }),
      fuzzParameters(500),
    );
  });

  test('a JPEG kept for transforms: profile and orientation stay, everything else goes, and the transform sees the same image', async () => {
    const jpeg = await makeImage('jpeg', 40, 30);
    for (const orientation of [1, 3, 6, 8]) {
      const tagged = await sharp(jpeg).withIccProfile('p3').withExif(EXIF).withXmp(XMP).withMetadata({ orientation }).jpeg().toBuffer();
      const before = await sharp(tagged).metadata();
      const kept = stripJpegForTransforms(tagged, before.orientation);
      assert.ok(kept, `orientation ${orientation}: strippable`);
      const after = await sharp(kept).metadata();
      assert.equal(after.orientation ?? 1, orientation, 'orientation kept');
      assert.ok(after.icc?.equals(before.icc ?? Buffer.alloc(0)), 'profile kept byte for byte');
      assert.equal(after.xmp, undefined, 'XMP left');
      for (const secret of ['SECRET', 'GPS']) assert.ok(!kept.includes(secret), `${secret} still in the bytes`);
      assert.equal(carriesTransformOnlyMetadata(kept), true, 'passthrough must not serve it as it is');
      // What a transform makes (oriented, sRGB) is the same from either file.
      const made = async (b: Buffer) => sharp(b, { autoOrient: true }).resize(20).raw().toBuffer();
      assert.ok((await made(kept)).equals(await made(tagged)), `orientation ${orientation}: same pixels after the transform`);
    }
    const cmyk = await sharp(jpeg).toColourspace('cmyk').jpeg().toBuffer();
    assert.ok(stripJpegForTransforms(cmyk, undefined), 'CMYK is kept for transforms (they convert it)');
  });

  test('carriesTransformOnlyMetadata: true only for a JPEG with EXIF or a profile before its image data', async () => {
    const jpeg = await makeImage('jpeg', 40, 30);
    const clean = stripMetadataLosslessly(await withMetadata('jpeg'), 'jpeg', undefined);
    assert.ok(clean);
    assert.equal(carriesTransformOnlyMetadata(clean), false);
    assert.equal(carriesTransformOnlyMetadata(await sharp(jpeg).withIccProfile('p3').jpeg().toBuffer()), true);
    assert.equal(carriesTransformOnlyMetadata(await sharp(jpeg).withMetadata({ orientation: 6 }).jpeg().toBuffer()), true);
    assert.equal(carriesTransformOnlyMetadata(await sharp(jpeg).withIccProfile('p3').png().toBuffer()), false, 'JPEG only');
    assert.equal(carriesTransformOnlyMetadata(Buffer.from([0xff, 0xd8, 0xff])), false, 'truncated: no');
  });
});
