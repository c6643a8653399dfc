import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { silentLogger } from '../../src/log.ts';
import { CacheDirError, TMP_DIR_NAME } from '../../src/storage/cache-dir.ts';
import { encodeEntry } from '../../src/storage/entry-codec.ts';
import { FsStorage, SECRET_FILE_NAME } from '../../src/storage/fs-storage.ts';
import type { StoredEntry } from '../../src/storage/types.ts';
import { makeEntry, sha256 } from '../helpers/entries.ts';

const isRoot = process.getuid?.() === 0;

const scratch: string[] = [];
async function freshDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-storage-'));
  scratch.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of scratch.splice(0)) {
    await restoreWritable(dir);
    await fs.rm(dir, { recursive: true, force: true });
  }
});

async function restoreWritable(dir: string): Promise<void> {
  for (const p of await walk(dir)) {
    const st = await fs.lstat(p).catch(() => undefined);
    if (st?.isDirectory()) await fs.chmod(p, 0o700);
  }
}

async function openStorage(dir?: string): Promise<FsStorage> {
  return FsStorage.open({ dir: dir ?? path.join(await freshDir(), 'cache'), logger: silentLogger() });
}



/** Where `entry` lives in `storage`. */
const idOf = (storage: FsStorage, entry: StoredEntry) => storage.entryId(entry.meta.sourceKey, entry.meta.key);
const put = (storage: FsStorage, entry: StoredEntry): Promise<void> => storage.write(idOf(storage, entry), storage.prepare(entry));
const get = (storage: FsStorage, entry: StoredEntry) => storage.read(idOf(storage, entry));

/** Every path below `root` (files and directories). */
async function walk(root: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await fs.readdir(root, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(root, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...(await walk(p)));
  }
  return out;
}

/** Entry files: everything in the fan-out tree, i.e. not .secret and not under tmp/. */
async function entryFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const p of await walk(dir)) {
    const rel = path.relative(dir, p);
    if (rel === SECRET_FILE_NAME || rel === TMP_DIR_NAME || rel.startsWith(TMP_DIR_NAME + path.sep)) continue;
    if ((await fs.lstat(p)).isFile()) files.push(p);
  }
  return files;
}

async function tempFilesLeft(dir: string): Promise<string[]> {
  return (await walk(dir)).filter((p) => p.endsWith('.tmp') || path.dirname(p) === path.join(dir, TMP_DIR_NAME));
}

function assertSameEntry(actual: StoredEntry | undefined, expected: StoredEntry): void {
  assert.ok(actual, 'entry should be readable');
  assert.deepEqual(actual.meta, expected.meta);
  assert.ok(actual.body.equals(expected.body), 'body bytes should be identical');
}

test('round trip: what is written reads back identically; unknown keys read as undefined', async () => {
  const storage = await openStorage();
  const entry = makeEntry('https://example.com/a.png', Buffer.from([0, 1, 2, 3, 254, 255]));
  await put(storage, entry);
  assertSameEntry(await get(storage, entry), entry);
  assert.equal(await storage.read(storage.entryId(sha256('never'), sha256('written'))), undefined);
});

test('a second write replaces the entry and leaves no temp file', async () => {
  const storage = await openStorage();
  const first = makeEntry('https://example.com/a.png', 'first');
  const second = makeEntry('https://example.com/a.png', 'second version');
  assert.equal(second.meta.key, first.meta.key);
  await put(storage, first);
  await put(storage, second);
  assertSameEntry(await get(storage, first), second);
  assert.equal((await entryFiles(storage.dir)).length, 1);
  assert.deepEqual(await tempFilesLeft(storage.dir), []);
});

test('concurrent writes of one key leave exactly one whole entry', async () => {
  const storage = await openStorage();
  const versions = Array.from({ length: 20 }, (_, i) => makeEntry('https://example.com/c.png', Buffer.alloc(64 * 1024 + i, i)));
  await Promise.all(versions.map((v) => put(storage, v)));
  const got = await get(storage, versions[0] as StoredEntry);
  assert.ok(got);
  const match = versions.find((v) => v.body.equals(got.body));
  assert.ok(match, 'the stored entry is one of the written versions, whole');
  assert.deepEqual(got.meta, match.meta);
  assert.deepEqual(await tempFilesLeft(storage.dir), []);
});

test('entry files are 0600, fan-out dirs and the cache dir 0700, .secret 0600, even under a narrow umask', async () => {
  const base = await freshDir();
  const previous = process.umask(0o277);
  let storage: FsStorage;
  try {
    storage = await openStorage(path.join(base, 'cache'));
    await put(storage, makeEntry('https://example.com/1.png', 'one'));
    await put(storage, makeEntry('https://example.com/2.png', 'two'));
  } finally {
    process.umask(previous);
  }
  const mode = async (p: string) => (await fs.lstat(p)).mode & 0o777;
  assert.equal(await mode(storage.dir), 0o700);
  assert.equal(await mode(path.join(storage.dir, SECRET_FILE_NAME)), 0o600);
  const files = await entryFiles(storage.dir);
  assert.equal(files.length, 2);
  for (const file of files) {
    assert.equal(await mode(file), 0o600, file);
    assert.equal(await mode(path.dirname(file)), 0o700);
    assert.equal(await mode(path.dirname(path.dirname(file))), 0o700);
  }
});

test('layout is <g0g1>/<group>/<item>: variants share their source\'s group, and no name reveals the key or the URL', async () => {
  const storage = await openStorage();
  const url = 'https://example.com/secret-cat.png';
  const entry = makeEntry(url, 'meow');
  const variant = makeEntry(url, 'small meow', 'w_10');
  await put(storage, entry);
  await put(storage, variant);
  const files = (await entryFiles(storage.dir)).map((f) => path.relative(storage.dir, f).split(path.sep));
  assert.equal(files.length, 2);
  const [[l1, group, item], [l1b, groupB, itemB]] = files as [string[], string[]];
  assert.match(group ?? '', /^[0-9a-f]{16}$/);
  assert.match(item ?? '', /^[0-9a-f]{8}$/);
  assert.equal(l1, group?.slice(0, 2));
  assert.equal(groupB, group, 'a variant lives in its source\'s group directory');
  assert.equal(l1b, l1);
  assert.notEqual(itemB, item);
  assert.deepEqual((await storage.listGroup(storage.groupOf(idOf(storage, entry)))).sort(), [idOf(storage, entry), idOf(storage, variant)].sort());

  const forbidden = [entry.meta.key, variant.meta.key, sha256(entry.meta.key), sha256(url), sha256(Buffer.from(entry.meta.key, 'hex'))];
  for (const p of await walk(storage.dir)) {
    const base = path.basename(p);
    for (const f of forbidden) {
      for (const part of [f.slice(0, 8), f.slice(-8)]) assert.ok(!base.includes(part), `${base} reveals ${f}`);
    }
  }

  assert.deepEqual((await storage.deleteGroup(storage.groupOf(idOf(storage, entry)))).sort(), [idOf(storage, entry), idOf(storage, variant)].sort());
  assert.deepEqual(await entryFiles(storage.dir), []);
  assert.deepEqual(await tempFilesLeft(storage.dir), []);
});

test('malformed ids never become paths', async () => {
  const storage = await openStorage();
  const entry = makeEntry('https://example.com/x.png', 'x');
  for (const id of ['../../etc/passwd', '0123456789abcdef/../../x', '0123456789ABCDEF/01234567', '']) {
    assert.equal(await storage.read(id), undefined);
    await assert.rejects(storage.write(id, storage.prepare(entry)), /malformed/);
    await assert.rejects(storage.delete(id), /malformed/);
  }
});

test('.secret persists: reopening the directory finds the same files; another directory names them differently', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  const entry = makeEntry('https://example.com/p.png', 'persist');
  const first = await openStorage(dir);
  await put(first, entry);
  await first.close();
  const secretBefore = await fs.readFile(path.join(dir, SECRET_FILE_NAME));
  const namesBefore = (await entryFiles(dir)).map((p) => path.relative(dir, p));

  const second = await openStorage(dir);
  assertSameEntry(await get(second, entry), entry);
  assert.ok(secretBefore.equals(await fs.readFile(path.join(dir, SECRET_FILE_NAME))));
  await put(second, entry);
  assert.deepEqual((await entryFiles(dir)).map((p) => path.relative(dir, p)), namesBefore);

  const other = await openStorage(path.join(base, 'other'));
  await put(other, entry);
  const otherNames = (await entryFiles(other.dir)).map((p) => path.basename(p));
  assert.notDeepEqual(otherNames, namesBefore.map((p) => path.basename(p)));
});

test('a .secret readable by group or others is refused', async () => {
  const dir = path.join(await freshDir(), 'cache');
  await (await openStorage(dir)).close();
  const secret = path.join(dir, SECRET_FILE_NAME);
  for (const mode of [0o640, 0o604, 0o660]) {
    await fs.chmod(secret, mode);
    await assert.rejects(openStorage(dir), (err: unknown) => {
      assert.ok(err instanceof CacheDirError);
      assert.match(err.message, /group or others/);
      return true;
    });
  }
  await fs.chmod(secret, 0o600);
  await openStorage(dir); // and accepted again once fixed
});

test('a symlinked or damaged .secret is refused', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  await (await openStorage(dir)).close();
  const secret = path.join(dir, SECRET_FILE_NAME);
  const saved = path.join(base, 'saved-secret');
  await fs.rename(secret, saved);

  await fs.symlink(saved, secret);
  await assert.rejects(openStorage(dir), CacheDirError);
  await fs.unlink(secret);

  await fs.writeFile(secret, Buffer.alloc(5), { mode: 0o600 });
  await assert.rejects(openStorage(dir), CacheDirError);
});

test('write failure: tmp/ replaced by a file → throws ENOTDIR, old entry intact, no temp files', async () => {
  const storage = await openStorage();
  const old = makeEntry('https://example.com/w.png', 'old bytes');
  await put(storage, old);
  const tmp = path.join(storage.dir, TMP_DIR_NAME);
  await fs.rm(tmp, { recursive: true });
  await fs.writeFile(tmp, 'not a directory');

  await assert.rejects(put(storage, makeEntry('https://example.com/w.png', 'new bytes')), { code: 'ENOTDIR' });
  assertSameEntry(await get(storage, old), old);
  assert.deepEqual(await tempFilesLeft(storage.dir), []);
});

test('write failure: fan-out directory replaced by a file → throws ENOTDIR, no temp files', async () => {
  const storage = await openStorage();
  const entry = makeEntry('https://example.com/f.png', 'fan-out');
  await put(storage, entry);
  const [file] = await entryFiles(storage.dir);
  assert.ok(file);
  const fanout = path.dirname(path.dirname(file)); // the first level, <dir>/ab
  await fs.rm(fanout, { recursive: true });
  await fs.writeFile(fanout, 'in the way');

  await assert.rejects(put(storage, entry), { code: 'ENOTDIR' });
  assert.equal(await get(storage, entry), undefined);
  assert.deepEqual(await tempFilesLeft(storage.dir), []);
});

// Entries up to 1 MiB are written from the event loop, larger ones through the thread pool: both must fail cleanly.
for (const [kind, bodyBytes] of [['small entry, written directly', 512 * 1024], ['entry over 1 MiB, written through the pool', 2 * 1024 * 1024]] as const) {
  test(`write failure midway (file size limit hit while writing), ${kind} → throws, old entry intact, no temp files`, async () => {
    // A real mid-write failure that works as root too: RLIMIT_FSIZE makes the
    // second write() of the temp file fail with EFBIG after part was written.
    const storage = await openStorage();
    const old = makeEntry('https://example.com/big.png', 'small old entry');
    await put(storage, old);

    const storageUrl = new URL('../../src/storage/fs-storage.ts', import.meta.url).href;
    const logUrl = new URL('../../src/log.ts', import.meta.url).href;
    const child = `
      import { FsStorage } from ${JSON.stringify(storageUrl)};
      import { silentLogger } from ${JSON.stringify(logUrl)};
      const storage = await FsStorage.open({ dir: ${JSON.stringify(storage.dir)}, logger: silentLogger() });
      const body = Buffer.alloc(${bodyBytes}, 1);
      const meta = { ...${JSON.stringify(old.meta)}, size: body.length, sha256: 'x' };
      try { await storage.write(storage.entryId(meta.sourceKey, meta.key), storage.prepare({ meta, body })); console.log('written'); }
      catch (err) { console.log('failed:' + err.code); }
    `;
    const { stdout } = await promisify(execFile)('bash', [
      '-c',
      'ulimit -f 128 && exec "$0" --input-type=module -e "$1"',
      process.execPath,
      child,
    ]);
    assert.equal(stdout.trim(), 'failed:EFBIG');
    assertSameEntry(await get(storage, old), old);
    assert.deepEqual(await tempFilesLeft(storage.dir), []);
  });
}

test('write failure: read-only fan-out directory → throws EACCES, old entry intact, no temp files', { skip: isRoot && 'root ignores directory permissions; the tests above fail writes for real instead' }, async () => {
  const storage = await openStorage();
  const old = makeEntry('https://example.com/ro.png', 'old');
  await put(storage, old);
  const [file] = await entryFiles(storage.dir);
  assert.ok(file);
  await fs.chmod(path.dirname(file), 0o500);
  try {
    await assert.rejects(put(storage, makeEntry('https://example.com/ro.png', 'new')), { code: 'EACCES' });
  } finally {
    await fs.chmod(path.dirname(file), 0o700);
  }
  assertSameEntry(await get(storage, old), old);
  assert.deepEqual(await tempFilesLeft(storage.dir), []);
});

test('garbage, truncated or symlinked entry files read as undefined', async () => {
  const storage = await openStorage();
  const entry = makeEntry('https://example.com/g.png', Buffer.alloc(1000, 9));
  await put(storage, entry);
  const [file] = await entryFiles(storage.dir);
  assert.ok(file);
  const good = await fs.readFile(file);

  await fs.writeFile(file, good.subarray(0, good.length - 1));
  assert.equal(await get(storage, entry), undefined, 'truncated body');
  await fs.writeFile(file, good.subarray(0, 7));
  assert.equal(await get(storage, entry), undefined, 'truncated header');
  await fs.writeFile(file, 'garbage garbage garbage');
  assert.equal(await get(storage, entry), undefined, 'garbage');
  await fs.writeFile(file, '');
  assert.equal(await get(storage, entry), undefined, 'empty');

  const elsewhere = path.join(path.dirname(storage.dir), 'planted');
  await fs.writeFile(elsewhere, good);
  await fs.unlink(file);
  await fs.symlink(elsewhere, file);
  assert.equal(await get(storage, entry), undefined, 'symlink is not followed');
});

test('delete, stats and clear', async () => {
  const storage = await openStorage();
  assert.deepEqual(await storage.stats(), { entries: 0, bytes: 0 });
  const before = Date.now();
  const entries = ['a', 'b', 'c'].map((n) => makeEntry(`https://example.com/${n}.png`, `body of ${n}`.repeat(10)));
  for (const e of entries) await put(storage, e);

  const expectedBytes = entries.reduce((sum, e) => sum + encodeEntry(e).length, 0);
  const { oldestMs, ...three } = await storage.stats();
  assert.deepEqual(three, { entries: 3, bytes: expectedBytes });
  assert.ok(oldestMs !== undefined && oldestMs >= before - 1000 && oldestMs <= Date.now() + 1000, 'the oldest entry\'s write time');

  const [a, b, c] = entries;
  assert.ok(a && b && c);
  assert.equal(await storage.delete(idOf(storage, a)), true);
  assert.equal(await storage.delete(idOf(storage, a)), false);
  assert.equal(await get(storage, a), undefined);
  assertSameEntry(await get(storage, b), b);
  assert.deepEqual({ ...(await storage.stats()), oldestMs: 0 }, { entries: 2, bytes: expectedBytes - encodeEntry(a).length, oldestMs: 0 });

  await storage.clear();
  assert.deepEqual(await storage.stats(), { entries: 0, bytes: 0 });
  assert.equal(await get(storage, b), undefined);
  assert.equal(await get(storage, c), undefined);
  assert.deepEqual(await entryFiles(storage.dir), []);

  // The directory stays usable, with the same secret.
  await put(storage, b);
  assertSameEntry(await get(storage, b), b);
  assert.equal((await storage.stats()).entries, 1);
});

test('a scan lists every entry with its file size and write time, over many groups, and skips what is not an entry', async () => {
  const storage = await openStorage();
  // More groups than one batch of the scan, and a few sources with a variant (two entries in one group).
  const entries = Array.from({ length: 150 }, (_, i) => makeEntry(`https://example.com/${i}.png`, `body ${i}`.repeat(1 + (i % 7))));
  entries.push(...[0, 1, 2].map((i) => makeEntry(`https://example.com/${i}.png`, `variant ${i}`, 'w:100')));
  for (const e of entries) await put(storage, e);
  const one = idOf(storage, entries[0] as StoredEntry);
  const groupDir = path.join(storage.dir, one.slice(0, 2), one.slice(0, 16));
  // Not entries: a stray file name, a directory named like an item, a file named like a group.
  await fs.writeFile(path.join(groupDir, 'notes.txt'), 'x');
  await fs.mkdir(path.join(groupDir, '0123abcd'));
  await fs.writeFile(path.join(storage.dir, one.slice(0, 2), `${one.slice(0, 2)}${'0'.repeat(14)}`), 'x');

  const scanned = new Map<string, { bytes: number; mtimeMs: number }>();
  for await (const batch of storage.scan()) for (const e of batch) scanned.set(e.id, { bytes: e.bytes, mtimeMs: e.mtimeMs });
  assert.deepEqual([...scanned.keys()].sort(), entries.map((e) => idOf(storage, e)).sort());
  for (const e of entries) {
    const id = idOf(storage, e);
    const st = await fs.lstat(path.join(storage.dir, id.slice(0, 2), id));
    assert.deepEqual(scanned.get(id), { bytes: st.size, mtimeMs: st.mtimeMs }, id);
  }
});

test('entries of the previous layout (ab/cd/<64 hex>) are removed by a scan: they can never be looked up again', async () => {
  const storage = await openStorage();
  const legacy = path.join(storage.dir, 'ab', 'cd');
  await fs.mkdir(legacy, { recursive: true });
  await fs.writeFile(path.join(legacy, 'ab'.repeat(32)), 'old entry');
  await put(storage, makeEntry('https://example.com/new.png', 'new'));
  const { entries } = await storage.stats();
  assert.equal(entries, 1);
  await assert.rejects(fs.access(legacy));
  assert.ok(await get(storage, makeEntry('https://example.com/new.png', 'new')));
});

test('a reader racing a delete or an overwrite of its entry gets a whole version or nothing, never a mix', async () => {
  const storage = await openStorage();
  const versions = [0xaa, 0xbb, 0xcc].map((fill) => makeEntry('https://example.com/race.png', Buffer.alloc(4 * 1024 * 1024, fill)));
  const id = idOf(storage, versions[0] as StoredEntry);
  let whole = 0;
  for (let round = 0; round < 12; round++) {
    await put(storage, versions[round % 3] as StoredEntry);
    const reading = storage.read(id);
    const racing = round % 2 === 0 ? storage.delete(id) : put(storage, versions[(round + 1) % 3] as StoredEntry);
    const [got] = await Promise.all([reading, racing]);
    if (got === undefined) continue;
    const match = versions.find((v) => v.body.equals(got.body));
    assert.ok(match, `round ${round}: the body read is one whole version`);
    assert.deepEqual(got.meta, match.meta);
    whole += 1;
  }
  assert.ok(whole > 0);
});
