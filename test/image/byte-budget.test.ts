import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ByteBudget, type ByteReservation } from '../../src/image/byte-budget.ts';

/** Settles pending promise callbacks (grants resolve through the microtask queue). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Tracks which of several acquire() calls have been granted so far. */
function track(pending: Promise<ByteReservation>): { granted: () => ByteReservation | undefined } {
  let got: ByteReservation | undefined;
  void pending.then((r) => (got = r));
  return { granted: () => got };
}

describe('ByteBudget', () => {
  test('grants at once while the bytes fit, and counts what is held', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(60);
    const b = await budget.acquire(40);
    assert.equal(budget.used, 100);
    a.release();
    a.release(); // idempotent: frees 60 once
    assert.equal(budget.used, 40);
    b.release();
    assert.equal(budget.used, 0);
  });

  test('a request that does not fit waits until enough is released', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(70);
    const b = track(budget.acquire(50));
    await settle();
    assert.equal(b.granted(), undefined, 'over the limit: waits');
    assert.equal(budget.waiting, 1);
    a.release();
    await settle();
    assert.equal(b.granted()?.bytes, 50);
    assert.equal(budget.used, 50);
  });

  test('first come, first served: a small request does not overtake a large one waiting', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(60);
    const large = track(budget.acquire(80));
    const small = track(budget.acquire(10)); // would fit now, but the large one asked first
    await settle();
    assert.equal(large.granted(), undefined);
    assert.equal(small.granted(), undefined);
    a.release();
    await settle();
    assert.equal(large.granted()?.bytes, 80);
    assert.equal(small.granted()?.bytes, 10, 'both fit once the 60 are back');
    assert.equal(budget.used, 90);
  });

  test('a request larger than the whole limit is granted when nothing else is held, and only then', async () => {
    const budget = new ByteBudget(100);
    const held = await budget.acquire(1);
    const huge = track(budget.acquire(500));
    await settle();
    assert.equal(huge.granted(), undefined);
    held.release();
    await settle();
    assert.equal(huge.granted()?.bytes, 500);
    assert.equal(budget.used, 500);
    const next = track(budget.acquire(1));
    await settle();
    assert.equal(next.granted(), undefined, 'nothing more until the large one is back');
    huge.granted()?.release();
    await settle();
    assert.equal(next.granted()?.bytes, 1);
  });

  test('an abort while waiting rejects with its reason, holds nothing, and lets those behind it in', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(50);
    const controller = new AbortController();
    const blocked = budget.acquire(80, controller.signal);
    const behind = track(budget.acquire(40));
    await settle();
    assert.equal(behind.granted(), undefined, 'queued behind the 80');
    const reason = new Error('client gone');
    controller.abort(reason);
    await assert.rejects(blocked, (err) => err === reason);
    await settle();
    assert.equal(behind.granted()?.bytes, 40, 'the head left: the 40 fit beside the 50');
    assert.equal(budget.used, 90);
    assert.equal(budget.waiting, 0);
    a.release();
    await assert.rejects(budget.acquire(1, AbortSignal.abort(reason)), (err) => err === reason, 'already aborted: refused at once');
  });

  test('resize() holds more at once, even past the limit; shrinking lets waiters in', async () => {
    const budget = new ByteBudget(100);
    const a = await budget.acquire(10);
    a.resize(150);
    assert.equal(budget.used, 150);
    assert.equal(a.bytes, 150);
    const b = track(budget.acquire(50));
    await settle();
    assert.equal(b.granted(), undefined);
    a.resize(50);
    await settle();
    assert.equal(b.granted()?.bytes, 50);
    a.release();
    assert.equal(budget.used, 50, 'release gives back what is held after the resizes');
    a.resize(999); // released: no effect
    assert.equal(budget.used, 50);
  });

  test('limit 0 never waits', async () => {
    const budget = new ByteBudget(0);
    const held = await Promise.all([budget.acquire(1e9), budget.acquire(1e9)]);
    assert.equal(budget.used, 2e9);
    for (const r of held) r.release();
    assert.equal(budget.used, 0);
  });

  test('over random sequences, what is held stays within the limit unless one holder alone is over it', async () => {
    for (let run = 0; run < 50; run++) {
      const limit = 50 + Math.floor(Math.random() * 100);
      const budget = new ByteBudget(limit);
      const holders = new Set<ByteReservation>();
      let granted = 0;
      const asked = 40;
      for (let i = 0; i < asked; i++) {
        void budget.acquire(Math.floor(Math.random() * limit * 1.5)).then((r) => {
          holders.add(r);
          granted += 1;
        });
      }
      while (granted < asked) {
        await settle();
        const sum = [...holders].reduce((s, h) => s + h.bytes, 0);
        assert.equal(sum, budget.used);
        const holding = [...holders].filter((h) => h.bytes > 0).length;
        assert.ok(sum <= limit || holding === 1, `held ${sum} of ${limit} by ${holding}`);
        const [oldest] = holders;
        if (oldest) {
          holders.delete(oldest);
          oldest.release();
        }
      }
      for (const h of holders) h.release();
      assert.equal(budget.used, 0);
      assert.equal(budget.waiting, 0);
    }
  });
});
