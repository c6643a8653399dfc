import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CacheIndex, type CacheIndexApi } from '../../src/cache/cache-index.ts';
import { IpcRpc, type IpcEndpoint } from '../../src/cli/ipc-rpc.ts';
import { HeldReservations, RemoteCacheIndex, cacheIndexHandlers } from '../../src/cli/remote-cache-index.ts';
import { silentLogger } from '../../src/log.ts';

/** Two ends of an IPC channel in one process: what one sends, the other receives on a later turn. */
function channel(): { worker: IpcEndpoint; primary: IpcEndpoint; sent: unknown[] } {
  const a = new EventEmitter();
  const b = new EventEmitter();
  const sent: unknown[] = [];
  const end = (self: EventEmitter, other: EventEmitter): IpcEndpoint => ({
    send: (message) => {
      sent.push(message);
      setImmediate(() => other.emit('message', structuredClone(message)));
      return true;
    },
    on: (event, listener) => self.on(event, listener),
    off: (event, listener) => self.off(event, listener),
  });
  return { worker: end(a, b), primary: end(b, a), sent };
}

/** The primary's index, reduced to what touches do: the order it was told about uses. */
function touchLog(): { index: CacheIndexApi; touched: string[] } {
  const touched: string[] = [];
  const unused = () => Promise.reject(new Error('not used here'));
  const index = {
    touch: (id: string) => {
      touched.push(id);
      return Promise.resolve();
    },
    reserve: unused,
    commit: unused,
    release: unused,
    remove: unused,
    clear: unused,
    stats: unused,
  } as unknown as CacheIndexApi;
  return { index, touched };
}

/** Messages that ask the other side to do something: calls (answered) and notifications (not). */
const calls = (sent: unknown[]) =>
  sent.filter((m) => ['call', 'note'].includes((m as { ficRpc?: string }).ficRpc ?? '')) as Array<{ ficRpc: string; method: string }>;

test('hits touch the primary index in batches, not one IPC call per hit, most recent use last', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { worker, primary, sent } = channel();
  const { index, touched } = touchLog();
  new IpcRpc(primary, cacheIndexHandlers(index));
  const remote = new RemoteCacheIndex(new IpcRpc(worker, {}), silentLogger());

  for (let i = 0; i < 300; i++) await remote.touch(['a', 'b', 'c'][i % 3] as string);
  await remote.touch('a');
  await nextTurn();
  assert.equal(calls(sent).length, 0, 'nothing is sent before the batch is due');

  t.mock.timers.tick(250);
  for (let i = 0; i < 5 && touched.length === 0; i++) await nextTurn();
  assert.deepEqual(calls(sent).map((c) => c.method), ['index.touchMany']);
  assert.deepEqual(touched, ['b', 'c', 'a']);
});

test('a large batch is sent at once, without waiting for the timer', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { worker, primary, sent } = channel();
  const { index, touched } = touchLog();
  new IpcRpc(primary, cacheIndexHandlers(index));
  const remote = new RemoteCacheIndex(new IpcRpc(worker, {}), silentLogger());
  for (let i = 0; i < 1024; i++) await remote.touch(`id-${i}`);
  for (let i = 0; i < 5 && touched.length === 0; i++) await nextTurn();
  assert.equal(calls(sent).length, 1);
  assert.equal(touched.length, 1024);
});

test('commits and releases are one message each with no answer, and the primary has applied them before a later call', async () => {
  const { worker, primary, sent } = channel();
  const log: string[] = [];
  const index = {
    commit: (token: number) => {
      log.push(`commit ${token}`);
      return Promise.resolve();
    },
    release: (token: number) => {
      log.push(`release ${token}`);
      return Promise.resolve();
    },
    stats: () => {
      log.push('stats');
      return Promise.resolve({ entries: 1 });
    },
  } as unknown as CacheIndexApi;
  new IpcRpc(primary, cacheIndexHandlers(index));
  const remote = new RemoteCacheIndex(new IpcRpc(worker, {}), silentLogger());

  await remote.commit(7);
  await remote.release(8);
  assert.deepEqual(log, [], 'neither waited for the primary');
  const stats = await remote.stats();
  assert.equal(stats.entries, 1);
  assert.deepEqual(log, ['commit 7', 'release 8', 'stats']);
  assert.deepEqual(calls(sent).map((m) => `${m.ficRpc} ${m.method}`), ['note index.commit', 'note index.release', 'call index.stats']);
  const answers = sent.filter((m) => (m as { ficRpc?: string }).ficRpc === 'result');
  assert.equal(answers.length, 1, 'only the call is answered');
});

test('a notification the primary fails on is reported there, and the channel keeps working', async () => {
  const { worker, primary } = channel();
  const failures: string[] = [];
  const index = {
    commit: () => Promise.reject(new Error('disk gone')),
    stats: () => Promise.resolve({ entries: 0 }),
  } as unknown as CacheIndexApi;
  new IpcRpc(primary, cacheIndexHandlers(index), { onNoteError: (method, err) => failures.push(`${method}: ${(err as Error).message}`) });
  const remote = new RemoteCacheIndex(new IpcRpc(worker, {}), silentLogger());
  await remote.commit(1);
  assert.equal((await remote.stats()).entries, 0);
  assert.deepEqual(failures, ['index.commit: disk gone']);
});

/** A real index over a directory with nothing in it yet (eviction deletes nothing that matters here). */
function emptyIndex(maxBytes: number): CacheIndex {
  const storage = {
    delete: () => Promise.resolve(true),
    scan: async function* () {},
  };
  return new CacheIndex({ storage, maxBytes, logger: silentLogger() });
}

// Entry ids as the storage makes them (the index's table packs them into numbers).
const DONE = '00000000000000aa/00000001';
const UNFINISHED = '00000000000000bb/00000001';
const OTHER = '00000000000000cc/00000001';

test('a worker that dies mid-write gives its reserved space back; what it committed stays', async () => {
  const { worker, primary } = channel();
  const index = emptyIndex(1000);
  const held = new HeldReservations(index);
  new IpcRpc(primary, cacheIndexHandlers(index, held));
  const remote = new RemoteCacheIndex(new IpcRpc(worker, {}), silentLogger());

  const done = await remote.reserve(DONE, 300);
  assert.notEqual(done, null);
  await remote.commit(done as number);
  const unfinished = await remote.reserve(UNFINISHED, 600);
  assert.notEqual(unfinished, null);
  assert.equal(held.size, 1, 'only the write in progress is held');
  // The worker is gone before it commits: without the release, the 600 bytes would stay reserved for good.
  assert.equal((await index.stats()).reservedBytes, 600);

  await held.releaseAll();
  const stats = await index.stats();
  assert.equal(stats.reservedBytes, 0);
  assert.equal(stats.bytes, 300, 'the committed entry is still accounted for');
  // 300 committed + 700 fits the 1000 bytes only if the 600 are free again (else 'done' would be evicted for it).
  assert.notEqual(await index.reserve(OTHER, 700), null, 'the space is usable again');
  assert.equal((await index.stats()).bytes, 300, 'without evicting the committed entry');
});

test('a reservation answered after its worker exited is released at once', async () => {
  const index = emptyIndex(1000);
  const held = new HeldReservations(index);
  const handlers = cacheIndexHandlers(index, held);
  await held.releaseAll();
  const token = await handlers['index.reserve']?.({ id: OTHER, bytes: 500 });
  assert.equal(typeof token, 'number');
  await nextTurn();
  assert.equal((await index.stats()).reservedBytes, 0);
  assert.equal(held.size, 0);
});
