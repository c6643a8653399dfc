import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeSource, parseImagePath } from '../../src/server/image-path.ts';
import { buildImagePath, encodeSource, sign, verifySignature } from '../../src/server/signature.ts';
import { fuzzParameters } from './fuzz-settings.ts';

/*
 * Signed URLs: verification never throws, accepts exactly what a holder of
 * one of the keys signed, and any other signature, options or source fails.
 */

const key = fc.uint8Array({ minLength: 32, maxLength: 64 }).map((a) => Buffer.from(a));
const keys = fc.array(key, { maxLength: 4 });
/** An options segment as it appears in a path: anything but '/' and never empty. */
const options = fc.oneof(fc.constant('_'), fc.string({ minLength: 1, maxLength: 30 }).filter((s) => !s.includes('/')));
const source = fc.oneof(fc.webUrl({ withQueryParameters: true }), fc.string({ unit: 'grapheme', minLength: 1 })).map(encodeSource);
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

describe('signatures (property-based)', () => {
  test('verification never throws, whatever the signature, options, source and keys', () => {
    fc.assert(
      fc.property(keys, fc.oneof(fc.string(), fc.base64String(), fc.string({ unit: fc.constantFrom(...Array.from(BASE64URL)), minLength: 43, maxLength: 43 })), fc.string(), fc.string(), (ks, sig, opts, src) => {
        const result = verifySignature(ks, sig, opts, src);
        assert.equal(typeof result, 'boolean');
        if (ks.length === 0) assert.equal(result, false);
      }),
      fuzzParameters(1500),
    );
  });

  test('what one of the keys signed verifies, with the others configured too (rotation)', () => {
    fc.assert(
      fc.property(keys, key, fc.nat(), options, source, (others, signer, at, opts, src) => {
        const configured = [...others];
        configured.splice(at % (others.length + 1), 0, signer);
        assert.equal(verifySignature(configured, sign(signer, opts, src), opts, src), true);
      }),
      fuzzParameters(1000),
    );
  });

  test('a changed signature, options, source or key fails; only the exact signing string verifies', () => {
    fc.assert(
      fc.property(key, key, options, options, source, source, fc.nat(42), fc.constantFrom(...Array.from(BASE64URL)), (k1, k2, o1, o2, s1, s2, pos, ch) => {
        const good = sign(k1, o1, s1);
        const changed = good.slice(0, pos) + ch + good.slice(pos + 1);
        // base64url of 32 bytes leaves 2 spare bits in the last character; a second spelling of
        // the same MAC must not verify either (no signature malleability).
        assert.equal(verifySignature([k1], changed, o1, s1), changed === good, `${good} → ${changed}`);
        if (o2 !== o1) assert.equal(verifySignature([k1], good, o2, s1), false);
        if (s2 !== s1) assert.equal(verifySignature([k1], good, o1, s2), false);
        if (!k2.equals(k1)) assert.equal(verifySignature([k2], good, o1, s1), false);
      }),
      fuzzParameters(1500),
    );
  });

  test('a built path parses back to its parts, and its signature verifies', () => {
    fc.assert(
      fc.property(key, fc.webUrl({ withQueryParameters: true, withFragments: true }), options, (k, url, opts) => {
        const parsed = parseImagePath(buildImagePath(k, url, opts));
        assert.equal(parsed.options, opts);
        assert.equal(decodeSource(parsed.encodedSource), url);
        assert.equal(verifySignature([k], parsed.signature, parsed.options, parsed.encodedSource), true);
      }),
      fuzzParameters(1000),
    );
  });
});
