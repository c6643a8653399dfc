import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { loadCorpus, type CorpusRow } from '../helpers/corpus.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

/**
 * The real-world corpus through transforms: every valid file through a
 * preset (decodes, exact size and type, no EXIF/XMP/IPTC/ICC, animations
 * still animated), the orientation series checked pixel by pixel against an
 * upright reference, f:auto with each kind of Accept header on a
 * representative subset, and every other file refused.
 */
const corpus = loadCorpus();
const skip = 'skip' in corpus ? corpus.skip : false;

const CARD = { width: 96, height: 72, fit: 'cover', format: 'webp', quality: 70 };

/** One file of each kind that matters for negotiation: formats, alpha, 16-bit, CMYK, animation, orientation, GPS. */
const AUTO_SUBSET = new Set([
  'valid/sharp__Landscape_6.jpg',
  'valid/exifsamples__DSCN0010.jpg',
  'valid/sharp__Channel_digital_image_CMYK_color.jpg',
  'valid/sharp__4.webp',
  'valid/sharp__5_webp_a.webp',
  'valid/pngsuite__basn6a16.png',
  'valid/libvips__cogs-apng.png',
  'valid/libavif__kodim23_yuv420_8bpc.avif',
  'valid/wuffs__hippopotamus.tiff',
  'valid/sharp__animated-loop-3.gif',
  'valid/sharp__rotating-squares.webp',
  'valid/sharp__big-height.webp',
]);

const ACCEPTS = [
  { name: 'avif+webp', header: 'image/avif,image/webp,image/apng,image/*,*/*;q=0.8' },
  { name: 'webp', header: 'image/webp,*/*' },
  { name: 'none', header: '*/*' },
] as const;

/** Frames the manifest notes for an animation (`animated 10 frames`), else 1. */
function framesOf(row: CorpusRow): number {
  return Number(/animated (\d+) frames/.exec(row.note)?.[1] ?? 1);
}

/** The type `f:auto` must give for a client taking `accept`. */
function negotiated(row: CorpusRow, accept: (typeof ACCEPTS)[number]['name']): string {
  const animated = framesOf(row) > 1;
  if (accept === 'avif+webp') return animated ? 'image/webp' : 'image/avif';
  if (accept === 'webp') return 'image/webp';
  return row.content_type === 'image/tiff' ? 'image/png' : row.content_type;
}

/** Mean absolute difference of two equally sized raw RGB images. */
function meanDiff(a: Buffer, b: Buffer): number {
  assert.equal(a.length, b.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] ?? 0) - (b[i] ?? 0));
  return sum / a.length;
}

async function rgb(input: Buffer, autoOrient: boolean, width: number, height: number): Promise<Buffer> {
  return sharp(input, { autoOrient }).resize(width, height, { fit: 'fill' }).removeAlpha().toColourspace('srgb').raw().toBuffer();
}

describe('corpus through transforms', { skip }, () => {
  if ('skip' in corpus) return;
  let origin: Origin;
  let proxy: TestProxy;
  const valid = corpus.rows.filter((r) => r.expect === 'accept');

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({
      presets: { card: CARD },
      inputFormats: ['jpeg', 'png', 'gif', 'webp', 'avif', 'tiff'],
      rateLimit: { perSecond: 0 },
      transforms: { timeoutMs: 60_000 },
    });
    for (const row of corpus.rows) {
      origin.serve(`/c/${encodeURIComponent(row.path)}`, readFileSync(join(corpus.root, row.path)), { contentType: 'application/octet-stream' });
    }
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  const fetchVariant = async (row: CorpusRow, options: string, accept?: string) => {
    const res = await fetch(proxy.signedUrl(`${origin.url}/c/${encodeURIComponent(row.path)}`, options), accept ? { headers: { accept } } : {});
    return { res, body: Buffer.from(await res.arrayBuffer()) };
  };

  describe('every valid file through p:card (96x72 WebP)', () => {
    for (const row of valid) {
      test(row.path, async () => {
        const { res, body } = await fetchVariant(corpus.rows.find((r) => r === row) ?? row, 'p:card');
        assert.equal(res.status, 200, body.toString('utf8', 0, 200));
        assert.equal(res.headers.get('content-type'), 'image/webp');
        const meta = await sharp(body, { animated: true }).metadata();
        assert.equal(meta.format, 'webp');
        assert.deepEqual([meta.width, meta.pageHeight ?? meta.height], [CARD.width, CARD.height]);
        assert.deepEqual([meta.exif, meta.xmp, meta.iptc, meta.icc], [undefined, undefined, undefined, undefined], 'metadata left');
        await sharp(body, { animated: true }).raw().toBuffer();
        // All 97 frames of big-height.webp are the same white image, which the WebP encoder merges into one.
        if (framesOf(row) > 1 && row.path !== 'valid/sharp__big-height.webp') {
          assert.ok((meta.pages ?? 1) > 1, `animation lost: ${meta.pages} pages`);
        }
      });
    }
  });

  describe('orientation is applied (compared with an upright reference)', () => {
    const oriented = valid.filter((r) => /EXIF orientation [2-8]/.test(r.note));
    test('the manifest lists the orientation series', () => {
      assert.ok(oriented.length >= 8);
    });
    for (const row of oriented) {
      test(row.path, async () => {
        const source = readFileSync(join(corpus.root, row.path));
        const { res, body } = await fetchVariant(row, 'w:64,f:png');
        assert.equal(res.status, 200);
        const out = await sharp(body).metadata();
        const upright = (await sharp(source).metadata()).autoOrient;
        assert.equal(out.width, 64);
        assert.ok(Math.abs(out.height - (64 * upright.height) / upright.width) <= 1, `upright aspect ratio: 64x${out.height}`);
        const served = await rgb(body, false, out.width, out.height);
        const reference = await rgb(source, true, out.width, out.height);
        const sideways = await rgb(source, false, out.width, out.height);
        assert.ok(meanDiff(served, reference) < 6, `differs from the upright reference by ${meanDiff(served, reference)}`);
        // (A single-colour picture looks the same either way round.)
        if (meanDiff(reference, sideways) > 1) {
          assert.ok(meanDiff(served, sideways) > meanDiff(served, reference), 'looks like the un-rotated source');
        }
      });
    }
  });

  describe('f:auto with each kind of Accept header', () => {
    for (const row of valid.filter((r) => AUTO_SUBSET.has(r.path))) {
      test(row.path, async () => {
        for (const accept of ACCEPTS) {
          const { res, body } = await fetchVariant(row, 'w:80,f:auto', accept.header);
          assert.equal(res.status, 200, `${accept.name}: ${body.toString('utf8', 0, 200)}`);
          const type = negotiated(row, accept.name);
          assert.equal(res.headers.get('content-type'), type, accept.name);
          assert.equal(res.headers.get('vary'), 'Accept');
          const meta = await sharp(body, { animated: true }).metadata();
          assert.equal(meta.width, 80, accept.name);
          assert.equal(meta.exif, undefined);
          const keepsAnimation = type === 'image/webp' || type === 'image/gif';
          if (framesOf(row) > 1 && keepsAnimation && row.path !== 'valid/sharp__big-height.webp') {
            assert.ok((meta.pages ?? 1) > 1, `${accept.name}: animation lost`);
          }
        }
      });
    }
    test('the subset is in the manifest', () => {
      assert.equal(valid.filter((r) => AUTO_SUBSET.has(r.path)).length, AUTO_SUBSET.size);
    });
  });

  describe('everything else is refused', () => {
    for (const row of corpus.rows.filter((r) => r.expect !== 'accept')) {
      test(`${row.expect}: ${row.path}`, async () => {
        const started = performance.now();
        const { res, body } = await fetchVariant(row, 'p:card');
        assert.ok([413, 415].includes(res.status), `status ${res.status}: ${body.toString('utf8', 0, 120)}`);
        assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
        if (row.path.startsWith('limits/')) {
          assert.equal(res.status, 413);
          assert.ok(performance.now() - started < 3000, `pixel bomb took ${performance.now() - started} ms`);
        }
      });
    }
  });

  test('the server is still healthy', async () => {
    assert.equal((await fetch(`${proxy.url}/healthz`)).status, 200);
  });

  test('svg: rasterize: the DoS files end at the deadline; hostile SVGs become a PNG or a refusal, never SVG', async () => {
    const rasterizing = await startProxy({ svg: 'rasterize', rateLimit: { perSecond: 0 }, transforms: { timeoutMs: 2000 } });
    const request = async (row: CorpusRow) => {
      const started = performance.now();
      const res = await fetch(rasterizing.signedUrl(`${origin.url}/c/${encodeURIComponent(row.path)}`, 'w:64'));
      const body = Buffer.from(await res.arrayBuffer());
      return { row, res, body, ms: performance.now() - started };
    };
    try {
      // The hostile files (each render is a child process, so not all 37), and two plain ones.
      const rows = corpus.rows.filter((r) => /^svg\/(payloads__|svgsanitizer__(xlinkLaughs|useDos|external|use|entity|xlinkLoop)Test|sharp__check|libvips__logo\.svg)/.test(r.path));
      const dosNames = ['svg/svgsanitizer__xlinkLaughsTest.svg', 'svg/svgsanitizer__useDosTest.svg'];
      // Alone first (two renderer slots, two files), so the time measured is the renderer's, not the queue's.
      const dos = await Promise.all(rows.filter((r) => dosNames.includes(r.path)).map(request));
      assert.equal(dos.length, 2);
      for (const r of dos) {
        assert.equal(r.res.status, 413, r.row.path);
        assert.ok(r.ms < 5000, `${r.row.path} took ${r.ms} ms (about 30 s unbounded)`);
      }
      const results = await Promise.all(rows.filter((r) => !dosNames.includes(r.path)).map(request));
      for (const { row, res, body } of results) {
        assert.notEqual(res.headers.get('content-type'), 'image/svg+xml', row.path);
        if (res.status === 200) {
          assert.equal(res.headers.get('content-type'), 'image/png', row.path);
          assert.equal((await sharp(body).metadata()).width, 64, row.path);
        } else {
          assert.ok([413, 415].includes(res.status), `${row.path}: ${res.status}`);
        }
      }
      const plain = results.filter((r) => r.row.path === 'svg/sharp__check.svg' || r.row.path === 'svg/libvips__logo.svg');
      assert.deepEqual(plain.map((r) => r.res.status), [200, 200]);
    } finally {
      await rasterizing.close();
    }
  });
});
