import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheDirError, TMP_DIR_NAME, prepareCacheDir } from '../../src/storage/cache-dir.ts';

const scratch: string[] = [];
async function freshDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-cachedir-'));
  scratch.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

const modeOf = async (p: string) => (await fs.lstat(p)).mode & 0o777;

test('creates a missing cache directory (and parents) with mode 0700', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'a', 'b', 'cache');
  const result = await prepareCacheDir(dir);
  assert.equal(result.dir, dir);
  assert.ok((await fs.lstat(dir)).isDirectory());
  assert.equal(await modeOf(dir), 0o700);
  assert.equal(await modeOf(path.join(dir, TMP_DIR_NAME)), 0o700);
});

test('mode is 0700 whatever the umask', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  const previous = process.umask(0o277); // would give 0500 without the chmod
  try {
    await prepareCacheDir(dir);
  } finally {
    process.umask(previous);
  }
  assert.equal(await modeOf(dir), 0o700);
  assert.equal(await modeOf(path.join(dir, TMP_DIR_NAME)), 0o700);
});

test('returns an absolute path for a relative one', async () => {
  const base = await freshDir();
  const rel = path.relative(process.cwd(), path.join(base, 'cache'));
  const { dir } = await prepareCacheDir(rel);
  assert.ok(path.isAbsolute(dir));
  assert.equal(dir, path.join(base, 'cache'));
});

test('accepts an existing private directory and leaves its mode alone', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  await fs.mkdir(dir, { mode: 0o750 });
  await fs.chmod(dir, 0o750);
  await prepareCacheDir(dir);
  assert.equal(await modeOf(dir), 0o750);
});

test('refuses a symlink, even to a good directory', async () => {
  const base = await freshDir();
  const real = path.join(base, 'real');
  await fs.mkdir(real, { mode: 0o700 });
  const link = path.join(base, 'link');
  await fs.symlink(real, link);
  await assert.rejects(prepareCacheDir(link), (err: unknown) => {
    assert.ok(err instanceof CacheDirError);
    assert.match(err.message, /symbolic link/);
    return true;
  });
});

test('refuses a path that is a regular file', async () => {
  const base = await freshDir();
  const file = path.join(base, 'file');
  await fs.writeFile(file, 'x');
  await assert.rejects(prepareCacheDir(file), CacheDirError);
});

test('refuses a world-writable directory', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  await fs.mkdir(dir);
  await fs.chmod(dir, 0o777);
  await assert.rejects(prepareCacheDir(dir), (err: unknown) => {
    assert.ok(err instanceof CacheDirError);
    assert.match(err.message, /world-writable/);
    return true;
  });
});

test('refuses a directory inside the public directory, or equal to it', async () => {
  const base = await freshDir();
  const pub = path.join(base, 'public');
  await fs.mkdir(pub);
  await assert.rejects(prepareCacheDir(path.join(pub, 'cache'), { publicDir: pub }), CacheDirError);
  await assert.rejects(prepareCacheDir(pub, { publicDir: pub }), CacheDirError);
  // Refused before creating anything inside the public directory.
  assert.deepEqual(await fs.readdir(pub), []);
});

test('compares real paths: a symlinked parent into the public directory is caught', async () => {
  const base = await freshDir();
  const pub = path.join(base, 'public');
  await fs.mkdir(pub);
  const alias = path.join(base, 'alias');
  await fs.symlink(pub, alias);
  await assert.rejects(prepareCacheDir(path.join(alias, 'cache'), { publicDir: pub }), CacheDirError);
  // And the other way round: public dir given through a symlink.
  await assert.rejects(prepareCacheDir(path.join(pub, 'cache'), { publicDir: alias }), CacheDirError);
});

test('a sibling whose name merely starts with the public directory name is accepted', async () => {
  const base = await freshDir();
  const pub = path.join(base, 'public');
  await fs.mkdir(pub);
  const { dir } = await prepareCacheDir(path.join(base, 'public-cache'), { publicDir: pub });
  assert.ok((await fs.lstat(dir)).isDirectory());
});

test('removes temp files left by an earlier crash, keeps entries', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  await prepareCacheDir(dir);
  const tmp = path.join(dir, TMP_DIR_NAME);
  await fs.writeFile(path.join(tmp, 'deadbeef.tmp'), 'half an entry');
  await fs.writeFile(path.join(tmp, 'other.tmp'), '');
  const entryDir = path.join(dir, 'ab', 'cd');
  await fs.mkdir(entryDir, { recursive: true });
  await fs.writeFile(path.join(entryDir, 'a'.repeat(64)), 'entry');

  await prepareCacheDir(dir);
  assert.deepEqual(await fs.readdir(tmp), []);
  assert.equal(await fs.readFile(path.join(entryDir, 'a'.repeat(64)), 'utf8'), 'entry');
});

test('refuses a tmp/ that is a symlink', async () => {
  const base = await freshDir();
  const dir = path.join(base, 'cache');
  await fs.mkdir(dir, { mode: 0o700 });
  const elsewhere = path.join(base, 'elsewhere');
  await fs.mkdir(elsewhere);
  await fs.writeFile(path.join(elsewhere, 'precious'), 'keep me');
  await fs.symlink(elsewhere, path.join(dir, TMP_DIR_NAME));
  await assert.rejects(prepareCacheDir(dir), CacheDirError);
  // The cleanup did not follow the link.
  assert.equal(await fs.readFile(path.join(elsewhere, 'precious'), 'utf8'), 'keep me');
});
