import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { loadCorpus, parseDimensions, type CorpusRow } from '../helpers/corpus.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

/**
 * Every real-world file of ../shared/corpus through the whole server as
 * passthrough (`_`), served by a real origin that lies about the type
 * (application/octet-stream), and requested twice. With metadata stripping
 * on (the default), accepted files come back with the manifest's type (TIFF
 * as PNG), decodable, with no EXIF, XMP, IPTC or ICC left and none of the
 * metadata payload strings; a file with nothing to strip comes back
 * byte-identical; the second request is a cache HIT. Every input format is
 * switched on here, so the whole manifest is exercised. Refused files are
 * refused both times and never stored, and the server stays healthy.
 */
const corpus = loadCorpus();
const skip = 'skip' in corpus ? corpus.skip : false;

/** Files that carry attack strings in their metadata (not in their pixels): none may survive stripping. */
const METADATA_PAYLOADS: ReadonlyMap<string, readonly string[]> = new Map([
  ['valid/payloads__payload_in_all_known_metadata.jpg', ['<script', 'alert(']],
  ['valid/payloads__PHP_exif_system.jpg', ['<?php', 'system(']],
  ['valid/payloads__PHP_exif_system.png', ['<?php', 'system(']],
  ['valid/payloads__xss_comment_exif_metadata_double_quote.png', ['<svg onload', 'alert(']],
  ['valid/payloads__imagemagick_CVE-2022-44268_convert_etc_passwd.png', ['/etc/passwd']],
]);

/**
 * What `_` serves for an accepted file: its own type, except TIFF, which
 * becomes PNG, and an AVIF too tall for AVIF output (16x17000: it has to be
 * re-encoded to lose its metadata), kept as PNG.
 */
function servedType(row: CorpusRow): string {
  const size = parseDimensions(row.dimensions);
  if (row.content_type === 'image/avif' && size !== undefined && Math.max(size.width, size.height) > 16384) return 'image/png';
  return row.content_type === 'image/tiff' ? 'image/png' : row.content_type;
}

/** The refusal for a file that is not accepted; `accept-at-limit` is over the default maxSourcePixels (50 MP). */
function refused(row: CorpusRow): boolean {
  return !(row.expect === 'accept');
}

describe('corpus through the proxy', { skip }, () => {
  if ('skip' in corpus) return;
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ inputFormats: ['jpeg', 'png', 'gif', 'webp', 'avif', 'tiff'], rateLimit: { perSecond: 0 } });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  for (const row of corpus.rows) {
    const accept = !refused(row);
    test(`${row.expect}: ${row.path}`, async () => {
      const body = readFileSync(join(corpus.root, row.path));
      const path = `/corpus/${encodeURIComponent(row.path)}`;
      origin.serve(path, body, { contentType: 'application/octet-stream' });
      const url = proxy.signedUrl(origin.url + path);

      const first = await fetch(url);
      const firstBody = Buffer.from(await first.arrayBuffer());
      const second = await fetch(url);
      const secondBody = Buffer.from(await second.arrayBuffer());

      if (accept) {
        assert.equal(first.status, 200, `first: ${firstBody.toString('utf8', 0, 200)}`);
        assert.equal(first.headers.get('content-type'), servedType(row));
        const meta = await sharp(firstBody).metadata();
        assert.deepEqual([meta.exif, meta.xmp, meta.iptc, meta.icc], [undefined, undefined, undefined, undefined], 'metadata left');
        await sharp(firstBody).raw().toBuffer(); // decodes
        if (!firstBody.equals(body)) {
          const source = await sharp(body, { autoOrient: true }).metadata();
          const tall = (m: { width: number; height: number }) => m.height > m.width;
          assert.equal(tall(meta), tall({ width: source.autoOrient.width, height: source.autoOrient.height }), 'orientation');
        }
        for (const payload of METADATA_PAYLOADS.get(row.path) ?? []) {
          assert.ok(body.includes(payload), `the source carries ${payload}`);
          assert.ok(!firstBody.includes(payload), `${payload} survived`);
        }
        assert.equal(second.status, 200);
        assert.equal(second.headers.get('x-cache'), 'HIT');
        assert.ok(secondBody.equals(firstBody));
        assert.equal(origin.hits(path), 1);
      } else {
        // reject, reject-or-passthrough (we reject), policy (svg: refuse), accept-at-limit (over maxSourcePixels)
        assert.ok(first.status >= 400, `expected a refusal, got ${first.status}`);
        assert.ok([413, 415].includes(first.status), `status ${first.status}`);
        assert.match(first.headers.get('content-type') ?? '', /^application\/json/);
        assert.equal(second.status, first.status);
        // Remembered as a refusal for negativeTtl (the origin is asked once); its bytes are never stored.
        assert.equal(origin.hits(path), 1, 'the refusal is remembered');
      }
    });
  }

  test('the server is still healthy after the whole corpus', async () => {
    assert.equal((await fetch(`${proxy.url}/healthz`)).status, 200);
  });
});
