import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { acceptedFormats, resolveVariant, variantId } from '../../src/image/negotiate.ts';

describe('f:auto negotiation', () => {
  test('real browser Accept headers', () => {
    const cases: Array<[string | undefined, { avif: boolean; webp: boolean }]> = [
      ['image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8', { avif: true, webp: true }], // Chrome
      ['image/avif,image/webp,*/*', { avif: true, webp: true }], // Firefox
      ['image/webp,*/*', { avif: false, webp: true }], // older Firefox, Safari 14-15
      ['image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5', { avif: false, webp: false }], // old Safari
      ['*/*', { avif: false, webp: false }], // curl
      ['image/*', { avif: false, webp: false }], // a wildcard does not promise either format
      [undefined, { avif: false, webp: false }],
      ['', { avif: false, webp: false }],
    ];
    for (const [accept, expected] of cases) assert.deepEqual(acceptedFormats(accept), expected, String(accept));
  });

  test('q=0 refuses a type; case and spaces do not matter; malformed q is no', () => {
    assert.deepEqual(acceptedFormats('image/avif;q=0, image/webp'), { avif: false, webp: true });
    assert.deepEqual(acceptedFormats('IMAGE/AVIF ; Q=0.5 ,Image/WebP;q=1.000'), { avif: true, webp: true });
    assert.deepEqual(acceptedFormats('image/avif;q=0.000,image/webp;q=2'), { avif: false, webp: false });
    assert.deepEqual(acceptedFormats('image/avif;q=abc'), { avif: false, webp: false });
    assert.deepEqual(acceptedFormats(`${'x/y,'.repeat(5000)}image/avif`), { avif: false, webp: false }, 'read only so far');
  });

  test('the variant records the negotiated format, never the Accept string', () => {
    const spec = { width: 300, format: 'auto' as const };
    assert.equal(variantId(resolveVariant(spec, { avif: true, webp: true })), 'f:avif+webp,w:300');
    assert.equal(variantId(resolveVariant(spec, { avif: true, webp: false })), 'f:avif,w:300');
    assert.equal(variantId(resolveVariant(spec, { avif: false, webp: true })), 'f:webp,w:300');
    assert.equal(variantId(resolveVariant(spec, { avif: false, webp: false })), 'w:300', 'falls back to the source format');
    // Negotiated to a format whose default quality was asked: the same entry as asking for it outright.
    assert.equal(variantId(resolveVariant({ format: 'auto', quality: 80 }, { avif: false, webp: true })), 'f:webp');
    assert.equal(variantId(resolveVariant({ format: 'auto', quality: 80 }, { avif: false, webp: false })), 'q:80');
  });
});
