import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { makeTempDir } from '../helpers/tmp.ts';

/**
 * fsyncWrites, seen from the kernel: a process writes entries through
 * FsStorage under strace, which counts its fsync calls. Off (the default),
 * none per entry; on, at least one per entry. The entries read back either way.
 */
const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' });
const skip = strace.status === 0 ? false : 'strace is not installed here (apt-get install strace): fsync calls cannot be counted';

const WRITER = `
import { createHash } from 'node:crypto';
import { FsStorage } from ${JSON.stringify(path.resolve('src/storage/fs-storage.ts'))};
import { createLogger } from ${JSON.stringify(path.resolve('src/log.ts'))};
const [dir, fsync, count] = process.argv.slice(2);
const storage = await FsStorage.open({ dir, logger: createLogger('silent'), fsync: fsync === 'true' });
for (let i = 0; i < Number(count); i++) {
  const body = Buffer.from('entry ' + i);
  const id = storage.entryId('k' + i, 'k' + i);
  const sha = createHash('sha256').update(body).digest('hex');
  const meta = { key: 'k' + i, sourceKey: 'k' + i, sourceUrl: 'https://example.com/' + i, variant: '_', contentType: 'image/png',
    size: body.length, sha256: sha, sourceSha256: sha, storedAt: 0, freshness: { freshUntil: 1, staleWhileRevalidateUntil: 1, staleIfErrorUntil: 1, mustRevalidate: false }, origin: {} };
  await storage.write(id, storage.prepare({ meta, body }));
  const back = await storage.read(id);
  if (!back?.body.equals(body)) throw new Error('entry ' + i + ' did not read back');
}
await storage.close();
`;

function fsyncCalls(fsync: boolean, entries: number): number {
  const tmp = makeTempDir('fic-fsync-');
  try {
    const script = path.join(tmp.dir, 'writer.ts');
    const trace = path.join(tmp.dir, 'trace.txt');
    spawnSync('sh', ['-c', `cat > ${JSON.stringify(script)}`], { input: WRITER });
    const run = spawnSync('strace', ['-f', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, script, path.join(tmp.dir, 'cache'), String(fsync), String(entries)], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    return readFileSync(trace, 'utf8').split('\n').filter((line) => /\bf(data)?sync\(/.test(line)).length;
  } finally {
    tmp.cleanup();
  }
}

// Opening the directory (its secret file) and exiting flush too: what counts is the difference 5 entries make.
test('fsyncWrites off (default): entries are written with no fsync; on: every entry is flushed', { skip }, () => {
  assert.equal(fsyncCalls(false, 5) - fsyncCalls(false, 0), 0, 'no fsync per entry by default');
  assert.ok(fsyncCalls(true, 5) - fsyncCalls(true, 0) >= 5, 'at least one fsync per entry with fsyncWrites');
});
