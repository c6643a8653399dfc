import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { silentLogger } from '../../src/log.ts';
import { EntryCipher } from '../../src/storage/entry-cipher.ts';
import { FsStorage, type FsStorageOptions } from '../../src/storage/fs-storage.ts';
import type { ReadEntry, StoredEntry } from '../../src/storage/types.ts';
import { makeEntry, sha256 } from '../helpers/entries.ts';

// Entry files are kept open between reads (FsStorage.read). Two FsStorage
// instances on one directory stand for two processes: neither tells the other
// what it wrote or removed.

const scratch: string[] = [];
const opened: FsStorage[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function cacheDir(): Promise<string> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-kept-'));
  scratch.push(base);
  return path.join(base, 'cache');
}

async function open(dir: string, opts: Partial<FsStorageOptions> = {}): Promise<FsStorage> {
  const storage = await FsStorage.open({ dir, logger: silentLogger(), ...opts });
  opened.push(storage);
  return storage;
}



const idOf = (storage: FsStorage, entry: StoredEntry) => storage.entryId(entry.meta.sourceKey, entry.meta.key);
const put = (storage: FsStorage, entry: StoredEntry) => storage.write(idOf(storage, entry), storage.prepare(entry));
const get = (storage: FsStorage, entry: StoredEntry) => storage.read(idOf(storage, entry));

/** This process's descriptors open on files under `dir` (deleted ones end in " (deleted)"). */
function openFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(dir + path.sep)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

const onLinux = process.platform === 'linux';

function assertBody(read: ReadEntry | undefined, expected: StoredEntry, what: string): void {
  assert.ok(read, `${what}: readable`);
  assert.equal(read.body.toString(), expected.body.toString(), what);
  assert.equal(read.meta.sha256, expected.meta.sha256, what);
}

for (const encrypted of [false, true]) {
  const cipherOpts = (): Partial<FsStorageOptions> => (encrypted ? { cipher: new EntryCipher([Buffer.alloc(32, 7)]) } : {});
  const label = encrypted ? 'encrypted' : 'plain';

  test(`${label}: the body is vouched for only once the storage hashed it itself, then on every read of the same file`, async () => {
    const storage = await open(await cacheDir(), cipherOpts());
    const entry = makeEntry('https://example.com/a.png', 'a body of some length');
    await put(storage, entry);
    const first = await get(storage, entry);
    assertBody(first, entry, 'first read');
    assert.notEqual(first?.bodyVerified, true, 'a first read leaves the hash to the caller');
    for (let i = 0; i < 3; i++) {
      const again = await get(storage, entry);
      assertBody(again, entry, `read ${i + 2}`);
      assert.equal(again?.bodyVerified, true);
    }
  });

  test(`${label}: another process's replacement is read at once, its deletion and its group purge are misses`, async () => {
    const dir = await cacheDir();
    const here = await open(dir, cipherOpts());
    const other = await open(dir, cipherOpts());
    const v1 = makeEntry('https://example.com/a.png', 'version one');
    const v2 = makeEntry('https://example.com/a.png', 'version two, longer');
    await put(here, v1);
    for (let i = 0; i < 3; i++) assertBody(await get(here, v1), v1, 'v1');

    await put(other, v2);
    const afterReplace = await get(here, v1);
    assertBody(afterReplace, v2, 'after the other process replaced it');
    assertBody(await get(here, v1), v2, 'and again');

    assert.equal(await other.delete(idOf(other, v1)), true);
    assert.equal(await get(here, v1), undefined, 'deleted by the other process');

    const variant = makeEntry('https://example.com/a.png', 'a variant', 'w_10');
    await put(here, v1);
    await put(here, variant);
    for (let i = 0; i < 2; i++) {
      assertBody(await get(here, v1), v1, 'source');
      assertBody(await get(here, variant), variant, 'variant');
    }
    assert.equal((await other.deleteGroup(other.groupOf(idOf(other, v1)))).length, 2);
    assert.equal(await get(here, v1), undefined, 'source purged by the other process');
    assert.equal(await get(here, variant), undefined, 'variant purged by the other process');
    assert.equal(await here.readMeta(idOf(here, v1)), undefined);
  });
}

test('a file altered in place after it was verified is never vouched for, and reads as its new (damaged) bytes', async () => {
  const dir = await cacheDir();
  const storage = await open(dir);
  const entry = makeEntry('https://example.com/a.png', 'the original body bytes');
  await put(storage, entry);
  for (let i = 0; i < 3; i++) assert.equal((await get(storage, entry))?.bodyVerified === true, i > 0);

  const [file] = (await fs.readdir(dir, { recursive: true })).filter((f) => /\/[0-9a-f]{8}$/.test(f));
  const handle = await fs.open(path.join(dir, file ?? ''), 'r+');
  const size = (await handle.stat()).size;
  await handle.write(Buffer.from('X'), 0, 1, size - 3); // inside the body, same size
  await handle.close();

  const damaged = await get(storage, entry);
  assert.ok(damaged);
  assert.notEqual(damaged.bodyVerified, true, 'altered bytes must not be vouched for');
  assert.notEqual(sha256(damaged.body), damaged.meta.sha256, 'the caller, hashing, finds the damage');
});

test('this process replacing, deleting, purging or clearing entries closes their kept files', { skip: !onLinux && 'needs /proc' }, async () => {
  const dir = await cacheDir();
  const storage = await open(dir);
  const a = makeEntry('https://example.com/a.png', 'a');
  const b = makeEntry('https://example.com/b.png', 'b');
  const c = makeEntry('https://example.com/c.png', 'c');
  for (const e of [a, b, c]) {
    await put(storage, e);
    await get(storage, e);
  }
  assert.equal(openFilesUnder(dir).length, 3);
  await put(storage, makeEntry('https://example.com/a.png', 'a2'));
  assert.equal((await get(storage, a))?.body.toString(), 'a2');
  await storage.delete(idOf(storage, b));
  await storage.deleteGroup(storage.groupOf(idOf(storage, c)));
  assert.equal(openFilesUnder(dir).filter((f) => f.endsWith('(deleted)')).length, 0, 'no descriptor holds a removed file');
  assert.equal(openFilesUnder(dir).length, 1, 'only the new a');
  await storage.clear();
  assert.deepEqual(openFilesUnder(dir), []);
  assert.equal(await get(storage, a), undefined);
});

test('at most keepOpenFiles entry files stay open; close() closes them all', { skip: !onLinux && 'needs /proc' }, async () => {
  const dir = await cacheDir();
  const storage = await open(dir, { keepOpenFiles: 4 });
  const entries = Array.from({ length: 10 }, (_, i) => makeEntry(`https://example.com/${i}.png`, `body ${i}`));
  for (const e of entries) await put(storage, e);
  for (let round = 0; round < 2; round++) {
    for (const e of entries) {
      assertBody(await get(storage, e), e, 'read');
      assert.ok(openFilesUnder(dir).length <= 4, `${openFilesUnder(dir).length} files open`);
    }
  }
  assert.equal(openFilesUnder(dir).length, 4);
  await storage.close();
  assert.deepEqual(openFilesUnder(dir), []);

  const none = await open(dir, { keepOpenFiles: 0 });
  assertBody(await get(none, entries[0] as StoredEntry), entries[0] as StoredEntry, 'without kept files');
  assert.deepEqual(openFilesUnder(dir), []);
});

test('files another process deleted are closed by the periodic check, so their space is freed', { skip: !onLinux && 'needs /proc' }, async () => {
  const dir = await cacheDir();
  const here = await open(dir, { staleSweepMs: 10 });
  const other = await open(dir, { keepOpenFiles: 0 });
  const entries = Array.from({ length: 5 }, (_, i) => makeEntry(`https://example.com/${i}.png`, `body ${i}`));
  for (const e of entries) {
    await put(here, e);
    await get(here, e);
  }
  for (const e of entries.slice(0, 3)) await other.delete(idOf(other, e));
  // No read of them comes: only the periodic check can let them go.
  const deadline = Date.now() + 10_000;
  while (openFilesUnder(dir).some((f) => f.endsWith('(deleted)')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(openFilesUnder(dir).filter((f) => f.endsWith('(deleted)')), []);
  assert.equal(openFilesUnder(dir).length, 2, 'the entries still there stay open');
});

test('a storage dropped without close() is collected without ending the process, and its files are closed', { skip: !onLinux && 'needs /proc' }, async () => {
  // Node ends the process when it collects a FileHandle still open: the storage must never let that happen.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = await cacheDir();
  const entries = Array.from({ length: 3 }, (_, i) => makeEntry(`https://example.com/${i}.png`, `body ${i}`));
  await (async () => {
    const forgotten = await FsStorage.open({ dir, logger: silentLogger(), staleSweepMs: 10 });
    for (const e of entries) {
      await put(forgotten, e);
      await get(forgotten, e);
    }
  })();
  assert.equal(openFilesUnder(dir).length, 3);
  const deadline = Date.now() + 10_000;
  while (openFilesUnder(dir).length > 0 && Date.now() < deadline) {
    gc();
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(openFilesUnder(dir), [], 'closed once the storage was collected');
});

test('a repeat read asked to lend its body reads it into a buffer that, once released, serves a later read', async () => {
  const dir = await cacheDir();
  const storage = await open(dir);
  const a = makeEntry('https://images.example/a.png', Buffer.alloc(100_000, 'a'));
  const b = makeEntry('https://images.example/b.png', Buffer.alloc(90_000, 'b'));
  await put(storage, a);
  await put(storage, b);
  const lend = () => true;
  const read = (e: StoredEntry) => storage.read(idOf(storage, e), { lend });

  const fresh = await read(a);
  assertBody(fresh, a, 'first read');
  assert.equal(fresh?.release, undefined, 'a first read opens the file: never lent');
  const lent = await read(a);
  assertBody(lent, a, 'repeat read');
  assert.ok(lent?.release, 'a repeat read through the kept file is lent');
  assert.equal((await get(storage, a))?.release, undefined, 'not asked to lend: a buffer of its own');
  assert.equal((await storage.read(idOf(storage, a), { lend: (size) => size > 100_000 }))?.release, undefined, 'lend() said no for this size');

  await read(b); // b's file is kept open now
  const whileLent = await read(b);
  assert.notEqual(whileLent?.body.buffer, lent.body.buffer, 'not released yet: another read gets another buffer');
  assertBody(lent, a, 'still a');
  lent.release();
  const reused = await read(b);
  assert.equal(reused?.body.buffer, lent.body.buffer, 'released: the next read of that size class reuses it');
  assertBody(reused, b, 'and holds the new read, whole');
});

test('an encrypted entry is never lent (its body is decrypted into a buffer of its own)', async () => {
  const dir = await cacheDir();
  const storage = await open(dir, { cipher: new EntryCipher([Buffer.alloc(32, 7)]) });
  const a = makeEntry('https://images.example/a.png', Buffer.alloc(100_000, 'a'));
  await put(storage, a);
  for (let i = 0; i < 3; i++) {
    const got = await storage.read(idOf(storage, a), { lend: () => true });
    assertBody(got, a, `read ${i}`);
    assert.equal(got?.release, undefined);
  }
});
