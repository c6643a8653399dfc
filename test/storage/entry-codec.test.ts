import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ENTRY_HEADER_LENGTH, decodeEntry, encodeEntry } from '../../src/storage/entry-codec.ts';
import type { StoredEntry } from '../../src/storage/types.ts';

function sampleEntry(body: Buffer = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255])): StoredEntry {
  return {
    meta: {
      key: 'f'.repeat(64),
      sourceKey: 'f'.repeat(64),
      sourceUrl: 'https://example.com/cat.png?x=ü',
      variant: '_',
      contentType: 'image/png',
      size: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      sourceSha256: createHash('sha256').update(body).digest('hex'),
      storedAt: 1_700_000_000_000,
      freshness: { freshUntil: 1_700_000_060_000, staleWhileRevalidateUntil: 1_700_000_120_000, staleIfErrorUntil: 1_700_086_400_000, mustRevalidate: false },
      origin: { etag: '"abc"', lastModified: 'Tue, 14 Nov 2023 22:13:20 GMT', cacheControl: 'max-age=60' },
    },
    body,
  };
}

test('round trip keeps metadata and body exactly', () => {
  const entry = sampleEntry();
  const decoded = decodeEntry(encodeEntry(entry));
  assert.deepEqual(decoded?.meta, entry.meta);
  assert.ok(decoded.body.equals(entry.body));
});

test('round trip of an empty body and a large body', () => {
  for (const body of [Buffer.alloc(0), Buffer.alloc(3 * 1024 * 1024, 7)]) {
    const decoded = decodeEntry(encodeEntry(sampleEntry(body)));
    assert.ok(decoded?.body.equals(body));
  }
});

test('the body is the tail of the encoding, so it can be located on disk', () => {
  const entry = sampleEntry();
  const buf = encodeEntry(entry);
  assert.ok(buf.subarray(buf.length - entry.body.length).equals(entry.body));
});

test('every truncation reads as undefined', () => {
  const buf = encodeEntry(sampleEntry());
  for (let len = 0; len < buf.length; len++) {
    assert.equal(decodeEntry(buf.subarray(0, len)), undefined, `truncated to ${len} bytes`);
  }
});

test('trailing garbage reads as undefined', () => {
  const buf = encodeEntry(sampleEntry());
  assert.equal(decodeEntry(Buffer.concat([buf, Buffer.from('x')])), undefined);
});

test('garbage, wrong magic and wrong version read as undefined', () => {
  const good = encodeEntry(sampleEntry());
  assert.equal(decodeEntry(Buffer.from('not an entry at all, just text')), undefined);
  assert.equal(decodeEntry(Buffer.alloc(4096)), undefined);

  const badMagic = Buffer.from(good);
  badMagic[0] = 0x00;
  assert.equal(decodeEntry(badMagic), undefined);

  const badVersion = Buffer.from(good);
  badVersion.writeUInt16BE(999, 4);
  assert.equal(decodeEntry(badVersion), undefined);

  const hugeMetaLength = Buffer.from(good);
  hugeMetaLength.writeUInt32BE(0xffffffff, ENTRY_HEADER_LENGTH - 4);
  assert.equal(decodeEntry(hugeMetaLength), undefined);
});

test('metadata that is not JSON, or has the wrong shape, reads as undefined', () => {
  const frame = (json: string, body = Buffer.alloc(0)) => {
    const meta = Buffer.from(json, 'utf8');
    const header = encodeEntry(sampleEntry()).subarray(0, ENTRY_HEADER_LENGTH);
    const h = Buffer.from(header);
    h.writeUInt32BE(meta.length, ENTRY_HEADER_LENGTH - 4);
    return Buffer.concat([h, meta, body]);
  };
  const meta = sampleEntry(Buffer.alloc(0)).meta;
  assert.equal(decodeEntry(frame('{not json')), undefined);
  assert.equal(decodeEntry(frame('null')), undefined);
  assert.equal(decodeEntry(frame('[1,2]')), undefined);
  assert.equal(decodeEntry(frame(JSON.stringify({ ...meta, size: '0' }))), undefined);
  assert.equal(decodeEntry(frame(JSON.stringify({ ...meta, size: -1 }))), undefined);
  assert.equal(decodeEntry(frame(JSON.stringify({ ...meta, key: 5 }))), undefined);
  assert.equal(decodeEntry(frame(JSON.stringify({ ...meta, origin: { etag: 1 } }))), undefined);
  assert.equal(decodeEntry(frame(JSON.stringify({ ...meta, origin: undefined }))), undefined);
  // The well-formed control case decodes, so the cases above fail for the reason named.
  assert.ok(decodeEntry(frame(JSON.stringify(meta))));
});
