import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_LENT_BYTES, MIN_LENT_BYTES, ReadBuffers } from '../../src/storage/read-buffers.ts';

test('a buffer given back is lent again for a body of the same size class, and only then', () => {
  const buffers = new ReadBuffers(8 * 1024 * 1024);
  const first = buffers.take(100_000);
  assert.equal(first.length, 100_000);
  assert.equal(first.buffer.byteLength, 131_072, 'rounded up to a power of two');
  const meanwhile = buffers.take(100_000);
  assert.notEqual(meanwhile.buffer, first.buffer, 'a buffer out on loan is never lent twice');
  buffers.give(first);
  assert.equal(buffers.idleBytes, 131_072);
  const other = buffers.take(300_000);
  assert.notEqual(other.buffer, first.buffer, 'another size class does not get it');
  const again = buffers.take(70_000);
  assert.equal(again.buffer, first.buffer, 'the same class lends it again');
  assert.equal(again.length, 70_000);
  assert.equal(buffers.idleBytes, 0);
});

test('giving back twice, or a buffer that was never lent, changes nothing', () => {
  const buffers = new ReadBuffers(8 * 1024 * 1024);
  const lent = buffers.take(50_000);
  buffers.give(lent);
  buffers.give(lent);
  assert.equal(buffers.idleBytes, 65_536, 'counted once');
  const a = buffers.take(50_000);
  const b = buffers.take(50_000);
  assert.notEqual(a.buffer, b.buffer, 'a second give must not let two reads share one buffer');
  buffers.give(Buffer.alloc(65_536));
  buffers.give(Buffer.allocUnsafeSlow(65_536).subarray(0, 50_000));
  assert.equal(buffers.idleBytes, 0, 'foreign buffers are not taken in');
});

test('small and very large bodies get buffers of their own; nothing is lent with no idle budget', () => {
  const buffers = new ReadBuffers(8 * 1024 * 1024);
  assert.equal(buffers.lends(MIN_LENT_BYTES - 1), false);
  assert.equal(buffers.lends(MIN_LENT_BYTES), true);
  assert.equal(buffers.lends(MAX_LENT_BYTES), true);
  assert.equal(buffers.lends(MAX_LENT_BYTES + 1), false);
  const small = buffers.take(1000);
  buffers.give(small);
  assert.equal(buffers.idleBytes, 0);
  const none = new ReadBuffers(0);
  assert.equal(none.lends(100_000), false);
  const own = none.take(100_000);
  none.give(own);
  assert.equal(none.idleBytes, 0);
});

test('no more than the idle budget waits to be lent again', () => {
  const buffers = new ReadBuffers(300_000);
  const lent = [buffers.take(200_000), buffers.take(200_000), buffers.take(100_000)];
  for (const b of lent) buffers.give(b);
  // 262,144 fits; a second 262,144 would not; the 131,072 does not fit beside the first either.
  assert.equal(buffers.idleBytes, 262_144);
});
