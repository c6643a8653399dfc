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

describe('MemoryTier admission of entries read back from disk', () => {
  const KB100 = 100 * 1024;
  const body = () => Buffer.allocUnsafeSlow(KB100);

  test('while there is room, everything is admitted', () => {
    const tier = new MemoryTier(1024 * 1024);
    assert.equal(tier.admits('g/new', KB100), true);
    assert.equal(tier.admits('g/huge', 200 * 1024), false, 'over an eighth of the tier: never');
  });

  test('once full, an entry comes in only if it was asked for more often than the least recently used one', () => {
    const tier = new MemoryTier(1024 * 1024); // ten entries of 100 KiB
    for (const id of 'abcdefghij') {
      tier.get(`g/${id}`);
      tier.set(`g/${id}`, entry(body()));
    }
    assert.equal(tier.admits('g/new', KB100), false, 'never asked for: not in');
    tier.get('g/new');
    assert.equal(tier.admits('g/new', KB100), false, 'asked as often as the entry it would push out: a tie keeps what is held');
    tier.get('g/new');
    tier.get('g/new');
    assert.equal(tier.admits('g/new', KB100), true, 'asked for more often: in');
  });

  test('one pass over many cold images does not push out the images asked for again and again', () => {
    const tier = new MemoryTier(1024 * 1024);
    const hot = ['a', 'b', 'c', 'd', 'e'].map((c) => `g/hot-${c}`);
    // The way the cache manager uses it: a lookup, then on a miss an entry read from disk is offered.
    const ask = (id: string) => {
      if (tier.get(id) === undefined && tier.admits(id, KB100)) tier.set(id, entry(body()));
    };
    for (let round = 0; round < 5; round++) for (const id of hot) ask(id);
    for (let i = 0; i < 2000; i++) {
      ask(`g/cold-${i}`);
      if (i % 100 === 0) for (const id of hot) ask(id);
    }
    for (const id of hot) assert.ok(tier.get(id), `${id} still held`);
  });
});
