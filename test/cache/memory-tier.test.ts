import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryTier } from '../../src/cache/memory-tier.ts';
import type { EntryMeta, StoredEntry } from '../../src/storage/types.ts';

const entry = (body: Buffer): StoredEntry => ({ meta: {} as EntryMeta, body });

describe('MemoryTier budget', () => {
  test('counts what an entry keeps alive: a small view of a large buffer costs the whole buffer', () => {
    const tier = new MemoryTier(2 * 1024 * 1024); // one entry may take at most 256 KiB
    const download = Buffer.allocUnsafeSlow(1024 * 1024);
    tier.set('g/view', entry(download.subarray(0, 1024)));
    assert.equal(tier.get('g/view'), undefined, 'a 1 KiB view keeping 1 MiB alive is over the per-entry limit');
    const own = Buffer.allocUnsafeSlow(1024);
    download.copy(own, 0, 0, 1024);
    tier.set('g/own', entry(own));
    assert.ok(tier.get('g/own'), 'the same bytes in a buffer of their own fit');
    assert.equal(tier.bytes, 1024 + 1024, 'its bytes and the per-entry overhead');
    tier.set('g/pooled', entry(Buffer.from('tiny'))); // a slice of Node's 8 KiB pool keeps the pool alive
    assert.ok(tier.bytes >= 2048 + 8192);
  });

  test('evicts the least recently used until the bytes fit', () => {
    const tier = new MemoryTier(1024 * 1024); // ten entries of 100 KiB (plus 1 KiB each) fit
    for (const id of 'abcdefghij') tier.set(`g/${id}`, entry(Buffer.allocUnsafeSlow(100 * 1024)));
    assert.equal(tier.size, 10);
    assert.ok(tier.get('g/a'), 'used again: now the most recent');
    tier.set('g/k', entry(Buffer.allocUnsafeSlow(100 * 1024)));
    assert.equal(tier.get('g/b'), undefined, 'the least recently used went first');
    assert.ok(tier.get('g/a'));
    assert.equal(tier.size, 10);
    assert.ok(tier.bytes <= 1024 * 1024);
  });
});
