import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { FastImageCacheError } from '../../src/errors.ts';
import { acceptedFormats, resolveVariant, variantId } from '../../src/image/negotiate.ts';
import {
  checkOptionsSegment,
  formatOptionsSegment,
  normalizeOptions,
  parseOptionsSegment,
  type OptionRules,
} from '../../src/image/options.ts';
import { fuzzParameters } from '../fuzz/fuzz-settings.ts';

const RULES: OptionRules = {
  presets: {
    thumb: { width: 150, height: 150, fit: 'cover', format: 'webp', quality: 75 },
    wide: { width: 300 },
  },
  allowAdHoc: true,
  maxWidth: 4096,
  maxHeight: 4096,
};

/** The cache variant id a segment leads to, for a client sending `accept`. */
function idOf(segment: string, accept = 'image/avif,image/webp,*/*', rules = RULES): string {
  const options = parseOptionsSegment(segment);
  delete options.expires;
  const spec = normalizeOptions(options, rules);
  return variantId(resolveVariant(spec, acceptedFormats(accept)));
}

function refusal(run: () => unknown): FastImageCacheError {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof FastImageCacheError, `not a FastImageCacheError: ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('options segment: parsing', () => {
  test('"_" is no options; pairs parse into typed values in any order', () => {
    assert.deepEqual(parseOptionsSegment('_'), {});
    assert.deepEqual(parseOptionsSegment('w:300,f:webp,q:60,fit:contain,h:200,dpr:1.5,p:thumb,exp:1767225600'), {
      width: 300,
      format: 'webp',
      quality: 60,
      fit: 'contain',
      height: 200,
      dpr: 1.5,
      preset: 'thumb',
      expires: 1767225600,
    });
    assert.equal(idOf('w:300,f:webp'), idOf('f:webp,w:300'));
  });

  test('unknown keys, duplicates, empty items and malformed values are bad_options naming the key', () => {
    const cases: Array<[string, RegExp]> = [
      ['zz:1', /^zz: unknown option/],
      ['W:300', /^W: unknown option/],
      ['w:300,w:300', /^w: given twice/],
      ['w:300,width:300', /^width: unknown/],
      ['w:300,', /^\(empty\): expected key:value/],
      [',w:300', /^\(empty\)/],
      ['w300', /^w300: expected key:value/],
      [':300', /expected key:value/],
      ['w:', /^w: expected a whole number/],
      ['w:-5', /^w: expected a whole number/],
      ['w:1e3', /^w: expected a whole number/],
      ['w:0x10', /^w: expected a whole number/],
      ['w: 300', /^w: expected a whole number/],
      ['w:007', /^w: expected a whole number/],
      ['q:12.5', /^q: expected a whole number/],
      ['dpr:two', /^dpr: expected a number/],
      ['dpr:1.255', /^dpr: expected a number/],
      ['f:WEBP', /^f: malformed/],
      ['p:../etc', /^p: not a preset name/],
      ['exp:soon', /^exp: expected a whole number/],
      ['w:300;h:200', /^w: expected a whole number/],
      ['x'.repeat(300), /^options: longer than/],
    ];
    for (const [segment, detail] of cases) {
      const err = refusal(() => parseOptionsSegment(segment));
      assert.equal(err.code, 'bad_options', segment);
      assert.equal(err.status, 400);
      assert.match(err.detail ?? '', detail, segment);
      assert.equal(err.message, 'The options segment is not acceptable.', 'the client message stays generic');
    }
  });

  test('bounds: sizes, quality and dpr out of range are bad_options naming the key', () => {
    const cases: Array<[string, RegExp]> = [
      ['w:0', /^w: width 0 out of range/],
      ['w:4097', /^w: width 4097 out of range 1\.\.4096/],
      ['h:5000', /^h: height 5000 out of range/],
      ['w:2049,dpr:2', /^w: width 4098 out of range/],
      ['q:0', /^q: out of range/],
      ['q:101', /^q: out of range/],
      ['dpr:0.5', /^dpr: out of range/],
      ['dpr:4.01', /^dpr: out of range/],
      ['fit:squash', /^fit: expected one of/],
      ['f:gif', /^f: expected one of/],
      ['f:tiff', /^f: expected one of/],
      ['f:svg', /^f: expected one of/],
      ['p:nosuch', /^p: no such preset/],
      ['p:thumb,dpr:4,w:1100', /^w: width 4400/],
    ];
    for (const [segment, detail] of cases) {
      const err = refusal(() => {
        checkOptionsSegment(segment, RULES);
      });
      assert.equal(err.code, 'bad_options', segment);
      assert.match(err.detail ?? '', detail, segment);
    }
    // The edges themselves are fine.
    for (const ok of ['w:4096', 'h:4096', 'w:1,h:1', 'q:1', 'q:100', 'dpr:1', 'dpr:4', 'w:1024,dpr:4', 'p:thumb,dpr:4']) {
      checkOptionsSegment(ok, RULES);
    }
    // A preset scaled past the limit names the preset.
    const scaled = refusal(() => {
      checkOptionsSegment('p:wide,dpr:4', { ...RULES, maxWidth: 1000 });
    });
    assert.match(scaled.detail ?? '', /^p: width 1200/);
  });

  test('allowAdHoc: false accepts only p: (and exp:)', () => {
    const strict = { ...RULES, allowAdHoc: false };
    checkOptionsSegment('p:thumb', strict);
    checkOptionsSegment('p:thumb,exp:1767225600', strict);
    checkOptionsSegment('_', strict);
    for (const segment of ['w:100', 'p:thumb,w:100', 'p:thumb,dpr:2', 'f:webp', 'p:thumb,f:auto', 'q:50', 'fit:fill']) {
      const err = refusal(() => {
        checkOptionsSegment(segment, strict);
      });
      assert.equal(err.code, 'bad_options', segment);
      assert.match(err.detail ?? '', /allowAdHoc/);
    }
  });
});

describe('options: normalization', () => {
  test('equal meanings share one variant id', () => {
    const same: string[][] = [
      ['w:300', 'w:150,dpr:2', 'dpr:2,w:150', 'w:100,dpr:3', 'p:wide', 'p:wide,dpr:1', 'w:200,dpr:1.5'],
      ['w:300,h:200', 'w:300,h:200,fit:cover', 'fit:cover,h:200,w:300', 'w:150,h:100,dpr:2'],
      ['w:300,fit:contain', 'w:300', 'w:300,fit:inside', 'w:300,fit:outside', 'w:300,fit:cover'], // one size: aspect kept
      ['f:webp', 'f:webp,q:80'],
      ['f:jpeg', 'f:jpeg,q:80'],
      ['f:avif', 'f:avif,q:50'],
      ['f:png', 'f:png,q:20', 'f:png,q:100'],
      ['_', 'dpr:2', 'fit:contain', 'fit:fill,dpr:3'], // nothing to resize: dpr and fit change nothing
      ['p:thumb', 'w:150,h:150,f:webp,q:75', 'p:thumb,fit:cover', 'w:75,h:75,dpr:2,q:75,f:webp'],
      ['p:thumb,q:80', 'w:150,h:150,f:webp'],
    ];
    for (const group of same) {
      const ids = new Set(group.map((segment) => idOf(segment)));
      assert.equal(ids.size, 1, `${group.join(' | ')} → ${[...ids].join(' | ')}`);
    }
    assert.equal(idOf('_'), '_', 'no options: the source itself');
    assert.equal(idOf('p:thumb'), 'f:webp,h:150,q:75,w:150');
  });

  test('different meanings get different ids', () => {
    const distinct = [
      '_', 'w:300', 'h:300', 'w:300,h:300', 'w:300,h:300,fit:contain', 'w:300,h:300,fit:fill', 'w:300,fit:fill',
      'w:301', 'f:webp', 'f:jpeg', 'f:png', 'f:avif', 'q:80', 'q:60', 'f:webp,q:60', 'w:300,f:webp', 'p:thumb', 'p:thumb,q:60',
    ];
    const ids = distinct.map((segment) => idOf(segment));
    assert.equal(new Set(ids).size, distinct.length, ids.join(' | '));
  });

  test('the library object form follows the same rules', () => {
    assert.deepEqual(normalizeOptions({ width: 150, dpr: 2, format: 'webp', quality: 80 }, RULES), { width: 300, format: 'webp' });
    assert.deepEqual(normalizeOptions({ preset: 'thumb', quality: 60 }, RULES), { width: 150, height: 150, format: 'webp', quality: 60 });
    assert.deepEqual(normalizeOptions(undefined, RULES), {});
    const bad: Array<[unknown, RegExp]> = [
      [{ width: '300' }, /^w: expected a number/],
      [{ width: 300.5 }, /^w: expected a whole number/],
      [{ width: Number.NaN }, /^w: expected a number/],
      [{ fit: 'squash' }, /^fit: expected one of/],
      [{ colour: 'red' }, /^colour: unknown option/],
      [{ preset: 'toString' }, /^p: no such preset/],
      [{ preset: '__proto__' }, /^p: no such preset/],
      [[1, 2], /^options: expected an object/],
      ['w:300', /^options: expected an object/],
    ];
    for (const [options, detail] of bad) {
      const err = refusal(() => normalizeOptions(options, RULES));
      assert.equal(err.code, 'bad_options');
      assert.match(err.detail ?? '', detail, JSON.stringify(options));
    }
  });

  test('formatOptionsSegment writes the URL form of an object, which parses back to it', () => {
    const options = { preset: 'thumb', width: 300, fit: 'contain' as const, format: 'auto' as const, quality: 60, dpr: 1.5, expires: 1767225600 };
    const segment = formatOptionsSegment(options);
    assert.equal(segment, 'p:thumb,w:300,fit:contain,f:auto,q:60,dpr:1.5,exp:1767225600');
    assert.deepEqual(parseOptionsSegment(segment), options);
    assert.equal(formatOptionsSegment({}), '_');
  });
});

/*
 * Property-based: options are drawn from small value sets so that different
 * spellings of one meaning come up often. The oracle computes the meaning
 * from the README's table (not from the code under test).
 */
const PAIRS = {
  p: ['thumb', 'wide'],
  w: [50, 100, 150, 200, 300],
  h: [100, 150, 200, 300],
  fit: ['cover', 'contain', 'inside', 'outside', 'fill'],
  f: ['jpeg', 'png', 'webp', 'avif', 'auto'],
  q: [50, 75, 80],
  dpr: [1, 1.5, 2, 3],
} as const;
type Key = keyof typeof PAIRS;
type Pairs = Partial<Record<Key, string | number>>;

const pairsArb: fc.Arbitrary<Pairs> = fc.record(
  Object.fromEntries(Object.entries(PAIRS).map(([k, values]) => [k, fc.constantFrom(...values)])) as Record<Key, fc.Arbitrary<string | number>>,
  { requiredKeys: [] },
);

const ACCEPTS = ['image/avif,image/webp,*/*', 'image/webp,*/*', '*/*'] as const;
const DEFAULT_Q: Record<string, number> = { jpeg: 80, webp: 80, avif: 50 };

/** What the README says a request means: output size rule, format and quality. */
function meaning(pairs: Pairs, accept: string): string {
  const preset = pairs.p === undefined ? {} : (RULES.presets[String(pairs.p)] ?? {});
  const dpr = Number(pairs.dpr ?? 1);
  const w = pairs.w ?? preset.width;
  const h = pairs.h ?? preset.height;
  const width = w === undefined ? undefined : Math.round(Number(w) * dpr);
  const height = h === undefined ? undefined : Math.round(Number(h) * dpr);
  const fit = String(pairs.fit ?? preset.fit ?? 'cover');
  const size =
    width !== undefined && height !== undefined
      ? `${width}x${height}:${fit}`
      : width !== undefined || height !== undefined
        ? `${width ?? '-'}x${height ?? '-'}:${fit === 'fill' ? 'fill' : 'keep-aspect'}`
        : 'original';
  let format = String(pairs.f ?? preset.format ?? 'source');
  if (format === 'auto') format = accept.includes('avif') ? 'avif-or-webp' : accept.includes('webp') ? 'webp' : 'source';
  const q = pairs.q ?? preset.quality;
  const quality = format === 'png' ? '-' : q !== undefined ? String(q) : (DEFAULT_Q[format] ?? 'default');
  return `${size} ${format} ${format in DEFAULT_Q && Number(quality) === DEFAULT_Q[format] ? 'default' : quality}`;
}

function segmentOf(pairs: Pairs, order: readonly Key[]): string {
  const keys = order.filter((k) => pairs[k] !== undefined);
  return keys.length === 0 ? '_' : keys.map((k) => `${k}:${pairs[k]}`).join(',');
}

const orderArb = fc.shuffledSubarray(Object.keys(PAIRS) as Key[], { minLength: 7, maxLength: 7 });

describe('options: properties', () => {
  test('any order of the same pairs gives the same id', () => {
    fc.assert(
      fc.property(pairsArb, orderArb, orderArb, fc.constantFrom(...ACCEPTS), (pairs, a, b, accept) => {
        assert.equal(idOf(segmentOf(pairs, a), accept), idOf(segmentOf(pairs, b), accept));
      }),
      fuzzParameters(300),
    );
  });

  test('same meaning ⇔ same id', () => {
    fc.assert(
      fc.property(pairsArb, pairsArb, orderArb, fc.constantFrom(...ACCEPTS), (a, b, order, accept) => {
        const sameMeaning = meaning(a, accept) === meaning(b, accept);
        const sameId = idOf(segmentOf(a, order), accept) === idOf(segmentOf(b, order), accept);
        assert.equal(sameId, sameMeaning, `${segmentOf(a, order)} vs ${segmentOf(b, order)}: ${meaning(a, accept)} / ${meaning(b, accept)}`);
      }),
      fuzzParameters(3000),
    );
  });

  test('same-meaning rewrites (dpr folded, defaults spelled out) keep the id', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.constantFrom(2, 3, 4), fc.constantFrom('jpeg', 'webp', 'avif'), (w, dpr, f) => {
        const q = DEFAULT_Q[f];
        assert.equal(idOf(`w:${w * dpr},f:${f}`), idOf(`dpr:${dpr},q:${q},w:${w},f:${f}`));
      }),
      fuzzParameters(200),
    );
  });

  test('nothing but FastImageCacheError escapes, whatever the segment', () => {
    const junk = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.string({ unit: 'grapheme', maxLength: 40 }),
      fc
        .array(
          fc.tuple(
            fc.oneof(fc.constantFrom('p', 'w', 'h', 'fit', 'f', 'q', 'dpr', 'exp', '', 'W', 'x'), fc.string({ maxLength: 4 })),
            fc.oneof(fc.constantFrom('0', '1', '4096', '4097', '1.5', '-1', 'auto', 'cover', 'thumb', '__proto__', 'constructor', ''), fc.string({ maxLength: 6 })),
          ),
          { maxLength: 6 },
        )
        .map((items) => items.map(([k, v]) => `${k}:${v}`).join(',')),
    );
    fc.assert(
      fc.property(junk, (segment) => {
        try {
          checkOptionsSegment(segment, RULES);
          idOf(segment);
        } catch (err) {
          assert.ok(err instanceof FastImageCacheError, `${JSON.stringify(segment)} threw ${String(err)}`);
          assert.equal(err.code, 'bad_options');
        }
      }),
      fuzzParameters(2000),
    );
  });

  test('nothing but FastImageCacheError escapes, whatever the library passes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.anything(),
          fc.record(
            { width: fc.anything(), height: fc.anything(), fit: fc.anything(), format: fc.anything(), quality: fc.anything(), dpr: fc.anything(), preset: fc.anything() },
            { requiredKeys: [] },
          ),
        ),
        (options) => {
          try {
            normalizeOptions(options, RULES);
          } catch (err) {
            assert.ok(err instanceof FastImageCacheError, String(err));
            assert.equal(err.code, 'bad_options');
          }
        },
      ),
      fuzzParameters(2000),
    );
  });
});
