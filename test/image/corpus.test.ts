/**
 * Every file of the real-world corpus through sniffImageType + verifyImage,
 * checked against the manifest's `expect` column. Skips when the corpus is
 * not available (see test/helpers/corpus.ts).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FastImageCacheError } from '../../src/errors.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { sniffImageType, verifyImage } from '../../src/image/index.ts';
import { loadCorpus, parseDimensions, readCorpusFile } from '../helpers/corpus.ts';
import type { CorpusRow } from '../helpers/corpus.ts';

const corpus = loadCorpus();

/** Which refusal a rejected row must get: limit hits are too_large, everything else not_an_image. */
function expectedRefusal(row: CorpusRow): ErrorCode {
  const hitsLimit = /exceeds (?:pixel|channel) limit/.test(row.sharp_decode);
  return row.path.startsWith('limits/') || hitsLimit ? 'too_large' : 'not_an_image';
}

async function refusal(body: Buffer): Promise<FastImageCacheError> {
  const err = await verifyImage(body).then(
    (verified) => assert.fail(`verified as ${JSON.stringify(verified)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof FastImageCacheError, `not a FastImageCacheError: ${String(err)}`);
  return err;
}

if (!('rows' in corpus)) {
  test('image corpus: sniff + verify', { skip: corpus.skip }, () => {});
} else {
  const { root, rows } = corpus;

  describe('image corpus: sniff + verify', () => {
    test('the manifest lists files', () => {
      assert.ok(rows.length > 0);
    });

    for (const row of rows) {
      test(`${row.expect}: ${row.path}`, async () => {
        const body = readCorpusFile(root, row); // also checks bytes and sha256
        const sniffed = sniffImageType(body);

        switch (row.expect) {
          case 'accept':
          case 'accept-at-limit': {
            assert.equal(sniffed?.mime, row.content_type, 'sniffed type');
            const verified = await verifyImage(body);
            assert.equal(verified.mime, row.content_type);
            const dimensions = parseDimensions(row.dimensions);
            assert.ok(dimensions, `manifest has no dimensions: ${row.dimensions}`);
            assert.deepEqual({ width: verified.width, height: verified.height }, dimensions);
            break;
          }
          case 'policy': {
            // SVG is refused for now, from the bytes, before sharp could render it.
            assert.equal(sniffed, undefined);
            assert.equal((await refusal(body)).code, 'not_an_image');
            break;
          }
          case 'reject':
          case 'reject-or-passthrough': {
            if (row.path.startsWith('not-images/')) assert.equal(sniffed, undefined, 'non-images never reach sharp');
            const err = await refusal(body);
            assert.equal(err.code, expectedRefusal(row), `detail: ${err.detail}`);
            break;
          }
        }
      });
    }
  });
}
