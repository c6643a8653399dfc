import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from '../../src/cache/single-flight.ts';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test('concurrent calls for one key run fn once and share its value', async () => {
  const flights = new SingleFlight<{ n: number }>();
  const gate = deferred();
  let calls = 0;
  const fn = async () => {
    calls += 1;
    await gate.promise;
    return { n: calls };
  };
  const results = Array.from({ length: 25 }, () => flights.run('k', fn));
  assert.equal(flights.size, 1);
  gate.resolve();
  const values = await Promise.all(results);
  assert.equal(calls, 1);
  for (const v of values) assert.equal(v, values[0]);
  assert.equal(flights.size, 0, 'key freed after success');
});

test('concurrent callers all get the same error, and the failure is not remembered', async () => {
  const flights = new SingleFlight<string>();
  const gate = deferred();
  const boom = new Error('boom');
  let calls = 0;
  const failing = async () => {
    calls += 1;
    await gate.promise;
    throw boom;
  };
  const results = Array.from({ length: 10 }, () => flights.run('k', failing));
  gate.resolve();
  const outcomes = await Promise.allSettled(results);
  assert.equal(calls, 1);
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.equal(o.reason, boom);
  }
  assert.equal(flights.size, 0);
  assert.equal(await flights.run('k', () => Promise.resolve('second try')), 'second try');
});

test('a synchronous throw becomes a rejection and frees the key', async () => {
  const flights = new SingleFlight<string>();
  await assert.rejects(
    flights.run('k', () => {
      throw new Error('sync');
    }),
    /sync/,
  );
  assert.equal(flights.size, 0);
});

test('different keys run independently', async () => {
  const flights = new SingleFlight<string>();
  const seen: string[] = [];
  const [a, b] = await Promise.all([
    flights.run('a', () => (seen.push('a'), Promise.resolve('A'))),
    flights.run('b', () => (seen.push('b'), Promise.resolve('B'))),
  ]);
  assert.deepEqual([a, b], ['A', 'B']);
  assert.deepEqual(seen.sort(), ['a', 'b']);
});

test('idle() waits for running calls, failed ones included', async () => {
  const flights = new SingleFlight<string>();
  const gate = deferred();
  let finished = false;
  const p = flights.run('k', async () => {
    await gate.promise;
    finished = true;
    throw new Error('late');
  });
  p.catch(() => {});
  const idle = flights.idle();
  gate.resolve();
  await idle;
  assert.equal(finished, true);
});

test('runAlone tells a caller whether anyone else got the same value', async () => {
  const flights = new SingleFlight<{ n: number }>();
  const alone = await flights.runAlone('k', () => Promise.resolve({ n: 1 }));
  assert.equal(alone.alone, true);
  const gate = deferred();
  const fn = async () => {
    await gate.promise;
    return { n: 2 };
  };
  const first = flights.runAlone('k', fn);
  const joined = flights.run('k', fn);
  gate.resolve();
  const [a, b] = await Promise.all([first, joined]);
  assert.equal(a.alone, false, 'run() joined the same call: the value is shared');
  assert.equal(a.value, b);
});

test('the key is free once the value is out: a caller acting on it starts a new call instead of sharing the old value', async () => {
  const flights = new SingleFlight<{ n: number }>();
  let calls = 0;
  const fn = () => Promise.resolve({ n: ++calls });
  let second: Promise<{ value: { n: number }; alone: boolean }> | undefined;
  const first = await flights.runAlone('k', fn).then((got) => {
    second = flights.runAlone('k', fn);
    return got;
  });
  assert.equal(first.alone, true);
  const got = await (second as Promise<{ value: { n: number }; alone: boolean }>);
  assert.equal(got.value.n, 2);
  assert.equal(first.alone, true, 'the first caller still got its value alone');
});
