import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import sharp from 'sharp';
import { carriesTransformOnlyMetadata, restoreInput, stripJpegForTransforms, stripMetadataLosslessly } from '../../src/image/strip-metadata.ts';
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

/** A photo-sized JPEG: its metadata is small beside the image data, as in camera files. */
async function photoJpeg(tags: { orientation?: number; icc?: boolean } = {}): Promise<Buffer> {
  let image = sharp(await makeImage('png', 480, 360)).withExif(EXIF).withXmp(XMP);
  if (tags.icc) image = image.withIccProfile('p3');
  if (tags.orientation !== undefined) image = image.withMetadata({ orientation: tags.orientation });
  return image.jpeg({ quality: 95 }).toBuffer();
}

/** Where the segments before the first scan start (after SOI): the places a metadata segment can sit. */
function segmentStarts(jpeg: Buffer): number[] {
  const starts: number[] = [];
  for (let pos = 2; jpeg[pos + 1] !== 0xda; pos += 2 + jpeg.readUInt16BE(pos + 2)) starts.push(pos);
  return starts;
}

function segment(marker: number, payload: Buffer): Buffer {
  const head = Buffer.from([0xff, marker, 0, 0]);
  head.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([head, payload]);
}

/** A JPEG that starts like a camera's or an editor's: SOI, then a plain JFIF APP0 (sharp writes none), then the tables. */
async function jfifJpeg(): Promise<Buffer> {
  const jpeg = await sharp(await makeImage('png', 320, 240)).jpeg({ quality: 95 }).toBuffer();
  const jfif = segment(0xe0, Buffer.from([0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]));
  return Buffer.concat([jpeg.subarray(0, 2), jfif, jpeg.subarray(2)]);
}

/** True when `view`'s bytes lie inside `input`'s (two slices of one pool slab are not views of each other). */
function isViewOf(view: Buffer, input: Buffer): boolean {
  return view.buffer === input.buffer && view.byteOffset >= input.byteOffset && view.byteOffset + view.length <= input.byteOffset + input.length;
}

describe('the stripped JPEG built inside the fetched buffer (reuseInput)', () => {
  const strippers = {
    serve: (buf: Buffer, orientation: number | undefined, reuse: boolean) => stripMetadataLosslessly(buf, 'jpeg', orientation, reuse),
    transform: (buf: Buffer, orientation: number | undefined, reuse: boolean) => stripJpegForTransforms(buf, orientation, reuse),
  };

  for (const [use, tags] of [['serve', {}], ['transform', {}], ['transform', { orientation: 6, icc: true }], ['transform', { orientation: 3 }]] as const) {
    test(`${use} ${JSON.stringify(tags)}: the same bytes as the copy, as a view of the input; restoreInput() gives the input back`, async () => {
      const original = await photoJpeg(tags);
      const orientation = (await sharp(original).metadata()).orientation;
      const copied = strippers[use](Buffer.from(original), orientation, false);
      assert.ok(copied);
      const input = Buffer.from(original);
      const inPlace = strippers[use](input, orientation, true);
      assert.ok(inPlace);
      assert.ok(isViewOf(inPlace, input), 'built inside the input, not copied');
      assert.ok(inPlace.equals(copied), 'the same file either way');
      for (const secret of ['SECRET', 'GPS']) assert.ok(!inPlace.includes(secret), `${secret} still in the bytes`);
      assert.equal((await sharp(inPlace).metadata()).orientation ?? 1, use === 'transform' ? (tags.orientation ?? 1) : 1);
      restoreInput(inPlace);
      assert.ok(input.equals(original), 'the input is back as fetched');
    });
  }

  test('a file whose metadata outweighs its image data is copied instead, and the input is left alone', async () => {
    const small = await makeImage('jpeg', 40, 30);
    const bulky = Buffer.concat([small.subarray(0, 2), segment(0xe1, Buffer.alloc(30_000, 0x41)), small.subarray(2)]);
    const input = Buffer.from(bulky);
    const stripped = stripMetadataLosslessly(input, 'jpeg', undefined, true);
    assert.ok(stripped);
    assert.ok(!isViewOf(stripped, input), 'a view would keep 30 KB of dropped bytes alive for a small image');
    assert.ok(input.equals(bulky));
    assert.ok((await pixels(stripped)).equals(await pixels(small)));
  });

  test('dropped bytes only before JFIF, with an orientation block to insert: JFIF would have to move down, so it is copied', async () => {
    const base = await jfifJpeg();
    const original = Buffer.concat([base.subarray(0, 2), segment(0xfe, Buffer.alloc(100, 0x43)), base.subarray(2)]);
    const copied = stripJpegForTransforms(Buffer.from(original), 6, false);
    const input = Buffer.from(original);
    const stripped = stripJpegForTransforms(input, 6, true);
    assert.ok(stripped && copied);
    assert.ok(stripped.equals(copied));
    assert.ok(!isViewOf(stripped, input));
    assert.ok(input.equals(original), 'the input is left alone');
    assert.equal((await sharp(stripped).metadata()).orientation, 6);
  });

  test('property: wherever metadata segments sit, the result is the copy\'s bytes; a view restores its input, a copy leaves it alone', async () => {
    const base = await jfifJpeg();
    const starts = segmentStarts(base);
    const kinds = [0xe1, 0xe2, 0xed, 0xfe, 0xe0];
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(starts.length - 1), fc.nat(kinds.length - 1), fc.integer({ min: 0, max: 4000 })), { maxLength: 5 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        (inserts, orientation, forTransforms) => {
          const at = new Map<number, Buffer[]>();
          for (const [where, kind, size] of inserts) {
            const marker = kinds[kind] ?? 0xe1;
            // APP0 that is not plain JFIF, APP1 junk, APP13, COM; an APP2 ICC profile only where the transform keeps one.
            const payload = marker === 0xe2 ? Buffer.concat([Buffer.from('ICC_PROFILE\0\x01\x01', 'latin1'), Buffer.alloc(size, 7)]) : Buffer.alloc(size, 0x5a);
            const list = at.get(starts[where] ?? 2) ?? [];
            list.push(segment(marker, payload));
            at.set(starts[where] ?? 2, list);
          }
          const pieces: Buffer[] = [];
          let from = 0;
          for (const start of [...at.keys()].sort((a, b) => a - b)) {
            pieces.push(base.subarray(from, start), ...(at.get(start) ?? []));
            from = start;
          }
          pieces.push(base.subarray(from));
          const original = Buffer.concat(pieces);
          const strip = (buf: Buffer, reuse: boolean) =>
            forTransforms ? stripJpegForTransforms(buf, orientation, reuse) : stripMetadataLosslessly(buf, 'jpeg', undefined, reuse);
          const copied = strip(Buffer.from(original), false);
          const input = Buffer.from(original);
          const result = strip(input, true);
          assert.equal(result === undefined, copied === undefined);
          if (result === undefined || copied === undefined) return;
          assert.ok(result.equals(copied), 'same bytes as the copy');
          if (isViewOf(result, input)) restoreInput(result);
          assert.ok(input.equals(original), 'the input is as fetched (restored, or never touched)');
        },
      ),
      fuzzParameters(300),
    );
  });
});
