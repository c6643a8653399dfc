import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { FrequencySketch } from '../../src/cache/frequency-sketch.ts';

test('an estimate is never below the true count (up to the cap of 15)', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 2000 }), (asks) => {
      const sketch = new FrequencySketch(4096); // ageing only after 40,960 additions: none here
      const counts = new Map<number, number>();
      for (const k of asks) {
        sketch.increment(`g/${k}`);
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      for (const [k, n] of counts) assert.ok(sketch.frequency(`g/${k}`) >= Math.min(15, n), `key ${k}: ${n}`);
    }),
    { numRuns: 50 },
  );
});

test('keys asked for once are told apart from keys asked for often', () => {
  const sketch = new FrequencySketch(1024);
  for (let i = 0; i < 10; i++) sketch.increment('hot');
  let overestimated = 0;
  for (let i = 0; i < 500; i++) sketch.increment(`cold-${i}`);
  for (let i = 0; i < 500; i++) if (sketch.frequency(`cold-${i}`) > 1) overestimated += 1;
  assert.equal(sketch.frequency('hot'), 10);
  assert.ok(overestimated < 25, `${overestimated} of 500 keys seen once read as more`);
  assert.equal(sketch.frequency('never-asked'), 0);
});

test('counts fade: after 10 × width additions every counter is halved', () => {
  const sketch = new FrequencySketch(1024); // ages after 10,240 additions
  for (let i = 0; i < 12; i++) sketch.increment('was-popular');
  for (let i = 0; i < 10_240 - 12 - 1; i++) sketch.increment(`other-${i}`);
  assert.ok(sketch.frequency('was-popular') >= 12, 'not aged yet');
  sketch.increment('one-more');
  assert.ok(sketch.frequency('was-popular') <= 7, `halved: ${sketch.frequency('was-popular')}`);
});
