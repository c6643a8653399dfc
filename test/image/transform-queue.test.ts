import { availableParallelism } from 'node:os';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FastImageCacheError } from '../../src/errors.ts';
import { defaultTransformConcurrency, threadPoolSize, TransformQueue } from '../../src/image/transform-queue.ts';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve = (): void => {};
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('transform queue', () => {
  test('runs at most `concurrency` at once, in arrival order, and refuses beyond the queue with overloaded', async () => {
    const queue = new TransformQueue({ concurrency: 2, maxQueue: 2, retryAfterSeconds: 3 });
    const gates = Array.from({ length: 4 }, () => deferred());
    const started: number[] = [];
    let peak = 0;
    const runs = gates.map((gate, i) =>
      queue.run(async () => {
        started.push(i);
        peak = Math.max(peak, queue.running);
        await gate.promise;
        return i;
      }),
    );
    await Promise.resolve();
    assert.deepEqual(started, [0, 1]);
    assert.equal(queue.waiting, 2);

    const refused = await queue.run(() => Promise.resolve('never')).catch((err: unknown) => err);
    assert.ok(refused instanceof FastImageCacheError);
    assert.equal(refused.code, 'overloaded');
    assert.equal(refused.status, 503);
    assert.equal(refused.retryAfterSeconds, 3);

    gates[1]?.resolve();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(started, [0, 1, 2], 'the freed slot goes to the first waiter');
    for (const gate of gates) gate.resolve();
    assert.deepEqual(await Promise.all(runs), [0, 1, 2, 3]);
    assert.equal(peak, 2);
    assert.equal(queue.running, 0);
    assert.equal(queue.waiting, 0);
  });

  test('a failing task frees its slot and its error reaches only its caller', async () => {
    const queue = new TransformQueue({ concurrency: 1, maxQueue: 1 });
    const failing = queue.run(() => Promise.reject(new Error('boom')));
    const next = queue.run(() => Promise.resolve('ok'));
    await assert.rejects(failing, /boom/);
    assert.equal(await next, 'ok');
    assert.equal(queue.running, 0);
  });

  test('automatic concurrency stays two below the thread pool, and at least one', () => {
    assert.equal(threadPoolSize({}), 4);
    assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: '16' }), 16);
    assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: 'lots' }), 4);
    assert.ok(defaultTransformConcurrency(4) <= 2);
    assert.ok(defaultTransformConcurrency(3) === 1);
    assert.ok(defaultTransformConcurrency(1) === 1);
    assert.ok(defaultTransformConcurrency(64) >= 1);
  });

  test('automatic concurrency is shared out between the processes serving on one machine', () => {
    const cpus = availableParallelism();
    assert.equal(defaultTransformConcurrency(1024), cpus);
    assert.equal(defaultTransformConcurrency(1024, cpus), 1, 'one worker per CPU: one transform each');
    assert.equal(defaultTransformConcurrency(1024, 2 * cpus), 1, 'never none');
    if (cpus >= 2) assert.equal(defaultTransformConcurrency(1024, 2), Math.floor(cpus / 2));
  });
});
