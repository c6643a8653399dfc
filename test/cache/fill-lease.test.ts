/**
 * Cross-process single-flight: the fill lease table (as the cluster primary
 * keeps it) and cache managers that reach it through the real IPC RPC layer
 * over a structured-clone channel, as cluster workers do.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, describe, test } from 'node:test';
import { CacheManager, type Loader, type LoadResult } from '../../src/cache/cache-manager.ts';
import { FillLeaseTable, type LeaseAnswer } from '../../src/cache/fill-lease.ts';
import { IpcRpc, type IpcEndpoint } from '../../src/cli/ipc-rpc.ts';
import { fillLeaseHandlers, RemoteFillLease } from '../../src/cli/remote-fill-lease.ts';
import { FastImageCacheError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { tempStorage } from './lifecycle-helpers.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** Two ends of a message channel that, like process IPC, deliver structured clones asynchronously. */
function channel(): [IpcEndpoint, IpcEndpoint] {
  const a = new EventEmitter();
  const b = new EventEmitter();
  const end = (self: EventEmitter, other: EventEmitter): IpcEndpoint => ({
    send: (message: unknown) => setImmediate(() => other.emit('message', structuredClone(message))),
    on: (event, listener) => self.on(event, listener),
    off: (event, listener) => self.off(event, listener),
  });
  return [end(a, b), end(b, a)];
}

/** A "worker" reaching the primary's table over IPC: its RemoteFillLease, and a way to cut it off as if it died. */
function worker(table: FillLeaseTable, id: number, maxWaitMs = 5_000): { lease: RemoteFillLease; die: () => void } {
  const [primaryEnd, workerEnd] = channel();
  const primary = new IpcRpc(primaryEnd, fillLeaseHandlers(table.viewFor(id)));
  const rpc = new IpcRpc(workerEnd, {});
  cleanups.push(() => {
    rpc.close();
    primary.close();
  });
  return {
    lease: new RemoteFillLease(rpc, silentLogger(), { maxWaitMs }),
    die: () => {
      rpc.close('worker died');
      primary.close('worker exited');
      table.dropOwner(id);
    },
  };
}

function table(ttlMs = 5_000, onWait?: () => void): FillLeaseTable {
  const t = new FillLeaseTable({ ttlMs, ...(onWait ? { onWait } : {}) });
  cleanups.push(() => { t.close(); });
  return t;
}

describe('fill lease table', () => {
  test('one holder per key; waiters get its verdict at release; other keys are independent', async () => {
    const t = table();
    const a = t.viewFor(1);
    const b = t.viewFor(2);
    const lead = await a.acquire('k', 1000);
    assert.equal(lead.kind, 'lead');
    assert.equal((await b.acquire('other', 1000)).kind, 'lead', 'another key is not held up');
    const waiting = b.acquire('k', 5_000);
    const alsoWaiting = a.acquire('k', 5_000);
    a.release('k', (lead as { token: number }).token, { outcome: 'filled' });
    assert.deepEqual(await waiting, { kind: 'done', verdict: { outcome: 'filled' } });
    assert.deepEqual(await alsoWaiting, { kind: 'done', verdict: { outcome: 'filled' } });
    assert.equal((await b.acquire('k', 1000)).kind, 'lead', 'released: the next fill leads again');
  });

  test('the origin\'s refusals are passed on; a failure of the holder itself is not', async () => {
    const t = table();
    const a = t.viewFor(1);
    const b = t.viewFor(2);
    for (const [code, shared] of [['not_found', true], ['origin_error', true], ['overloaded', false], ['internal_error', false]] as const) {
      const lead = (await a.acquire(code, 1000)) as { token: number };
      const waiting = b.acquire(code, 5_000);
      a.release(code, lead.token, { outcome: 'failed', code });
      assert.deepEqual(await waiting, { kind: 'done', verdict: shared ? { outcome: 'failed', code } : { outcome: 'failed' } }, code);
    }
  });

  test('a holder that exits hands the lease to the first waiter at once; the others keep waiting for the new holder', async () => {
    const t = table(60_000);
    const lead = await t.viewFor(1).acquire('k', 1000);
    assert.equal(lead.kind, 'lead');
    const second = t.viewFor(2).acquire('k', 30_000);
    const third = t.viewFor(3).acquire('k', 30_000);
    const started = performance.now();
    t.dropOwner(1);
    const next = await second;
    assert.equal(next.kind, 'lead');
    assert.ok(performance.now() - started < 1000, 'not after the 60 s lease timeout');
    // The dead holder's late release changes nothing.
    t.viewFor(1).release('k', (lead as { token: number }).token, { outcome: 'failed', code: 'not_found' });
    t.viewFor(2).release('k', (next as { token: number }).token, { outcome: 'filled' });
    assert.deepEqual(await third, { kind: 'done', verdict: { outcome: 'filled' } });
  });

  test('a holder that stops renewing loses the lease after the TTL; one that renews keeps it', async () => {
    const t = table(150);
    const renewing = t.viewFor(1);
    const lead = (await renewing.acquire('kept', 1000)) as Extract<LeaseAnswer, { kind: 'lead' }>;
    assert.equal(lead.renewEveryMs, 50);
    const timer = setInterval(() => renewing.renew('kept', lead.token), lead.renewEveryMs);
    cleanups.push(() => { clearInterval(timer); });
    const stuck = await t.viewFor(1).acquire('stuck', 1000);
    assert.equal(stuck.kind, 'lead');

    const started = performance.now();
    const takeOver = await t.viewFor(2).acquire('stuck', 10_000);
    assert.equal(takeOver.kind, 'lead', 'the stuck holder\'s lease went to the waiter');
    const waited = performance.now() - started;
    assert.ok(waited >= 100 && waited < 2_000, `took over after ${Math.round(waited)} ms (TTL 150 ms)`);
    // Meanwhile the renewed lease is still held: a new caller waits, and gives up at its own limit.
    assert.deepEqual(await t.viewFor(2).acquire('kept', 100), { kind: 'gave_up' });
    assert.equal(renewing.renew('kept', lead.token), true);
  });
});

/** A loader that counts calls, can be held at a gate, and answers bytes naming the URL. */
function loaderOf(opts: { gate?: Promise<void>; cacheControl?: string; fail?: () => Error } = {}) {
  const calls: string[] = [];
  const entered = deferred();
  const loader: Loader = async ({ url }): Promise<LoadResult> => {
    calls.push(url);
    entered.resolve();
    if (opts.gate) await opts.gate;
    if (opts.fail) throw opts.fail();
    return {
      status: 200,
      body: Buffer.from(`\x89PNG bytes of ${url}, fetch ${calls.length}`),
      contentType: 'image/png',
      origin: { cacheControl: opts.cacheControl ?? 'max-age=3600' },
    };
  };
  return { loader, calls, entered: entered.promise };
}

async function twoWorkers(loaders: [Loader, Loader], opts: { ttlMs?: number } = {}) {
  const { storage, cleanup } = await tempStorage();
  cleanups.push(cleanup);
  const waiting = deferred();
  const t = table(opts.ttlMs, () => { waiting.resolve(); });
  const workers = loaders.map((loader, i) => {
    const w = worker(t, i + 1);
    const cache = new CacheManager({ storage, loader, logger: silentLogger(), fillLease: w.lease, memoryCacheBytes: 0 });
    cleanups.push(() => cache.close());
    return { ...w, cache };
  });
  /** `someoneWaits` resolves once a worker waits for another's lease. */
  return { workers: workers as [(typeof workers)[0], (typeof workers)[0]], table: t, someoneWaits: waiting.promise };
}

const URL_A = 'https://images.example/cold.png';

describe('cache managers sharing fill leases', () => {
  test('a cold stampede on two workers makes one origin fetch; every answer has the same bytes', async () => {
    const gate = deferred();
    const first = loaderOf({ gate: gate.promise });
    const second = loaderOf({ gate: gate.promise });
    const { workers, someoneWaits } = await twoWorkers([first.loader, second.loader]);
    const all = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? workers[0] : workers[1]).cache.get({ sourceUrl: URL_A, variant: '_' }));
    // Either worker may win the lease; the other must wait for it.
    await Promise.race([first.entered, second.entered]);
    await someoneWaits;
    gate.resolve();
    const results = await Promise.all(all);
    assert.equal(first.calls.length + second.calls.length, 1, 'one origin fetch for both workers');
    for (const r of results) assert.deepEqual(r.body, results[0]?.body);
    assert.ok(results.every((r) => r.status === 'MISS'), 'every request waited for the fetch');
    const again = await workers[1].cache.get({ sourceUrl: URL_A, variant: '_' });
    assert.equal(again.status, 'HIT');
  });

  test('a refusal of the origin reaches the waiting worker without a second fetch', async () => {
    const gate = deferred();
    const first = loaderOf({ gate: gate.promise, fail: () => new FastImageCacheError('not_found', 'origin said 404') });
    const second = loaderOf();
    const { workers, someoneWaits } = await twoWorkers([first.loader, second.loader]);
    const leading = workers[0].cache.get({ sourceUrl: URL_A, variant: '_' });
    await first.entered;
    const waiting = workers[1].cache.get({ sourceUrl: URL_A, variant: '_' });
    await someoneWaits;
    gate.resolve();
    await Promise.all([assert.rejects(leading, { code: 'not_found' }), assert.rejects(waiting, { code: 'not_found' })]);
    assert.equal(second.calls.length, 0);
    // The waiter remembers it too (negative cache): still no fetch.
    await assert.rejects(workers[1].cache.get({ sourceUrl: URL_A, variant: '_' }), { code: 'not_found' });
    assert.equal(second.calls.length, 0);
  });

  test('what may not be stored (no-store) is fetched by the waiter itself once the holder is done', async () => {
    const gate = deferred();
    const first = loaderOf({ gate: gate.promise, cacheControl: 'no-store' });
    const second = loaderOf({ cacheControl: 'no-store' });
    const { workers, someoneWaits } = await twoWorkers([first.loader, second.loader]);
    const leading = workers[0].cache.get({ sourceUrl: URL_A, variant: '_' });
    await first.entered;
    const waiting = workers[1].cache.get({ sourceUrl: URL_A, variant: '_' });
    // The waiter does not fetch while the holder works.
    await someoneWaits;
    assert.equal(second.calls.length, 0);
    gate.resolve();
    assert.equal((await leading).status, 'MISS');
    assert.equal((await waiting).status, 'MISS');
    assert.equal(second.calls.length, 1, 'nothing on disk to read: fetched there');
  });

  test('a worker that dies holding the lease does not hold up the other: it fetches at once', async () => {
    const stuck = deferred();
    const first = loaderOf({ gate: stuck.promise });
    const second = loaderOf();
    const { workers, someoneWaits } = await twoWorkers([first.loader, second.loader], { ttlMs: 60_000 });
    // Runs first at cleanup, so the dead worker's manager can close.
    cleanups.push(() => { stuck.resolve(); });
    void workers[0].cache.get({ sourceUrl: URL_A, variant: '_' }).catch(() => {});
    await first.entered;
    const waiting = workers[1].cache.get({ sourceUrl: URL_A, variant: '_' });
    await someoneWaits;
    assert.equal(second.calls.length, 0, 'waiting for the holder');
    const started = performance.now();
    workers[0].die();
    const got = await waiting;
    assert.equal(got.status, 'MISS');
    assert.equal(second.calls.length, 1);
    assert.ok(performance.now() - started < 1000, 'long before the 60 s lease timeout');
  });
});
