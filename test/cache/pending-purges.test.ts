import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/log.ts';
import { PendingPurges } from '../../src/cache/pending-purges.ts';
import type { PurgeMessage } from '../../src/cache/purge-bus.ts';

const source = (n: number): PurgeMessage => ({ kind: 'source', sourceKey: String(n).padStart(16, '0') });
const until = async (done: () => boolean): Promise<void> => {
  const deadline = Date.now() + 5_000;
  while (!done()) {
    if (Date.now() > deadline) assert.fail('not in time');
    await new Promise((r) => setTimeout(r, 5));
  }
};

/** A carrier that fails while `down` is true and records what it carried. */
function carrier() {
  const state = { down: true, carried: [] as PurgeMessage[], tries: 0 };
  const carry = (message: PurgeMessage) => {
    state.tries += 1;
    if (state.down) return Promise.resolve(false);
    state.carried.push(message);
    return Promise.resolve(true);
  };
  return { state, carry };
}

test('owed purges are carried in order once Redis takes them, each once', async () => {
  const { state, carry } = carrier();
  const owed = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent') });
  owed.add(source(1));
  owed.add(source(2));
  owed.add(source(1)); // again: once, at its latest place
  await until(() => state.tries >= 3);
  assert.equal(owed.size, 2, 'kept while Redis is away');
  state.down = false;
  await until(() => owed.size === 0);
  assert.deepEqual(state.carried, [source(2), source(1)]);
  owed.close();
});

test('a purge of everything covers the source purges owed before and after it', async () => {
  const { state, carry } = carrier();
  const owed = new PendingPurges({ carry, retryMs: 10, max: 100, logger: createLogger('silent') });
  owed.add(source(1));
  owed.add({ kind: 'all' });
  owed.add(source(2));
  assert.equal(owed.size, 1);
  state.down = false;
  await until(() => owed.size === 0);
  assert.deepEqual(state.carried, [{ kind: 'all' }]);
  owed.close();
});

test('bounded: beyond max the oldest is given up; close() stops the retries', async () => {
  const { state, carry } = carrier();
  const owed = new PendingPurges({ carry, retryMs: 10, max: 2, logger: createLogger('silent') });
  owed.add(source(1));
  owed.add(source(2));
  owed.add(source(3));
  assert.equal(owed.size, 2);
  state.down = false;
  await until(() => owed.size === 0);
  assert.deepEqual(state.carried, [source(2), source(3)]);

  state.down = true;
  owed.add(source(4));
  owed.close();
  const tries = state.tries;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(state.tries, tries, 'no retry after close');
});
