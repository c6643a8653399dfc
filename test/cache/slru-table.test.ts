import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NONE, PROBATION, PROTECTED, SlruTable, parseId } from '../../src/cache/slru-table.ts';

/** Ids as storage makes them; `salt` gives a family of ids that share their group. */
function idFor(n: number, item = 0): string {
  const g = ((n * 2654435761) >>> 0).toString(16).padStart(8, '0') + (n >>> 0).toString(16).padStart(8, '0');
  return `${g}/${((item * 40503 + n) >>> 0).toString(16).padStart(8, '0')}`;
}

/** The same policy, written the obvious way: two arrays, most recently used first. */
class Model {
  probation: string[] = [];
  protectedList: string[] = [];
  size = new Map<string, number>();
  upsert(id: string, bytes: number) {
    if (this.size.has(id)) {
      this.size.set(id, bytes);
      const list = this.probation.includes(id) ? this.probation : this.protectedList;
      list.splice(list.indexOf(id), 1);
      list.unshift(id);
      return;
    }
    this.size.set(id, bytes);
    this.probation.unshift(id);
  }
  touch(id: string) {
    const list = this.probation.includes(id) ? this.probation : this.protectedList;
    list.splice(list.indexOf(id), 1);
    this.protectedList.unshift(id);
  }
  demoteOver(max: number) {
    const bytes = () => this.protectedList.reduce((s, id) => s + (this.size.get(id) ?? 0), 0);
    while (bytes() > max && this.protectedList.length > 0) this.probation.unshift(this.protectedList.pop() as string);
  }
  remove(id: string) {
    for (const list of [this.probation, this.protectedList]) if (list.includes(id)) list.splice(list.indexOf(id), 1);
    this.size.delete(id);
  }
  victim(): string | undefined {
    return this.probation.at(-1) ?? this.protectedList.at(-1);
  }
}

test('ids round-trip through their three words, and malformed ids are refused', () => {
  const t = new SlruTable();
  for (let n = 0; n < 100; n++) {
    const id = idFor(n, n % 3);
    assert.equal(t.idOf(t.upsert(id, n, 0)), id);
  }
  const malformed = ['', 'xyz', '0123456789abcdef/0123456', '0123456789ABCDEF/01234567', '0123456789abcdef/01234567/..'];
  // Right length, wrong shape: the parser counts characters rather than matching a pattern.
  malformed.push('0123456789abcdef001234567', '0123456789abcde/f01234567', '0123456789abcdef/0123456g', ' 123456789abcdef/01234567');
  for (const bad of malformed) {
    assert.equal(parseId(bad), undefined, bad);
    assert.equal(t.find(bad), NONE);
  }
});

test('clear() after growth leaves an empty table that fills again from scratch', () => {
  const t = new SlruTable();
  for (let n = 0; n < 5000; n++) t.upsert(idFor(n), 10, n * 1000);
  t.clear();
  assert.equal(t.entries, 0);
  assert.equal(t.totalBytes, 0);
  assert.equal(t.oldestWrite(), undefined, 'no slot of the old table is still in use');
  assert.equal(t.victim(), NONE);
  for (let n = 0; n < 3000; n++) assert.equal(t.find(idFor(n)), NONE);
  for (let n = 4000; n < 6000; n++) t.upsert(idFor(n), 1, 7_000_000);
  assert.equal(t.entries, 2000);
  assert.equal(t.oldestWrite(), 7_000_000);
  assert.equal(t.idOf(t.victim()), idFor(4000));
});

test('matches a straightforward model over 20,000 random operations (hash table growth and deletion included)', () => {
  const t = new SlruTable();
  const m = new Model();
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const universe = Array.from({ length: 3000 }, (_, i) => idFor(i, i % 5));
  const protectedMax = 40_000;
  for (let step = 0; step < 20_000; step++) {
    const id = universe[rand(universe.length)] as string;
    const op = rand(10);
    if (op < 4) {
      const bytes = 1 + rand(1000);
      t.upsert(id, bytes, step * 1000);
      m.upsert(id, bytes);
    } else if (op < 7) {
      const slot = t.find(id);
      assert.equal(slot !== NONE, m.size.has(id));
      if (slot !== NONE) {
        t.touch(slot);
        m.touch(id);
        t.demoteOver(protectedMax);
        m.demoteOver(protectedMax);
      }
    } else if (op < 9) {
      const slot = t.find(id);
      if (slot !== NONE) t.remove(slot);
      m.remove(id);
    } else {
      const v = t.victim();
      assert.equal(v === NONE ? undefined : t.idOf(v), m.victim());
      if (v !== NONE) {
        m.remove(t.idOf(v));
        t.remove(v);
      }
    }
  }
  assert.equal(t.entries, m.size.size);
  assert.equal(t.segmentCount(PROBATION), m.probation.length);
  assert.equal(t.segmentCount(PROTECTED), m.protectedList.length);
  assert.equal(t.totalBytes, [...m.size.values()].reduce((a, b) => a + b, 0));
  // Eviction order of everything left, end to end.
  const order: string[] = [];
  for (let v = t.victim(); v !== NONE; v = t.victim()) {
    order.push(t.idOf(v));
    t.remove(v);
  }
  assert.deepEqual(order, [...m.probation].reverse().concat([...m.protectedList].reverse()));
});

test('rebuilt entries are ordered by write time at the eviction end, behind everything used since', () => {
  const t = new SlruTable();
  const live = idFor(1);
  t.upsert(live, 10, 5_000_000);
  const rebuilt = [idFor(2), idFor(3), idFor(4)];
  t.upsert(rebuilt[0] as string, 10, 3_000_000, true);
  t.upsert(rebuilt[1] as string, 10, 1_000_000, true);
  t.upsert(rebuilt[2] as string, 10, 2_000_000, true);
  t.orderRebuilt();
  const order: string[] = [];
  for (let v = t.victim(); v !== NONE; v = t.victim()) {
    order.push(t.idOf(v));
    t.remove(v);
  }
  assert.deepEqual(order, [rebuilt[1], rebuilt[2], rebuilt[0], live]);
});

test('memory per entry is small: 200,000 entries in well under 64 bytes each', () => {
  const t = new SlruTable();
  const n = 200_000;
  for (let i = 0; i < n; i++) t.upsert(idFor(i, i & 7), 1000, 0);
  assert.equal(t.entries, n);
  const perEntry = t.memoryBytes / n;
  assert.ok(perEntry < 64, `${perEntry.toFixed(1)} bytes per entry`);
  for (let i = 0; i < n; i += 997) assert.notEqual(t.find(idFor(i, i & 7)), NONE);
});
