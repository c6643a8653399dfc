/**
 * The cache index at scale (issue 3's figures): writes N small entries
 * (default 200,000) in the real on-disk layout, then measures
 *   - the index rebuild rate (entries/s) from the directory,
 *   - the index memory per entry (its typed arrays, and the heap growth),
 *   - the time to the first hit of a fresh CacheManager on that directory
 *     (the rebuild runs in the background meanwhile),
 * and extrapolates linearly to 1,000,000 entries.
 *
 *   node --expose-gc bench/lifecycle-index-scale.ts [entries] [dir]
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheIndex } from '../src/cache/cache-index.ts';
import { CacheManager } from '../src/cache/cache-manager.ts';
import { sourceKey } from '../src/cache/cache-key.ts';
import { DEFAULT_FRESHNESS } from '../src/cache/freshness.ts';
import { silentLogger } from '../src/log.ts';
import { FsStorage } from '../src/storage/fs-storage.ts';

const count = Number(process.argv[2] ?? 200_000);
const base = process.argv[3] ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'fic-index-scale-')));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const memory = () => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers + m.external;
};
const logger = silentLogger();
const storage = await FsStorage.open({ dir: path.join(base, 'cache'), logger });
const urlOf = (i: number) => `https://img.example.com/photos/${i}.jpg`;

// Populate: real entries (header, metadata, 200-byte body), written straight into the layout.
const t0 = performance.now();
const made = new Set<string>();
const far = Date.now() + 86_400_000;
for (let i = 0; i < count; i += 256) {
  await Promise.all(
    Array.from({ length: Math.min(256, count - i) }, async (_, j) => {
      const url = urlOf(i + j);
      const key = sourceKey(url);
      const body = Buffer.alloc(200, (i + j) & 0xff);
      const sha = createHash('sha256').update(body).digest('hex');
      const prepared = storage.prepare({
        meta: {
          key, sourceKey: key, sourceUrl: url, variant: '_', contentType: 'image/jpeg', size: body.length, sha256: sha, sourceSha256: sha,
          storedAt: Date.now(), freshness: { freshUntil: far, staleWhileRevalidateUntil: far, staleIfErrorUntil: far, mustRevalidate: false }, origin: {},
        },
        body,
      });
      const id = storage.entryId(key, key);
      const dir = path.join(storage.dir, id.slice(0, 2), id.slice(0, 16));
      if (!made.has(dir)) {
        made.add(dir);
        await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      }
      await fs.writeFile(path.join(dir, id.slice(17)), Buffer.concat(prepared.parts), { mode: 0o600 });
    }),
  );
}
made.clear();
const populateSec = (performance.now() - t0) / 1000;

// Rebuild rate and memory of the index alone.
const before = memory();
const index = new CacheIndex({ storage, maxBytes: Number.MAX_SAFE_INTEGER, logger });
const r0 = performance.now();
await index.rebuild();
const rebuildMs = performance.now() - r0;
const after = memory();
const stats = await index.stats();

// First hit of a fresh manager while its own rebuild runs in the background (the cold-ish case after a restart).
const manager = new CacheManager({
  storage,
  loader: () => Promise.reject(new Error('the bench origin is down: only hits can succeed')),
  logger,
  freshness: DEFAULT_FRESHNESS,
});
const h0 = performance.now();
const hit = await manager.get({ sourceUrl: urlOf(Math.floor(count / 2)), variant: '_' });
const firstHitMs = performance.now() - h0;
const readyDuringHit = (await manager.stats()).indexReady;
await manager.ready();
await manager.close();

const rate = count / (rebuildMs / 1000);
const result = {
  entries: stats.entries,
  populateSec: Number(populateSec.toFixed(1)),
  rebuildMs: Math.round(rebuildMs),
  rebuildEntriesPerSec: Math.round(rate),
  rebuildAt1MEstimateSec: Number((1_000_000 / rate).toFixed(1)),
  indexTableBytesPerEntry: Number((stats.indexMemoryBytes / stats.entries).toFixed(1)),
  heapGrowthBytesPerEntry: Number(((after - before) / stats.entries).toFixed(1)),
  indexAt1MEstimateMiB: Number(((stats.indexMemoryBytes / stats.entries) * 1_000_000 / 1024 / 1024).toFixed(1)),
  firstHitMs: Number(firstHitMs.toFixed(1)),
  firstHitStatus: hit.status,
  indexReadyAtFirstHit: readyDuringHit,
};
console.log(JSON.stringify(result, null, 2));
if (process.argv[3] === undefined) await fs.rm(base, { recursive: true, force: true });
