import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../src/log.ts';
import { EntryCipher } from '../../src/storage/entry-cipher.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import type { StoredEntry } from '../../src/storage/types.ts';

const scratch: string[] = [];
afterEach(async () => {
  for (const d of scratch.splice(0)) await fs.rm(d, { recursive: true, force: true });
});

async function open(dir: string, keys?: Buffer[]): Promise<FsStorage> {
  return FsStorage.open({ dir, logger: silentLogger(), ...(keys ? { cipher: new EntryCipher(keys) } : {}) });
}
async function freshDir(): Promise<string> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-enc-'));
  scratch.push(base);
  return path.join(base, 'cache');
}

const URL_TEXT = 'https://images.example.com/private/holiday-photo.png?token=abcdef';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
function entry(body: Buffer, variant = '_'): StoredEntry {
  const sourceKey = sha(Buffer.from(URL_TEXT));
  return {
    meta: {
      key: variant === '_' ? sourceKey : sha(Buffer.from(`${URL_TEXT}#${variant}`)),
      sourceKey,
      sourceUrl: URL_TEXT,
      variant,
      contentType: 'image/png',
      size: body.length,
      sha256: sha(body),
      sourceSha256: sha(body),
      storedAt: 1,
      freshness: { freshUntil: 2, staleWhileRevalidateUntil: 3, staleIfErrorUntil: 4, mustRevalidate: false },
      origin: { etag: '"secret-etag"' },
    },
    body,
  };
}
const idOf = (s: FsStorage, e: StoredEntry) => s.entryId(e.meta.sourceKey, e.meta.key);
async function allFiles(dir: string): Promise<string[]> {
  return (await fs.readdir(dir, { recursive: true })).map((p) => path.join(dir, p));
}

test('round trip with AES-256-GCM; the raw files contain neither the image bytes nor the source URL', async () => {
  const dir = await freshDir();
  const key = randomBytes(32);
  const storage = await open(dir, [key]);
  // Distinctive bytes, so any plaintext run of them would be found.
  const body = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n'), randomBytes(4096), Buffer.from('PLAINTEXT-MARKER-0123456789')]);
  const e = entry(body);
  await storage.write(idOf(storage, e), storage.prepare(e));
  const back = await storage.read(idOf(storage, e));
  assert.deepEqual(back?.meta, e.meta);
  assert.ok(back.body.equals(body));
  assert.deepEqual(await storage.readMeta(idOf(storage, e)), e.meta);

  const needles = [body.subarray(8, 40), Buffer.from('PLAINTEXT-MARKER'), Buffer.from('holiday-photo'), Buffer.from('images.example.com'), Buffer.from('secret-etag'), Buffer.from('image/png')];
  let entryFiles = 0;
  for (const file of await allFiles(dir)) {
    const st = await fs.lstat(file);
    if (!st.isFile()) continue;
    entryFiles += 1;
    const raw = await fs.readFile(file);
    for (const needle of needles) assert.equal(raw.indexOf(needle), -1, `${path.relative(dir, file)} reveals ${needle.toString('latin1').slice(0, 20)}`);
  }
  assert.ok(entryFiles >= 2, 'the entry and the directory secret were inspected');

  // Two writes of the same entry never share a nonce: the ciphertexts differ.
  const file = path.join(dir, idOf(storage, e).slice(0, 2), idOf(storage, e));
  const first = await fs.readFile(file);
  await storage.write(idOf(storage, e), storage.prepare(e));
  assert.ok(!first.equals(await fs.readFile(file)));
});

test('a wrong key, a tampered byte anywhere, or a plain entry in an encrypted cache reads as absent', async () => {
  const dir = await freshDir();
  const key = randomBytes(32);
  const storage = await open(dir, [key]);
  const e = entry(randomBytes(2000));
  const id = idOf(storage, e);
  await storage.write(id, storage.prepare(e));
  const file = path.join(dir, id.slice(0, 2), id);
  const good = await fs.readFile(file);

  assert.equal(await (await open(dir, [randomBytes(32)])).read(id), undefined, 'wrong key');
  assert.equal(await (await open(dir)).read(id), undefined, 'no key');

  for (const offset of [8, 20, 40, 60, good.length - 1000, good.length - 1]) {
    const bad = Buffer.from(good);
    bad[offset] = (bad[offset] ?? 0) ^ 0x01;
    await fs.writeFile(file, bad);
    assert.equal(await storage.read(id), undefined, `flipped byte ${offset}`);
  }

  const plain = await open(dir);
  await plain.write(id, plain.prepare(e));
  assert.equal(await storage.read(id), undefined, 'a plain entry is refused by an encrypted cache');
});

test('key rotation: entries written with the old key stay readable when a new key comes first; new ones use the new key', async () => {
  const dir = await freshDir();
  const oldKey = randomBytes(32);
  const newKey = randomBytes(32);
  const before = await open(dir, [oldKey]);
  const a = entry(randomBytes(500), 'a');
  await before.write(idOf(before, a), before.prepare(a));

  const rotated = await open(dir, [newKey, oldKey]);
  assert.ok((await rotated.read(idOf(rotated, a)))?.body.equals(a.body), 'old entry read with the old key');
  const b = entry(randomBytes(500), 'b');
  await rotated.write(idOf(rotated, b), rotated.prepare(b));
  const onlyNew = await open(dir, [newKey]);
  assert.ok((await onlyNew.read(idOf(onlyNew, b)))?.body.equals(b.body));
  assert.equal(await onlyNew.read(idOf(onlyNew, a)), undefined, 'once the old key is dropped, its entries are unreadable (misses)');
});

test('storage keys are secrets: refused in a config file, read from the environment or a 0600 file only', async () => {
  const { loadConfig } = await import('../../src/config/load.ts');
  const { resolveStorageKeys } = await import('../../src/config/storage-keys.ts');
  const { ConfigError } = await import('../../src/errors.ts');
  const dir = path.dirname(await freshDir());
  await fs.mkdir(dir, { recursive: true });
  const hex = randomBytes(32).toString('hex');
  const file = path.join(dir, 'fic.yaml');
  await fs.writeFile(file, `storageKey: ["${hex}"]\n`);
  assert.throws(() => loadConfig({ configFile: file, env: { HOME: dir } }), (err: unknown) => err instanceof ConfigError && /storageKey/.test(err.message));

  const fromEnv = loadConfig({ env: { HOME: dir, FASTIMAGECACHE_STORAGE_KEY: `${hex},${'ab'.repeat(32)}` } }).config;
  assert.deepEqual(resolveStorageKeys(fromEnv).map((k) => k.toString('hex')), [hex, 'ab'.repeat(32)]);

  const keyFile = path.join(dir, 'storage.key');
  await fs.writeFile(keyFile, `# rotation: newest first\n${hex}\n`, { mode: 0o644 });
  const withFile = loadConfig({ env: { HOME: dir, FASTIMAGECACHE_STORAGE_KEY_FILE: keyFile } }).config;
  assert.throws(() => resolveStorageKeys(withFile), /readable by group or others/);
  await fs.chmod(keyFile, 0o600);
  assert.deepEqual(resolveStorageKeys(withFile).map((k) => k.toString('hex')), [hex]);
  assert.throws(() => resolveStorageKeys(loadConfig({ env: { HOME: dir, FASTIMAGECACHE_STORAGE_KEY: 'c2hvcnQ=' } }).config), /at least 32 bytes/);
});
