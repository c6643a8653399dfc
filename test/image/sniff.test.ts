import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { sniffImageType } from '../../src/image/index.ts';
import type { ImageFormat } from '../../src/image/index.ts';

const MIME: Record<ImageFormat, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  tiff: 'image/tiff',
};

/** A small real image of each format, encoded by sharp. */
async function generate(format: ImageFormat): Promise<Buffer> {
  const base = sharp({ create: { width: 12, height: 8, channels: 3, background: { r: 200, g: 40, b: 90 } } });
  return base.toFormat(format).toBuffer();
}

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1');

/** An ISO-BMFF ftyp box: size, "ftyp", major brand, minor version 0, compatible brands. */
function ftyp(major: string, compatible: readonly string[], declaredSize?: number): Buffer {
  const size = declaredSize ?? 16 + 4 * compatible.length;
  const head = Buffer.alloc(8);
  head.writeUInt32BE(size, 0);
  head.write('ftyp', 4, 'latin1');
  return Buffer.concat([head, ascii(major), Buffer.alloc(4), ...compatible.map(ascii)]);
}

describe('sniffImageType', () => {
  const generated = new Map<ImageFormat, Buffer>();
  before(async () => {
    for (const format of Object.keys(MIME) as ImageFormat[]) generated.set(format, await generate(format));
  });

  test('recognises each supported format encoded by sharp', () => {
    for (const [format, buf] of generated) {
      assert.deepEqual(sniffImageType(buf), { format, mime: MIME[format] }, format);
    }
  });

  test('reads a view into a larger buffer at its own offset', () => {
    const png = generated.get('png');
    assert.ok(png);
    const backing = Buffer.concat([ascii('<html>junk'), png]);
    assert.equal(sniffImageType(backing.subarray(10))?.format, 'png');
    const avif = generated.get('avif');
    assert.ok(avif);
    const shifted = Buffer.concat([Buffer.alloc(3), avif]).subarray(3);
    assert.equal(sniffImageType(shifted)?.format, 'avif');
  });

  test('both TIFF byte orders are TIFF', () => {
    assert.equal(sniffImageType(Buffer.from([0x49, 0x49, 0x2a, 0x00, 8, 0, 0, 0]))?.format, 'tiff');
    assert.equal(sniffImageType(Buffer.from([0x4d, 0x4d, 0x00, 0x2a, 0, 0, 0, 8]))?.format, 'tiff');
  });

  test('GIF87a is GIF too', () => {
    assert.equal(sniffImageType(ascii('GIF87a\x01\x00\x01\x00'))?.format, 'gif');
  });

  test('AVIF is found by major or compatible brand, including avis sequences', () => {
    assert.deepEqual(sniffImageType(ftyp('avif', ['mif1', 'miaf'])), { format: 'avif', mime: 'image/avif' });
    assert.equal(sniffImageType(ftyp('mif1', ['miaf', 'avif']))?.format, 'avif');
    assert.equal(sniffImageType(ftyp('avis', ['avif', 'msf1']))?.format, 'avif');
  });

  test('HEIC/HEIF and other ISO-BMFF files are not AVIF', () => {
    assert.equal(sniffImageType(ftyp('heic', ['mif1', 'heic'])), undefined);
    assert.equal(sniffImageType(ftyp('mif1', ['heic', 'heix'])), undefined);
    assert.equal(sniffImageType(ftyp('isom', ['iso2', 'mp41'])), undefined); // MP4 video
  });

  test('an avif brand outside the declared ftyp box does not count', () => {
    // Box claims 16 bytes (no compatible brands); "avif" follows in the next box.
    assert.equal(sniffImageType(ftyp('mif1', ['avif'], 16)), undefined);
    // A box too small to hold a major brand and version is malformed.
    assert.equal(sniffImageType(ftyp('avif', [], 12)), undefined);
    assert.equal(sniffImageType(ftyp('avif', [], 0)), undefined);
  });

  test('binary magic wins over text inside the file', () => {
    // Like the corpus file libvips__looks-like-svg.webp: "<svg" right after the header.
    const webp = Buffer.concat([ascii('RIFF'), Buffer.from([40, 0, 0, 0]), ascii('WEBPVP8X<svg onload=alert(1)>')]);
    assert.equal(sniffImageType(webp)?.format, 'webp');
  });

  test('text, documents and unsupported image formats are not recognised', () => {
    const samples: Record<string, Buffer> = {
      empty: Buffer.alloc(0),
      svg: ascii('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
      'svg with XML prolog': ascii('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'),
      'svg after BOM and whitespace': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), ascii('  <svg/>')]),
      html: ascii('<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>'),
      pdf: ascii('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n'),
      json: ascii('{"image":"png"}'),
      gzip: Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0]),
      bmp: Buffer.concat([ascii('BM'), Buffer.alloc(60)]),
      ico: Buffer.from([0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x10, 0x10]),
      'jpeg 2000 (jp2)': Buffer.from([0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]),
      'jpeg 2000 (j2k codestream)': Buffer.from([0xff, 0x4f, 0xff, 0x51, 0, 0x2f]),
      'jpeg xl (codestream)': Buffer.from([0xff, 0x0a, 0xfa, 0x7f]),
      'jpeg xl (container)': Buffer.from([0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20, 0x0d, 0x0a, 0x87, 0x0a]),
      'RIFF but not WebP (WAV)': Buffer.concat([ascii('RIFF'), Buffer.alloc(4), ascii('WAVEfmt ')]),
      'GIF with a bad version': ascii('GIF88a\x01\x00\x01\x00'),
      'BigTIFF': Buffer.from([0x49, 0x49, 0x2b, 0x00, 8, 0, 0, 0]),
      'all zeros': Buffer.alloc(64),
    };
    for (const [name, buf] of Object.entries(samples)) {
      assert.equal(sniffImageType(buf), undefined, name);
    }
  });

  test('a signature cut short is not recognised', () => {
    const cut: Record<string, Buffer> = {
      jpeg: Buffer.from([0xff, 0xd8]),
      png: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a]),
      gif: ascii('GIF89'),
      webp: ascii('RIFF\x10\x00\x00\x00WEB'),
      tiff: Buffer.from([0x49, 0x49, 0x2a]),
      avif: ftyp('avif', []).subarray(0, 11),
    };
    for (const [name, buf] of Object.entries(cut)) {
      assert.equal(sniffImageType(buf), undefined, name);
    }
  });

  test('every prefix of a real image is safe to sniff: the right format or nothing', () => {
    for (const [format, buf] of generated) {
      for (let length = 0; length <= Math.min(buf.length, 64); length++) {
        const result = sniffImageType(buf.subarray(0, length));
        assert.ok(result === undefined || result.format === format, `${format} prefix ${length}`);
      }
      // Long enough to hold the signature: recognised.
      assert.equal(sniffImageType(buf.subarray(0, 32))?.format, format, `${format} first 32 bytes`);
    }
  });

  test('accepts a plain Uint8Array, not only a Buffer', () => {
    const generatedPng = generated.get('png');
    assert.ok(generatedPng);
    const png = new Uint8Array(generatedPng);
    assert.equal(sniffImageType(png)?.format, 'png');
  });
});
