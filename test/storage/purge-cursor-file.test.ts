/**
 * The purge cursor a node keeps in its cache directory, so that a restart
 * applies the purges made while it was down (the Redis side is tested in
 * test/redis/): what it reads back decides which purges are replayed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { TMP_DIR_NAME } from '../../src/storage/cache-dir.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { PURGE_CURSOR_FILE_NAME, PurgeCursorFile } from '../../src/storage/purge-cursor-file.ts';

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function cacheDir(): Promise<string> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-cursor-'));
  scratch.push(base);
  const dir = path.join(base, 'cache');
  await (await FsStorage.open({ dir, logger: silentLogger() })).close();
  return dir;
}

test('a written cursor reads back, in a 0600 file, replaced whole, with no temp file left', async () => {
  const dir = await cacheDir();
  const cursor = new PurgeCursorFile(dir, 'fastimagecache:purge-log');
  assert.equal(await cursor.read(), undefined, 'none yet: the node starts from the end of the log');
  await cursor.write('1764800000000-0');
  await cursor.write('1764800000123-4');
  assert.equal(await new PurgeCursorFile(dir, 'fastimagecache:purge-log').read(), '1764800000123-4', 'another run reads it');
  const stat = await fs.stat(path.join(dir, PURGE_CURSOR_FILE_NAME));
  assert.equal(stat.mode & 0o777, 0o600);
  assert.deepEqual(await fs.readdir(path.join(dir, TMP_DIR_NAME)), []);
});

test("another log's cursor, or a damaged file, reads as none: no id of another stream is trusted", async () => {
  const dir = await cacheDir();
  await new PurgeCursorFile(dir, 'old-prefix:purge-log').write('1764800000000-0');
  assert.equal(await new PurgeCursorFile(dir, 'new-prefix:purge-log').read(), undefined);

  const file = path.join(dir, PURGE_CURSOR_FILE_NAME);
  const cursor = new PurgeCursorFile(dir, 'p:purge-log');
  for (const text of ['', '{', 'null', '[]', '{"log":"p:purge-log"}', '{"log":"p:purge-log","id":"../x"}', '{"log":"p:purge-log","id":7}']) {
    await fs.writeFile(file, text);
    assert.equal(await cursor.read(), undefined, text);
  }
});

test('a cursor that cannot be written throws, and leaves no temp file behind', async () => {
  const dir = await cacheDir();
  const cursor = new PurgeCursorFile(dir, 'p:purge-log');
  await cursor.write('1-0');
  // The file's name taken by a directory: the rename fails, as a full or broken disk would make it.
  const file = path.join(dir, PURGE_CURSOR_FILE_NAME);
  await fs.rm(file);
  await fs.mkdir(path.join(file, 'x'), { recursive: true });
  await assert.rejects(cursor.write('2-0'));
  assert.deepEqual(await fs.readdir(path.join(dir, TMP_DIR_NAME)), [], 'its temp file is removed');
});
