import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import sharp from 'sharp';
import { readJpegHeader } from '../../src/image/jpeg-header.ts';
import { inspectImage } from '../../src/image/verify.ts';
import { loadCorpus, readCorpusFile } from '../helpers/corpus.ts';
import { fuzzParameters } from '../fuzz/fuzz-settings.ts';
import { makeImage } from '../helpers/images.ts';

/** A JPEG segment: marker, length, payload. */
function segment(marker: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(0xff00 | marker, 0);
  head.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([head, payload]);
}

/** `jpeg` with `segments` inserted right after SOI. */
function withSegments(jpeg: Buffer, ...segments: Buffer[]): Buffer {
  return Buffer.concat([jpeg.subarray(0, 2), ...segments, jpeg.subarray(2)]);
}

interface IfdEntry {
  tag: number;
  type: number;
  count: number;
  /** The 4-byte value/offset field as a number (written in the block's byte order). */
  value: number;
}

/** An APP1 EXIF block holding a TIFF header and IFD0 with `entries` (plus `tail` bytes after it). */
function exifBlock(order: 'II' | 'MM', entries: readonly IfdEntry[], tail = 0): Buffer {
  const tiff = Buffer.alloc(8 + 2 + 12 * entries.length + 4 + tail);
  const le = order === 'II';
  const u16 = (v: number, at: number) => (le ? tiff.writeUInt16LE(v, at) : tiff.writeUInt16BE(v, at));
  const u32 = (v: number, at: number) => (le ? tiff.writeUInt32LE(v, at) : tiff.writeUInt32BE(v, at));
  tiff.write(order, 0, 'latin1');
  u16(42, 2);
  u32(8, 4);
  u16(entries.length, 8);
  entries.forEach((e, i) => {
    const at = 10 + 12 * i;
    u16(e.tag, at);
    u16(e.type, at + 2);
    u32(e.count, at + 4);
    // A SHORT value sits in the first two bytes of the field, in the block's byte order.
    if (e.type === 3 && e.count === 1) u16(e.value, at + 8);
    else u32(e.value, at + 8);
  });
  return segment(0xe1, Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]));
}

const orientationEntry = (value: number): IfdEntry => ({ tag: 0x0112, type: 3, count: 1, value });

/** What readJpegHeader claims must be what sharp's metadata() reads. */
async function assertAgreesWithSharp(jpeg: Buffer, label: string): Promise<boolean> {
  const ours = readJpegHeader(jpeg);
  if (ours === undefined) return false;
  const meta = await sharp(jpeg).metadata();
  assert.equal(ours.width, meta.width, `${label}: width`);
  assert.equal(ours.height, meta.height, `${label}: height`);
  assert.equal(ours.components, meta.channels, `${label}: components`);
  assert.equal(ours.orientation, meta.orientation, `${label}: orientation`);
  assert.equal(ours.icc?.toString('hex'), meta.icc?.toString('hex'), `${label}: ICC profile`);
  return true;
}

describe('JPEG header from its segments', () => {
  test('size, components, orientation and ICC profile agree with sharp on generated JPEGs', async () => {
    const base = await makeImage('png', 40, 30);
    const cases: Array<[string, Buffer]> = [
      ['plain', await sharp(base).jpeg().toBuffer()],
      ['progressive', await sharp(base).jpeg({ progressive: true }).toBuffer()],
      ['grey', await sharp(base).greyscale().jpeg().toBuffer()],
      ['CMYK', await sharp(base).toColourspace('cmyk').jpeg().toBuffer()],
      ['P3 profile', await sharp(base).withIccProfile('p3').jpeg().toBuffer()],
      ['EXIF without orientation', await sharp(base).withExif({ IFD0: { Copyright: 'x' } }).jpeg().toBuffer()],
    ];
    for (let o = 1; o <= 8; o++) cases.push([`orientation ${o}`, await sharp(base).withMetadata({ orientation: o }).jpeg().toBuffer()]);
    for (const [label, jpeg] of cases) assert.ok(await assertAgreesWithSharp(jpeg, label), `${label}: read from the segments`);
  });

  test('both byte orders; an Orientation after other IFD0 entries and with out-of-line data', async () => {
    const jpeg = await makeImage('jpeg', 24, 16);
    for (const order of ['II', 'MM'] as const) {
      const entries: IfdEntry[] = [
        { tag: 0x010f, type: 2, count: 12, value: 8 + 2 + 12 * 3 + 4 }, // Make, ASCII stored after the IFD
        { tag: 0x011a, type: 5, count: 1, value: 8 + 2 + 12 * 3 + 4 + 12 }, // XResolution, RATIONAL stored after it
        orientationEntry(6),
      ];
      const tagged = withSegments(jpeg, exifBlock(order, entries, 20));
      assert.equal(readJpegHeader(tagged)?.orientation, 6, order);
      assert.ok(await assertAgreesWithSharp(tagged, order));
    }
  });

  test('an ICC profile in several chunks, in any order, is joined in sequence order', async () => {
    const jpeg = await makeImage('jpeg', 24, 16);
    const profile = (await sharp(await sharp(jpeg).withIccProfile('p3').jpeg().toBuffer()).metadata()).icc;
    assert.ok(profile);
    const third = Math.ceil(profile.length / 3);
    const chunk = (seq: number) =>
      segment(0xe2, Buffer.concat([Buffer.from('ICC_PROFILE\0', 'latin1'), Buffer.from([seq, 3]), profile.subarray((seq - 1) * third, seq * third)]));
    const tagged = withSegments(jpeg, chunk(2), chunk(1), chunk(3));
    assert.ok(readJpegHeader(tagged)?.icc?.equals(profile), 'profile joined in order');
    assert.ok(await assertAgreesWithSharp(tagged, 'three chunks'));
  });

  test('anything unusual is left to sharp (undefined)', async () => {
    const jpeg = await makeImage('jpeg', 24, 16);
    const icc = (seq: number, count: number) => segment(0xe2, Buffer.concat([Buffer.from('ICC_PROFILE\0', 'latin1'), Buffer.from([seq, count, 1, 2, 3])]));
    const unusual: Array<[string, Buffer]> = [
      ['not a JPEG', await makeImage('png', 8, 8)],
      ['cut inside the header', jpeg.subarray(0, 20)],
      ['two EXIF blocks', withSegments(jpeg, exifBlock('II', [orientationEntry(3)]), exifBlock('MM', [orientationEntry(6)]))],
      ['orientation 0', withSegments(jpeg, exifBlock('II', [orientationEntry(0)]))],
      ['orientation 9', withSegments(jpeg, exifBlock('MM', [orientationEntry(9)]))],
      ['orientation as a LONG', withSegments(jpeg, exifBlock('II', [{ tag: 0x0112, type: 4, count: 1, value: 6 }]))],
      ['orientation given twice', withSegments(jpeg, exifBlock('II', [orientationEntry(6), orientationEntry(6)]))],
      ['an entry of an unknown type', withSegments(jpeg, exifBlock('II', [{ tag: 0x010f, type: 13, count: 1, value: 0 }, orientationEntry(6)]))],
      ['an entry whose data lies past the block', withSegments(jpeg, exifBlock('MM', [{ tag: 0x010f, type: 2, count: 40, value: 4000 }, orientationEntry(6)]))],
      ['a bad TIFF byte order', withSegments(jpeg, Buffer.from(exifBlock('II', [orientationEntry(6)]).toString('latin1').replace('II*', 'IM*'), 'latin1'))],
      ['ICC chunk 2 of 2 missing', withSegments(jpeg, icc(1, 2))],
      ['ICC chunk given twice', withSegments(jpeg, icc(1, 1), icc(1, 1))],
      ['ICC chunk numbered 0', withSegments(jpeg, icc(0, 1))],
      ['a lossless (SOF3) frame', Buffer.from(jpeg.toString('latin1').replace('\xff\xc0', '\xff\xc3'), 'latin1')],
    ];
    for (const [label, buf] of unusual) assert.equal(readJpegHeader(buf), undefined, label);
  });

  test('property: whenever it reads an orientation from an EXIF block, libvips (through sharp) reads the same one', async () => {
    const jpeg = await makeImage('jpeg', 16, 12);
    const entry = fc.record({
      tag: fc.constantFrom(0x010e, 0x010f, 0x0110, 0x011a, 0x0128, 0x0131, 0x8769, 0x0112),
      // Mostly well-formed entries (types 1-12, data inside the block), some not.
      type: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 14 }) }),
      count: fc.integer({ min: 0, max: 4 }),
      value: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 8, max: 60 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 400 }) }),
    });
    const block = fc.record({
      order: fc.constantFrom('II' as const, 'MM' as const),
      before: fc.array(entry, { maxLength: 4 }),
      orientation: fc.option(fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 8 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 10 }) }), {
        nil: undefined,
      }),
      after: fc.array(entry, { maxLength: 3 }),
      tail: fc.integer({ min: 32, max: 96 }),
    });
    let read = 0;
    await fc.assert(
      fc.asyncProperty(block, async (b) => {
        const entries = [...b.before, ...(b.orientation === undefined ? [] : [orientationEntry(b.orientation)]), ...b.after];
        if (entries.length === 0) return;
        const tagged = withSegments(jpeg, exifBlock(b.order, entries, b.tail));
        if (await assertAgreesWithSharp(tagged, JSON.stringify(b))) read += 1;
      }),
      fuzzParameters(150),
    );
    assert.ok(read > 40, `the reader vouched for only ${read} of the generated blocks`);
  });

  test('inspectImage takes a plain JPEG from its segments, with the same pixel limit and truncation checks', async () => {
    const jpeg = await sharp(await makeImage('png', 40, 30)).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const inspected = await inspectImage(jpeg, { maxPixels: 1200 });
    assert.deepEqual([inspected.width, inspected.height, inspected.header.orientation], [40, 30, 6]);
    await assert.rejects(inspectImage(jpeg, { maxPixels: 1199 }), { code: 'too_large' });
    await assert.rejects(inspectImage(jpeg.subarray(0, jpeg.length - 2), {}), { code: 'not_an_image' });
    await assert.rejects(inspectImage(jpeg, { allowedFormats: ['png'] }), { code: 'not_an_image' });
  });
});

const corpus = loadCorpus();

describe('JPEG header from its segments: the corpus', () => {
  test('every corpus JPEG it reads agrees with sharp, and it reads most of the valid ones', { skip: corpus.skip }, async () => {
    if (corpus.skip !== undefined) return;
    let valid = 0;
    let readValid = 0;
    for (const row of corpus.rows) {
      const body = readCorpusFile(corpus.root, row);
      if (!(body[0] === 0xff && body[1] === 0xd8)) continue;
      let agreed = false;
      try {
        agreed = await assertAgreesWithSharp(body, row.path);
      } catch (err) {
        // sharp may refuse a file whose header we read (a corrupt one): the transform decodes it and refuses it then.
        if (err instanceof assert.AssertionError) throw err;
      }
      if (row.path.startsWith('valid/')) {
        valid += 1;
        if (agreed) readValid += 1;
      }
    }
    assert.ok(valid > 0, 'the corpus has valid JPEGs');
    assert.ok(readValid >= valid * 0.75, `read ${readValid} of ${valid} valid JPEGs from their segments`);
  });
});
