import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeTempDir } from '../helpers/tmp.ts';

/*
 * The CLI turns on Node's compile cache (start-up is mostly compiling
 * modules) in a directory of its own under the temporary directory. What is
 * cached there is run as code, so it must be this user's alone; and a cache
 * that cannot be had must never stop the CLI.
 */

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const uid = process.getuid?.();
const skip = uid === undefined ? 'no user ids on this platform' : false;
const tmp = makeTempDir('fic-compile-cache-');
after(tmp.cleanup);

function runIn(tmpDir: string, extra: Record<string, string> = {}) {
  // `config check` loads the configuration modules after the cache is turned on.
  const r = spawnSync(process.execPath, [CLI, 'config', 'check'], {
    env: { PATH: process.env.PATH ?? '', HOME: join(tmp.dir, 'home'), TMPDIR: tmpDir, FASTIMAGECACHE_KEY: '11'.repeat(32), ...extra },
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { port: number }).port, 8080);
}

const cacheDirIn = (tmpDir: string) => join(tmpDir, `fastimagecache-compile-cache-${String(uid)}`);
const filesUnder = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [e.name]));

test('the compile cache goes to a private directory of this user under TMPDIR', { skip }, () => {
  const t = join(tmp.dir, 'fresh');
  mkdirSync(t);
  runIn(t);
  const dir = cacheDirIn(t);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(dir).uid, uid);
  assert.ok(filesUnder(dir).length > 0, 'compiled modules are cached');
  runIn(t); // and read back
});

test('a cache directory others may write to is not used', { skip }, () => {
  const t = join(tmp.dir, 'shared');
  mkdirSync(t);
  const dir = cacheDirIn(t);
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  runIn(t);
  assert.deepEqual(filesUnder(dir), []);
});

test('a cache path that is not a directory, or no usable TMPDIR, does not stop the CLI', { skip }, () => {
  const t = join(tmp.dir, 'file');
  mkdirSync(t);
  writeFileSync(cacheDirIn(t), 'not a directory');
  runIn(t);
  const missing = join(tmp.dir, 'missing', 'tmp');
  runIn(missing);
  assert.equal(existsSync(missing), false);
});

test('NODE_DISABLE_COMPILE_CACHE turns it off', { skip }, () => {
  const t = join(tmp.dir, 'disabled');
  mkdirSync(t);
  runIn(t, { NODE_DISABLE_COMPILE_CACHE: '1' });
  assert.equal(existsSync(cacheDirIn(t)), false);
});
