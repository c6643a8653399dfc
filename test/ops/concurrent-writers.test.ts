import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { silentLogger } from '../../src/log.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import type { StoredEntry } from '../../src/storage/types.ts';
import { makeTempDir } from '../helpers/tmp.ts';

function entry(body: Buffer): StoredEntry {
  const sha256 = createHash('sha256').update(body).digest('hex');
  const key = 'ab'.repeat(32);
  return {
    meta: {
      key,
      sourceKey: key,
      sourceUrl: 'https://images.example/cat.png',
      variant: '_',
      contentType: 'image/png',
      size: body.length,
      sha256,
      sourceSha256: sha256,
      storedAt: Date.now(),
      freshness: { freshUntil: 0, staleWhileRevalidateUntil: 0, staleIfErrorUntil: 0, mustRevalidate: false },
      origin: {},
    },
    body,
  };
}

test('two processes writing one key at once never leave a torn or mixed entry', async () => {
  const tmp = makeTempDir('fic-writers-');
  try {
    const dir = join(tmp.dir, 'cache');
    // Two handles on one directory, as two workers have.
    const first = await FsStorage.open({ dir, logger: silentLogger() });
    const second = await FsStorage.open({ dir, logger: silentLogger() });
    const id = first.entryId('ab'.repeat(32), 'ab'.repeat(32));
    assert.equal(second.entryId('ab'.repeat(32), 'ab'.repeat(32)), id, 'both name the entry alike');
    const bodies = [randomBytes(300_000), randomBytes(500_000), randomBytes(700_000)];
    const expected = new Set(bodies.map((b) => createHash('sha256').update(b).digest('hex')));

    await first.write(id, first.prepare(entry(bodies[0] as Buffer)));
    let reads = 0;
    const progress = { writing: true };
    const reader = (async () => {
      while (progress.writing) {
        const got = await (reads % 2 === 0 ? first : second).read(id);
        reads += 1;
        // A damaged file reads as absent; with atomic replacement there is always an old or a new one.
        assert.ok(got !== undefined, 'the entry is always there, whole');
        const sha = createHash('sha256').update(got.body).digest('hex');
        assert.equal(got.body.length, got.meta.size, 'body and metadata belong together');
        assert.equal(sha, got.meta.sha256, 'the body is the one the metadata describes');
        assert.ok(expected.has(sha), 'one of the written bodies, whole');
      }
    })();
    for (let round = 0; round < 15; round++) {
      await Promise.all(
        bodies.map((body, i) => {
          const storage = i % 2 === 0 ? first : second;
          return storage.write(id, storage.prepare(entry(body)));
        }),
      );
    }
    progress.writing = false;
    await reader;
    assert.ok(reads > 0);
    const last = await first.read(id);
    assert.ok(last && expected.has(createHash('sha256').update(last.body).digest('hex')));
    await first.close();
    await second.close();
  } finally {
    tmp.cleanup();
  }
});
