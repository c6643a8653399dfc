import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FastImageCacheError } from '../../src/errors.ts';
import { normalizeSourceUrl } from '../../src/cache/normalize-url.ts';

const equivalent: Array<[string | URL, string]> = [
  ['HTTPS://Example.COM:443/a#x', 'https://example.com/a'],
  ['https://example.com/a', 'https://example.com/a'],
  ['HTTP://EXAMPLE.com:80', 'http://example.com/'],
  ['http://example.com', 'http://example.com/'],
  ['https://example.com/a.png?w=1&h=2#frag', 'https://example.com/a.png?w=1&h=2'],
  ['https://example.com/a#', 'https://example.com/a'],
  ['https://bücher.example/köln.png', 'https://xn--bcher-kva.example/k%C3%B6ln.png'],
  ['https://BÜCHER.example/', 'https://xn--bcher-kva.example/'],
  ['https://example.com/x/./y/../z.png', 'https://example.com/x/z.png'],
  ['https://example.com/a b.png', 'https://example.com/a%20b.png'],
  ['  https://example.com/a\n', 'https://example.com/a'],
  ['https://0x7f.0.0.1/', 'https://127.0.0.1/'],
  ['https://[0:0:0:0:0:0:0:1]:443/', 'https://[::1]/'],
  [new URL('https://Example.com:443/u.png#f'), 'https://example.com/u.png'],
];

test('equivalent spellings normalize to one string', () => {
  for (const [input, expected] of equivalent) {
    assert.equal(normalizeSourceUrl(input), expected, String(input));
  }
});

test('normalizing is idempotent', () => {
  for (const [input] of equivalent) {
    const once = normalizeSourceUrl(input);
    assert.equal(normalizeSourceUrl(once), once);
  }
});

const different: Array<[string, string]> = [
  ['http://example.com/a', 'https://example.com/a'],
  ['https://example.com/a', 'https://example.com:8443/a'],
  ['http://example.com:443/a', 'https://example.com/a'],
  ['https://example.com/A', 'https://example.com/a'],
  ['https://example.com/a', 'https://example.com/a/'],
  ['https://example.com/a?x=1&y=2', 'https://example.com/a?y=2&x=1'],
  ['https://example.com/a', 'https://example.com/a?x'],
  ['https://example.com/a?x=1', 'https://example.com/a?x=2'],
  ['https://example.com/a', 'https://www.example.com/a'],
  ['https://user@example.com/a', 'https://example.com/a'],
];

test('URLs that can name different resources stay different', () => {
  for (const [a, b] of different) {
    assert.notEqual(normalizeSourceUrl(a), normalizeSourceUrl(b), `${a} vs ${b}`);
  }
});

test('unparsable input is refused with bad_url, without echoing the URL', () => {
  for (const input of ['', 'not a url', '/relative/path.png', 'https://', 'https://exa mple.com/', 'http://[::1/']) {
    assert.throws(
      () => normalizeSourceUrl(input),
      (err: unknown) => {
        assert.ok(err instanceof FastImageCacheError);
        assert.equal(err.code, 'bad_url');
        if (input !== '') assert.ok(!(err.detail ?? '').includes(input));
        return true;
      },
      JSON.stringify(input),
    );
  }
});
