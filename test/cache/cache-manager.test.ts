import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { FastImageCacheError } from '../../src/errors.ts';
import { createLogger, type Logger } from '../../src/log.ts';
import { CacheManager, type CacheManagerOptions, type CacheRequest, type Loader, type Transform } from '../../src/cache/cache-manager.ts';
import { cacheKey } from '../../src/cache/cache-key.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { TMP_DIR_NAME } from '../../src/storage/cache-dir.ts';
import { ProbedStorage } from './lifecycle-helpers.ts';

const scratch: string[] = [];
const managers: CacheManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** Checks that `promise` is still pending 20 ms on (it waits for something the test holds back); gives it back to await. */
async function stillPending<T>(promise: Promise<T>, what: string): Promise<{ result: Promise<T> }> {
  let settled = false;
  const result = promise.finally(() => {
    settled = true;
  });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(settled, false, what);
  return { result };
}

/** A logger that keeps its JSON lines, to check what a warning says. */
function recordingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>>; raw: () => string } {
  const chunks: string[] = [];
  const logger = createLogger('warn', { write: (s: string) => void chunks.push(s) });
  return {
    logger,
    lines: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>),
    raw: () => chunks.join(''),
  };
}

/**
 * The loader is the cache manager's injected dependency: a real function that
 * counts its calls and returns bytes that name the URL and the call number,
 * so a fresh load is distinguishable from a stored one.
 */
function countingLoader(opts: { gate?: Promise<void>; fail?: Error } = {}) {
  const calls: string[] = [];
  const entered = deferred();
  const loader: Loader = async ({ url }) => {
    calls.push(url);
    entered.resolve();
    if (opts.gate) await opts.gate;
    if (opts.fail) throw opts.fail;
    return {
      status: 200,
      body: Buffer.from(`\x89PNG fake image of ${url} call ${calls.length}`),
      contentType: 'image/png',
      origin: { etag: '"origin-tag"', cacheControl: 'max-age=3600' },
    };
  };
  return { loader, calls, entered: entered.promise };
}

async function setup(loaderOpts: { gate?: Promise<void>; fail?: Error } = {}, managerOpts: Partial<CacheManagerOptions> = {}) {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-cache-'));
  scratch.push(base);
  const log = recordingLogger();
  const storage = await FsStorage.open({ dir: path.join(base, 'cache'), logger: log.logger });
  const { loader, calls, entered } = countingLoader(loaderOpts);
  const cache = new CacheManager({ storage, loader, logger: log.logger, ...managerOpts });
  managers.push(cache);
  return { base, storage, cache, calls, entered, log };
}

/** No memory tier: every lookup reads the disk (for tests about what is on disk). */
const DISK_ONLY = { memoryCacheBytes: 0 };

/** Entry files in the cache directory (the fan-out tree). */
async function entryFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const l1 of await fs.readdir(dir)) {
    if (!/^[0-9a-f]{2}$/.test(l1)) continue;
    for (const l2 of await fs.readdir(path.join(dir, l1))) {
      for (const name of await fs.readdir(path.join(dir, l1, l2))) out.push(path.join(dir, l1, l2, name));
    }
  }
  return out;
}

/** A request for the source bytes of `url`. */
const src = (url: string | URL): CacheRequest => ({ sourceUrl: url, variant: '_' });

/** A transform that tags the source bytes, counting its calls. */
function taggingTransform(tag: string, calls: string[]): Transform {
  return (source) => {
    calls.push(tag);
    return Promise.resolve({ body: Buffer.concat([Buffer.from(`[${tag}]`), source.body]), contentType: 'image/webp' });
  };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const URL_A = 'https://images.example.com/cat.png?token=s3cr3t-value';

test('MISS then HIT with identical bytes, one loader call', async () => {
  const { cache, calls } = await setup();
  const first = await cache.get(src(URL_A));
  assert.equal(first.status, 'MISS');
  assert.equal(first.contentType, 'image/png');
  assert.equal(first.size, first.body.length);
  assert.equal(first.sha256, sha256(first.body));
  assert.equal(first.etag, `"${first.sha256.slice(0, 32)}"`);
  assert.equal(first.meta.sourceUrl, URL_A);
  assert.equal(first.meta.variant, '_');
  assert.deepEqual(first.meta.origin, { etag: '"origin-tag"', cacheControl: 'max-age=3600' });

  const second = await cache.get(src(URL_A));
  assert.equal(second.status, 'HIT');
  assert.ok(second.body.equals(first.body));
  assert.equal(second.etag, first.etag);
  assert.deepEqual(second.meta, first.meta);
  assert.equal(calls.length, 1);
  const stats = await cache.stats();
  assert.deepEqual({ hits: stats.hits, misses: stats.misses, entries: stats.entries }, { hits: 1, misses: 1, entries: 1 });
  assert.ok(stats.bytes > first.size, 'bytes on disk include the metadata');
});

test('entries survive a restart: a new manager on the same directory hits', async () => {
  const { cache, storage, calls } = await setup();
  const first = await cache.get(src(URL_A));
  await cache.close();
  const reopened = await FsStorage.open({ dir: storage.dir, logger: createLogger('silent') });
  const { loader, calls: newCalls } = countingLoader();
  const again = new CacheManager({ storage: reopened, loader, logger: createLogger('silent') });
  const hit = await again.get(src(URL_A));
  assert.equal(hit.status, 'HIT');
  assert.ok(hit.body.equals(first.body));
  assert.equal(calls.length + newCalls.length, 1);
});

test('50 concurrent gets of a cold key: loader runs once, all results byte-identical', async () => {
  const gate = deferred();
  const { cache, calls, entered } = await setup({ gate: gate.promise });
  const pending = Array.from({ length: 50 }, () => cache.get(src(URL_A)));
  await entered; // the loader is running and holding
  gate.resolve();
  const results = await Promise.all(pending);
  assert.equal(calls.length, 1);
  const [first] = results;
  assert.ok(first);
  for (const r of results) {
    assert.equal(r.status, 'MISS');
    assert.ok(r.body.equals(first.body));
    assert.equal(r.sha256, first.sha256);
  }
  assert.equal((await cache.get(src(URL_A))).status, 'HIT');
  assert.equal(calls.length, 1);
});

test('a loader error reaches every waiter unchanged and is not cached', async () => {
  const gate = deferred();
  const failure = new FastImageCacheError('origin_error', 'origin said 500');
  const { cache, storage, calls, entered } = await setup({ gate: gate.promise, fail: failure });
  const pending = Array.from({ length: 10 }, () => cache.get(src(URL_A)));
  await entered;
  gate.resolve();
  const outcomes = await Promise.allSettled(pending);
  assert.equal(calls.length, 1);
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.equal(o.reason, failure);
  }
  assert.equal((await storage.stats()).entries, 0);

  await assert.rejects(cache.get(src(URL_A)), failure);
  assert.equal(calls.length, 2, 'the next get calls the loader again');
});

test('equivalent URLs share one entry', async () => {
  const { cache, calls } = await setup();
  const a = await cache.get(src('HTTPS://Images.Example.COM:443/cat.png#whiskers'));
  const b = await cache.get(src('https://images.example.com/cat.png'));
  const c = await cache.get(src(new URL('https://IMAGES.example.com/./cat.png')));
  assert.equal(a.status, 'MISS');
  assert.equal(b.status, 'HIT');
  assert.equal(c.status, 'HIT');
  assert.equal(calls.length, 1);
  assert.deepEqual(calls, ['https://images.example.com/cat.png'], 'the loader gets the normalized URL');
  assert.equal((await cache.stats()).entries, 1);
});

test('a variant is made from the cached source by its transform alone; purge removes source and variants', async () => {
  const { cache, calls } = await setup();
  const transforms: string[] = [];
  const original = await cache.get(src(URL_A));
  const variant = await cache.get({ sourceUrl: URL_A, variant: 'w_100', transform: taggingTransform('w_100', transforms) });
  assert.equal(variant.status, 'MISS');
  assert.equal(variant.meta.variant, 'w_100');
  assert.equal(variant.contentType, 'image/webp');
  assert.ok(variant.body.equals(Buffer.concat([Buffer.from('[w_100]'), original.body])), 'made from the cached source bytes');
  assert.equal(variant.meta.sourceSha256, original.sha256);
  assert.equal(calls.length, 1, 'no second origin fetch');
  assert.deepEqual(transforms, ['w_100']);
  const again = await cache.get({ sourceUrl: URL_A, variant: 'w_100', transform: taggingTransform('w_100', transforms) });
  assert.equal(again.status, 'HIT');
  assert.deepEqual(transforms, ['w_100'], 'a variant hit does not transform again');
  assert.equal((await cache.stats()).entries, 2);

  assert.equal(await cache.purge(URL_A), 2);
  assert.equal((await cache.stats()).entries, 0);
});

test('five sizes of one cold image: one origin fetch, five transforms, all concurrent', async () => {
  const gate = deferred();
  const { cache, calls, entered } = await setup({ gate: gate.promise });
  const transforms: string[] = [];
  const sizes = ['w_100', 'w_200', 'w_300', 'w_400', 'w_500'];
  const pending = sizes.flatMap((v) =>
    [1, 2, 3].map(() => cache.get({ sourceUrl: URL_A, variant: v, transform: taggingTransform(v, transforms) })),
  );
  await entered;
  gate.resolve();
  const results = await Promise.all(pending);
  assert.equal(calls.length, 1);
  assert.deepEqual([...transforms].sort(), sizes, 'one transform per variant, despite three requests each');
  for (const r of results) assert.ok(r.body.toString().startsWith(`[${r.meta.variant}]`));
});

test('a cold variant is made while its source is still being written; the source lands on disk after', async () => {
  const { storage, calls, base } = await setup({}, DISK_ONLY);
  const probed = new ProbedStorage(storage);
  const slowDisk = deferred();
  probed.holdWrites = slowDisk.promise;
  const { loader } = countingLoader();
  const cache = new CacheManager({ storage: probed, loader, logger: createLogger('silent'), memoryCacheBytes: 0 });
  managers.push(cache);

  const transforms: string[] = [];
  const variant = cache.get({ sourceUrl: URL_A, variant: 'w_100', transform: taggingTransform('w_100', transforms) });
  // The source's write is held: the transform must not wait for it.
  while (transforms.length === 0) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(await entryFiles(path.join(base, 'cache')), [], 'the transform ran with nothing on disk yet');
  slowDisk.resolve();
  const made = await variant;
  assert.equal(made.status, 'MISS');
  await cache.ready();
  assert.equal((await entryFiles(path.join(base, 'cache'))).length, 2, 'source and variant both stored');
  assert.equal((await cache.get(src(URL_A))).status, 'HIT', 'the source was stored by its flight');
  assert.equal(calls.length, 0, 'the setup loader was not used');
});

test('a purge waits for a write of its source under way, so the written entry does not outlive it', async () => {
  const { storage, base } = await setup({}, DISK_ONLY);
  const probed = new ProbedStorage(storage);
  const slowDisk = deferred();
  const started = deferred();
  probed.holdWrites = slowDisk.promise;
  probed.onWrite = () => {
    started.resolve();
  };
  const { loader, calls } = countingLoader();
  const cache = new CacheManager({ storage: probed, loader, logger: createLogger('silent'), memoryCacheBytes: 0 });
  managers.push(cache);

  const filling = cache.get(src(URL_A));
  await started.promise; // past every check before the write: only the write itself is pending
  const purge = await stillPending(cache.purge(URL_A), 'the purge waits for the write under way');
  slowDisk.resolve();
  await filling;
  assert.equal(await purge.result, 1, 'and then removes what it wrote');
  assert.deepEqual(await entryFiles(path.join(base, 'cache')), []);
  probed.holdWrites = undefined;
  assert.equal((await cache.get(src(URL_A))).status, 'MISS');
  assert.equal(calls.length, 2);
});

/** A manager whose source of URL_A is already stored, and whose next writes are held until `release()`. */
async function withHeldVariantWrite() {
  const { storage, base } = await setup();
  const probed = new ProbedStorage(storage);
  const { loader, calls } = countingLoader();
  const cache = new CacheManager({ storage: probed, loader, logger: createLogger('silent') });
  managers.push(cache);
  await cache.get(src(URL_A));
  const slowDisk = deferred();
  const started = deferred();
  probed.holdWrites = slowDisk.promise;
  probed.onWrite = () => {
    started.resolve();
  };
  const transforms: string[] = [];
  const request: CacheRequest = { sourceUrl: URL_A, variant: 'w_100', transform: taggingTransform('w_100', transforms) };
  const release = () => {
    probed.holdWrites = undefined;
    slowDisk.resolve();
  };
  return { cache, storage, dir: path.join(base, 'cache'), calls, transforms, request, writeStarted: started.promise, release };
}

test('a cold variant is answered before its write reaches the disk, and is a hit from memory meanwhile', async () => {
  const { cache, dir, transforms, request, writeStarted, release } = await withHeldVariantWrite();
  const made = await cache.get(request); // would never resolve if the answer waited for the held write
  assert.equal(made.status, 'MISS');
  await writeStarted;
  assert.equal((await entryFiles(dir)).length, 1, 'only the source is on disk yet');
  const again = await cache.get(request);
  assert.equal(again.status, 'HIT');
  assert.ok(again.body.equals(made.body));
  assert.equal(transforms.length, 1, 'not made twice');
  release();
  await cache.ready();
  assert.equal((await entryFiles(dir)).length, 2, 'the variant landed');
});

test('a purge during a variant write behind the answer removes it from memory and disk, and it does not come back', async () => {
  const { cache, dir, transforms, request, writeStarted, release } = await withHeldVariantWrite();
  await cache.get(request);
  await writeStarted;
  const purge = await stillPending(cache.purge(URL_A), 'the purge waits for the write under way');
  release();
  assert.equal(await purge.result, 2, 'source and variant');
  await cache.ready();
  assert.deepEqual(await entryFiles(dir), []);
  assert.equal((await cache.get(request)).status, 'MISS', 'not served from memory either');
  assert.equal(transforms.length, 2);
});

test('close() waits for a variant write behind the answer; a new manager then hits it on disk', async () => {
  const { cache, storage, request, writeStarted, release } = await withHeldVariantWrite();
  const made = await cache.get(request);
  await writeStarted;
  const closing = await stillPending(cache.close(), 'close waits for the write');
  release();
  await closing.result;
  const reopened = await FsStorage.open({ dir: storage.dir, logger: createLogger('silent') });
  const { loader, calls } = countingLoader();
  const again = new CacheManager({ storage: reopened, loader, logger: createLogger('silent') });
  managers.push(again);
  const hit = await again.get({ ...request, transform: () => Promise.reject(new Error('must not be made again')) });
  assert.equal(hit.status, 'HIT');
  assert.ok(hit.body.equals(made.body));
  assert.equal(calls.length, 0);
});

test('a variant request without a transform is a programming error', async () => {
  const { cache } = await setup();
  await assert.rejects(cache.get({ sourceUrl: URL_A, variant: 'w_100' }), FastImageCacheError);
});

test('a stored file altered on disk is not served: warning logged, loader called again, fresh bytes', async () => {
  const { cache, storage, calls, log } = await setup({}, DISK_ONLY);
  const first = await cache.get(src(URL_A));
  const [file] = await entryFiles(storage.dir);
  assert.ok(file);
  const bytes = await fs.readFile(file);
  const last = bytes.length - 1; // the body is the tail of the entry file
  bytes[last] = (bytes[last] ?? 0) ^ 0x01;
  await fs.writeFile(file, bytes);

  const second = await cache.get(src(URL_A));
  assert.equal(second.status, 'MISS');
  assert.equal(calls.length, 2);
  assert.ok(!second.body.equals(bytes.subarray(bytes.length - first.size)), 'the altered bytes are not served');
  assert.ok(second.body.toString().endsWith('call 2'), 'fresh bytes from the loader');
  assert.equal(second.sha256, sha256(second.body));

  const warning = log.lines().find((l) => /integrity/.test(String(l.msg)));
  assert.ok(warning, 'an integrity warning is logged');
  assert.equal(warning.cacheKey, cacheKey(URL_A, '_'));
  assert.ok(!log.raw().includes('s3cr3t-value'), 'the URL and its secrets stay out of the log');

  const third = await cache.get(src(URL_A));
  assert.equal(third.status, 'HIT');
  assert.ok(third.body.equals(second.body));
});

test('an intact entry moved under another key is not served', async () => {
  const { cache, storage, calls } = await setup({}, DISK_ONLY);
  await cache.get(src('https://example.com/a.png'));
  const [fileA] = await entryFiles(storage.dir);
  await cache.get(src('https://example.com/b.png'));
  const fileB = (await entryFiles(storage.dir)).find((f) => f !== fileA);
  assert.ok(fileA && fileB);
  await fs.copyFile(fileA, fileB);

  const b = await cache.get(src('https://example.com/b.png'));
  assert.equal(b.status, 'MISS');
  assert.ok(b.body.toString().includes('https://example.com/b.png'));
  assert.equal(calls.length, 3);
});

test('a failing storage write still returns the image (MISS), logs a warning, and nothing is cached', async () => {
  const { cache, storage, calls, log } = await setup();
  const tmp = path.join(storage.dir, TMP_DIR_NAME);
  await fs.rm(tmp, { recursive: true });
  await fs.writeFile(tmp, 'a file where the temp dir should be'); // every write now fails with ENOTDIR

  const first = await cache.get(src(URL_A));
  assert.equal(first.status, 'MISS');
  assert.ok(first.body.toString().includes('cat.png'));
  assert.equal(first.sha256, sha256(first.body));
  assert.ok(log.lines().some((l) => /could not store/.test(String(l.msg))));

  const second = await cache.get(src(URL_A));
  assert.equal(second.status, 'MISS');
  assert.equal(calls.length, 2);
});

test('purge removes the entry; purgeAll removes everything', async () => {
  const { cache, calls } = await setup();
  await cache.get(src(URL_A));
  await cache.get(src('https://example.com/other.png'));
  assert.equal((await cache.stats()).entries, 2);

  assert.equal(await cache.purge('HTTPS://IMAGES.EXAMPLE.COM/cat.png?token=s3cr3t-value#x'), 1);
  assert.equal(await cache.purge(URL_A), 0);
  assert.equal((await cache.stats()).entries, 1);
  assert.equal((await cache.get(src(URL_A))).status, 'MISS');
  assert.equal(calls.length, 3);

  await cache.purgeAll();
  const stats = await cache.stats();
  assert.equal(stats.entries, 0);
  assert.equal(stats.bytes, 0);
  assert.equal((await cache.get(src('https://example.com/other.png'))).status, 'MISS');
});

test('a bad URL is refused before the loader or the storage is touched', async () => {
  const { cache, calls } = await setup();
  await assert.rejects(cache.get(src('not a url')), (err: unknown) => err instanceof FastImageCacheError && err.code === 'bad_url');
  assert.equal(calls.length, 0);
});

test('close waits for a running load, then refuses new gets', async () => {
  const gate = deferred();
  const { cache, entered } = await setup({ gate: gate.promise });
  const running = cache.get(src(URL_A));
  await entered;
  const closing = cache.close();
  gate.resolve();
  await closing;
  assert.equal((await running).status, 'MISS');
  await assert.rejects(cache.get(src(URL_A)), FastImageCacheError);
});

test('memory tier: hot hits touch neither the disk nor the loader; it is bounded and purged with its source', async () => {
  const { storage } = await setup();
  const probed = new ProbedStorage(storage);
  const loader: Loader = ({ url }) => Promise.resolve({ status: 200, body: Buffer.alloc(3000, url.length), contentType: 'image/png', origin: {} });
  const tiered = new CacheManager({ storage: probed, loader, logger: createLogger('silent'), memoryCacheBytes: 64 * 1024 });
  managers.push(tiered);
  await tiered.get(src(URL_A));
  const readsAfterFill = probed.reads;
  for (let i = 0; i < 50; i++) assert.equal((await tiered.get(src(URL_A))).status, 'HIT');
  assert.equal(probed.reads, readsAfterFill, 'no disk read for memory hits');
  const stats = await tiered.stats();
  assert.equal(stats.memoryHits, 50);
  assert.equal(stats.diskHits, 0);

  // Many other images: the tier stays within its budget, and the evicted ones come back from disk.
  for (let i = 0; i < 40; i++) await tiered.get(src(`https://example.com/fill${i}.png`));
  assert.ok((await tiered.stats()).memoryBytes <= 64 * 1024);
  assert.equal((await tiered.get(src(URL_A))).status, 'HIT');
  assert.ok(probed.reads > readsAfterFill, 'fell back to disk once pushed out of memory');

  await tiered.purge(URL_A);
  assert.equal((await tiered.get(src(URL_A))).status, 'MISS', 'a purge reaches the memory tier');
});

test('a source fetched for a variant stays out of the memory tier, which keeps what is served; passthrough still brings it in', async () => {
  const { cache, calls } = await setup();
  const transforms: string[] = [];
  const variant: CacheRequest = { sourceUrl: URL_A, variant: 'w_100', transform: taggingTransform('w_100', transforms) };
  const made = await cache.get(variant);
  let stats = await cache.stats();
  assert.equal(stats.memoryEntries, 1, 'the variant only');
  assert.ok(stats.memoryBytes >= made.size);
  assert.equal((await cache.get(variant)).status, 'HIT');
  assert.equal((await cache.stats()).memoryHits, 1, 'the variant is served from memory');

  // Another variant of the same source reads it from disk (no second fetch), and stays out of memory too.
  await cache.get({ sourceUrl: URL_A, variant: 'w_200', transform: taggingTransform('w_200', transforms) });
  stats = await cache.stats();
  assert.equal(stats.memoryEntries, 2);
  assert.equal(calls.length, 1, 'one origin fetch for both variants');

  // Passthrough of that source: a disk hit, then kept in memory like any entry served.
  assert.equal((await cache.get(src(URL_A))).status, 'HIT');
  assert.equal((await cache.stats()).memoryEntries, 3);
  assert.equal((await cache.get(src(URL_A))).status, 'HIT');
  assert.equal((await cache.stats()).memoryHits, 2);
});

test('the namespace (encoder versions, presets) is part of variant keys, not of source keys', async () => {
  const { storage } = await setup();
  const loader: Loader = ({ url }) => Promise.resolve({ status: 200, body: Buffer.from(`bytes of ${url}`), contentType: 'image/png', origin: {} });
  const transforms: string[] = [];
  const before = new CacheManager({ storage, loader, logger: createLogger('silent'), namespace: 'presets v1' });
  managers.push(before);
  await before.get({ sourceUrl: URL_A, variant: 'thumb', transform: taggingTransform('thumb', transforms) });
  const after = new CacheManager({ storage, loader, logger: createLogger('silent'), namespace: 'presets v2' });
  managers.push(after);
  assert.equal((await after.get(src(URL_A))).status, 'HIT', 'the fetched source is still good');
  assert.equal((await after.get({ sourceUrl: URL_A, variant: 'thumb', transform: taggingTransform('thumb', transforms) })).status, 'MISS');
  assert.equal(transforms.length, 2, 'the variant was made again under the new namespace');
});
