import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FORMAT_VERSION, cacheKey } from '../../src/cache/cache-key.ts';

const HEX64 = /^[0-9a-f]{64}$/;

test('a key is 64 lowercase hex chars, whatever the input', () => {
  const inputs: Array<[string, string]> = [
    ['https://example.com/a.png', '_'],
    ['', ''],
    ['../../../etc/passwd', '../x'],
    ['https://example.com/\u0000/ü', 'w_100/../..'],
    ['x'.repeat(100_000), 'y'],
  ];
  for (const [url, options] of inputs) assert.match(cacheKey(url, options), HEX64);
});

test('the same input always gives the same key', () => {
  assert.equal(cacheKey('https://example.com/a.png', '_'), cacheKey('https://example.com/a.png', '_'));
});

test('url and options are not concatenated ambiguously', () => {
  const pairs: Array<[[string, string], [string, string]]> = [
    [['https://a/b', 'c'], ['https://a/bc', '']],
    [['https://a/b', '_'], ['https://a/b_', '']],
    [['https://a/b\u0000', 'c'], ['https://a/b', '\u0000c']],
    [['https://a/b1', '_'], ['https://a/b', '1_']],
    [['', 'https://a/b'], ['https://a/b', '']],
  ];
  for (const [[u1, o1], [u2, o2]] of pairs) {
    assert.notEqual(cacheKey(u1, o1), cacheKey(u2, o2), `${JSON.stringify([u1, o1])} vs ${JSON.stringify([u2, o2])}`);
  }
});

test('options are part of the key', () => {
  assert.notEqual(cacheKey('https://example.com/a.png', '_'), cacheKey('https://example.com/a.png', 'w_100'));
});

test('FORMAT_VERSION is a positive integer', () => {
  // Widened to number: the check is about the value, whatever literal type it has today.
  const version: number = FORMAT_VERSION;
  assert.ok(Number.isInteger(version) && version > 0);
});
