/**
 * Start-up cleanup of `tmp/` takes only what dead processes left: a worker's
 * replacement (or a reload) must not delete another live process's write in
 * progress, while a crash still leaves nothing behind after a restart.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { TMP_DIR_NAME } from '../../src/storage/cache-dir.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { ABANDONED_TEMP_MS, isLeftover, tempName } from '../../src/storage/temp-files.ts';

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

async function cacheDir(): Promise<string> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-tempfiles-'));
  scratch.push(base);
  const dir = path.join(base, 'cache');
  await (await FsStorage.open({ dir, logger: silentLogger() })).close();
  return dir;
}

const TEMP_FILES = new URL('../../src/storage/temp-files.ts', import.meta.url).href;

/** Another process that starts a write in `tmpDir` (a temp file named by the real code) and stays alive until killed. */
async function otherWriter(tmpDir: string): Promise<{ pid: number; file: string; kill: () => Promise<void> }> {
  const script = `
    import { writeFileSync } from 'node:fs';
    import { join } from 'node:path';
    import { tempName } from ${JSON.stringify(TEMP_FILES)};
    const file = join(${JSON.stringify(tmpDir)}, tempName('tmp'));
    writeFileSync(file, 'half an entry');
    process.stdout.write(file + '\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve(); }));
  const file = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      out += chunk;
      if (out.endsWith('\n')) resolve(out.trim());
    });
    child.once('exit', (code) => { reject(new Error(`writer exited early (${String(code)})`)); });
  });
  return {
    pid: child.pid as number,
    file,
    // Resolves once the process is gone and reaped, as a crashed process is after its parent noticed.
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

test('a temp file of a live process survives an open of the directory; once that process is dead, the next open removes it', async () => {
  const dir = await cacheDir();
  const tmpDir = path.join(dir, TMP_DIR_NAME);
  const writer = await otherWriter(tmpDir);
  try {
    assert.equal(path.dirname(writer.file), tmpDir);
    assert.match(path.basename(writer.file), new RegExp(`-${writer.pid}-`), 'the name carries its writer\'s pid');

    await (await FsStorage.open({ dir, logger: silentLogger() })).close();
    assert.equal(await fs.readFile(writer.file, 'utf8'), 'half an entry', 'a live writer\'s file is left alone');
  } finally {
    await writer.kill();
  }
  await (await FsStorage.open({ dir, logger: silentLogger() })).close();
  assert.deepEqual(await fs.readdir(tmpDir), [], 'a dead writer\'s file is removed');
});

test('this process\'s own temp files survive a second open (a reload), crash leftovers of older versions do not', async () => {
  const dir = await cacheDir();
  const tmpDir = path.join(dir, TMP_DIR_NAME);
  const mine = path.join(tmpDir, tempName('tmp'));
  const purging = path.join(tmpDir, tempName('purge'));
  await fs.writeFile(mine, 'being written');
  await fs.mkdir(purging);
  await fs.writeFile(path.join(tmpDir, 'deadbeef.tmp'), 'left by an older version');

  await (await FsStorage.open({ dir, logger: silentLogger() })).close();
  assert.deepEqual((await fs.readdir(tmpDir)).sort(), [path.basename(mine), path.basename(purging)].sort());
});

test('which names are leftovers', () => {
  const now = Date.now();
  const mine = tempName('tmp');
  const alive = () => true;
  const dead = () => false;
  const [host, pid, token, rest] = mine.split('-') as [string, string, string, string];
  assert.equal(Number(pid), process.pid);
  const otherPid = `${host}-4194303-${token}-${rest}`;
  assert.equal(isLeftover(mine, now, now, dead), false, 'ours, running now');
  assert.equal(isLeftover(`${host}-${pid}-${'0'.repeat(16)}-${rest}`, now, now, alive), true, 'our pid, but an earlier process that had it');
  assert.equal(isLeftover(otherPid, now, now, alive), false, 'another live process');
  assert.equal(isLeftover(otherPid, now, now, dead), true, 'a dead process');
  assert.equal(isLeftover(`00000000-${pid}-${token}-${rest}`, now, now, dead), false, 'another host: its pids mean nothing here');
  assert.equal(isLeftover(`00000000-${pid}-${token}-${rest}`, now - ABANDONED_TEMP_MS - 1, now, dead), true, 'but not forever');
  assert.equal(isLeftover(otherPid, now - ABANDONED_TEMP_MS - 1, now, alive), true, 'no write takes an hour');
  assert.equal(isLeftover('0123abcd.tmp', now, now, alive), true, 'names of older versions');
  assert.equal(isLeftover('../evil', now, now, alive), true);
});
