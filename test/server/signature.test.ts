import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { FastImageCacheError } from '../../src/errors.ts';
import { decodeSource, parseImagePath } from '../../src/server/image-path.ts';
import { buildImagePath, encodeSource, sign, verifySignature } from '../../src/server/signature.ts';

const k1 = Buffer.alloc(32, 1);
const k2 = Buffer.alloc(32, 2);

describe('signatures', () => {
  test('the documented formula: base64url(HMAC-SHA256(key, "{options}/{source}"))', () => {
    const source = encodeSource('https://example.com/a.jpg');
    const expected = createHmac('sha256', k1).update(`_/${source}`).digest('base64url');
    assert.equal(sign(k1, '_', source), expected);
    assert.ok(!expected.includes('='));
    assert.equal(buildImagePath(k1, 'https://example.com/a.jpg'), `/i/${expected}/_/${source}`);
  });

  test('any configured key verifies (rotation); others do not', () => {
    const source = encodeSource('https://example.com/a.jpg');
    const sig = sign(k2, '_', source);
    assert.equal(verifySignature([k1, k2], sig, '_', source), true);
    assert.equal(verifySignature([k1], sig, '_', source), false);
  });

  test('a signature binds options and source', () => {
    const source = encodeSource('https://example.com/a.jpg');
    const sig = sign(k1, '_', source);
    assert.equal(verifySignature([k1], sig, 'w:10', source), false);
    assert.equal(verifySignature([k1], sig, '_', encodeSource('https://example.com/b.jpg')), false);
  });

  test('malformed signatures are false, never a throw', () => {
    const source = encodeSource('https://example.com/a.jpg');
    for (const sig of ['', 'unsafe', 'x'.repeat(42), 'x'.repeat(44), `${'A'.repeat(42)}=`, '%%%']) {
      assert.equal(verifySignature([k1], sig, '_', source), false, sig);
    }
  });
});

describe('image path', () => {
  test('splits the three segments', () => {
    assert.deepEqual(parseImagePath('/i/sig/_/c3Jj'), { signature: 'sig', options: '_', encodedSource: 'c3Jj' });
  });

  test('refuses other shapes as bad_url', () => {
    for (const p of ['/i/sig/_', '/i/sig/_/src/extra', '/i//_/src', '/x/sig/_/src', `/i/s/_/${'a'.repeat(20000)}`]) {
      assert.throws(() => parseImagePath(p), (e: unknown) => e instanceof FastImageCacheError && e.code === 'bad_url', p);
    }
  });

  test('source round-trips and only canonical base64url of UTF-8 is accepted', () => {
    const url = 'https://exämple.com/ü.png?x=1&y=2';
    assert.equal(decodeSource(encodeSource(url)), url);
    for (const bad of ['a+b/', 'abc=', '_w', Buffer.from([0xff, 0xfe]).toString('base64url')]) {
      assert.throws(() => decodeSource(bad), (e: unknown) => e instanceof FastImageCacheError && e.code === 'bad_url', bad);
    }
  });
});
