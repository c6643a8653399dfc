/**
 * fastimagecache over a large cache directory: fill one with as many entries
 * as fit in a bounded time and a small one with 100, then restart over each,
 * alternately, a few times: the time to the first hit, and the settled RSS
 * once the index is loaded. The differences, divided by the entry counts,
 * give the start-up cost and the index memory per entry (the primary's RSS:
 * it holds the index). With fewer than 1,000,000 entries (the default
 * 100,000) the start-up is extrapolated linearly to 1,000,000 and labelled as
 * such; with `--index-entries 1000000` (or more) it is measured.
 *
 * The first 100 entries of each directory are tiny PNGs requested through
 * the server; the rest of the large one is written by the build's own storage
 * layer (dist/storage/fs-storage.js: same entry format, same file names, an
 * entry of the server as the template), since filling through HTTP manages
 * only a few hundred entries a second here. A build without that module is
 * filled through HTTP for the whole time instead.
 *
 * While restarting, the origin refuses /tiny/ (404), so a 200 can only be a
 * real hit from the cache, never a quiet re-fetch.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { runLoad } from './load.ts';
import { HOST, freePort, processTree, rssBytes, startService, waitForHttp, type Service } from './processes.ts';
import type { Sizes } from './scenarios.ts';
import { ficEnv, originUrl, type BenchContext } from './systems.ts';

const SMALL_ENTRIES = 100;

export interface Restart {
  firstHitMs: number;
  /** Settled RSS (once the index is loaded) of the whole tree, of its largest process, and of the primary. */
  totalBytes: number;
  maxProcessBytes: number;
  primaryBytes: number;
}

export interface IndexScaleResult {
  /** Entries written to the large directory; fewer than `requestedEntries` when the fill's time bound cut it short. */
  entries: number;
  requestedEntries: number;
  /** The fill's time bound, seconds. */
  populateBoundSec: number;
  /** True when the large directory holds at least 1,000,000 entries: its first hit is the 1M figure, measured. */
  measuredAt1M: boolean;
  smallEntries: number;
  populateSec: number;
  /** Entries of the large directory written directly by the storage layer (0: all through HTTP). */
  writtenDirectly: number;
  /** Medians over the restarts. */
  small: Restart;
  full: Restart;
  /** Spread (max − min) of first-hit times over all restarts of one directory, the larger of the two. */
  firstHitNoiseMs: number;
  /** False when the full directory's first hit is not slower than the small one's by more than the noise. */
  growthMeasurable: boolean;
  /** Linear extrapolation to 1M entries from the two medians (the report shows `full` instead when measuredAt1M). */
  firstHitAt1MEstimateMs: number;
  /** (the primary's RSS over `entries` − over `smallEntries`) / their difference: the primary holds the index. */
  bytesPerEntryPerProcess: number;
  /** RSS spread between restarts of one directory, per entry: the resolution of the figure above. */
  bytesPerEntryNoise: number;
  notes: string[];
}

/** The last lines of a service's log, for an error message. */
function logTail(ctx: BenchContext, name: string): string {
  try {
    return readFileSync(path.join(ctx.logDir, `${name}.log`), 'utf8').trim().split('\n').slice(-3).join(' | ').slice(0, 400);
  } catch {
    return '(no log)';
  }
}

/**
 * Starts fastimagecache over `dir` and waits for /healthz; one retry, because
 * a start can fail for a reason that passes (a port taken meanwhile, dist/
 * being rebuilt by someone's `npm test`).
 */
async function startReady(ctx: BenchContext, dir: string, workers: number | undefined, name: string): Promise<{ service: Service; port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const service = spawnFic(ctx, dir, port, workers, name);
    try {
      await waitForHttp(`http://${HOST}:${port}/healthz`, { timeoutMs: 60_000, service });
      return { service, port };
    } catch (err) {
      await service.stop();
      if (attempt >= 2) throw new Error(`${(err as Error).message}; log: ${logTail(ctx, name)}`);
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

function spawnFic(ctx: BenchContext, cacheDir: string, port: number, workers: number | undefined, name: string): Service {
  return startService(
    name,
    process.execPath,
    [
      path.join(ctx.repoRoot, 'bin', 'fastimagecache.js'),
      'serve',
      '--host', HOST,
      '--port', String(port),
      '--cache-dir', cacheDir,
      ...(workers ? ['--workers', String(workers)] : []),
    ],
    { logDir: ctx.logDir, cwd: ctx.repoRoot, env: ficEnv(ctx, {}) },
  );
}

/** RSS of a process tree once it has stopped moving (or after `maxMs`). */
async function settledRss(pid: number, maxMs = 15_000): Promise<{ totalBytes: number; maxProcessBytes: number; primaryBytes: number }> {
  const measure = () => {
    const each = processTree(pid).map(rssBytes);
    return { totalBytes: each.reduce((a, b) => a + b, 0), maxProcessBytes: Math.max(0, ...each), primaryBytes: rssBytes(pid) };
  };
  const still = (a: number, b: number) => Math.abs(a - b) < b * 0.01;
  const start = performance.now();
  let last = measure();
  while (performance.now() - start < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = measure();
    if (still(now.totalBytes, last.totalBytes) && still(now.primaryBytes, last.primaryBytes)) return now;
    last = now;
  }
  return last;
}

/**
 * Waits until /readyz says the index is loaded (the primary has read the
 * whole directory); false when this build's /readyz does not tell.
 */
async function untilIndexLoaded(port: number, service: Service, timeoutMs = 300_000): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if (service.hasExited()) throw new Error(`${service.name} exited while loading its index`);
    try {
      const res = await fetch(`http://${HOST}:${port}/readyz`, { signal: AbortSignal.timeout(5000) });
      const body = (await res.json()) as { checks?: { index?: unknown } };
      const state = body.checks?.index;
      if (state === 'loaded') return true;
      if (state !== 'loading') return false;
    } catch {
      // not answering yet, or not JSON: try again
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${service.name}: index not loaded after ${timeoutMs / 1000} s`);
}

/** What the bench uses of the build's storage layer (dist/storage/fs-storage.js). */
interface BuildStorage {
  entryId(sourceKey: string, entryKey: string): string;
  read(id: string): Promise<{ meta: Record<string, unknown>; body: Buffer } | undefined>;
  prepare(entry: { meta: Record<string, unknown>; body: Buffer }): unknown;
  write(id: string, prepared: unknown): Promise<void>;
  scan(): AsyncIterable<Array<{ id: string }>>;
  close(): Promise<void>;
}

interface BuildModules {
  open: (dir: string) => Promise<BuildStorage>;
  sourceKey: (url: string) => string;
}

/** The build's storage layer, or undefined (with the reason) when this build does not have what the fill needs. */
async function loadBuildStorage(ctx: BenchContext): Promise<BuildModules | string> {
  const load = async (file: string) => (await import(pathToFileURL(path.join(ctx.repoRoot, 'dist', ...file.split('/'))).href)) as Record<string, unknown>;
  try {
    const storage = await load('storage/fs-storage.js');
    const log = await load('log.js');
    const keys = await load('cache/cache-key.js');
    const FsStorage = storage.FsStorage as { open?: (opts: { dir: string; logger: unknown }) => Promise<BuildStorage> } | undefined;
    const silentLogger = log.silentLogger as (() => unknown) | undefined;
    const sourceKey = keys.sourceKey as ((url: string) => string) | undefined;
    if (typeof FsStorage?.open !== 'function' || typeof silentLogger !== 'function' || typeof sourceKey !== 'function') {
      return 'dist/ lacks FsStorage.open, silentLogger or sourceKey';
    }
    const open = FsStorage.open.bind(FsStorage);
    return { open: (dir) => open({ dir, logger: silentLogger() }), sourceKey };
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Adds entries `from`..`to − 1` (tiny URLs) to `dir` through the build's
 * storage layer, copying an entry the server wrote there (its metadata gets
 * each URL and key), until `deadline` (performance.now()). Returns how many.
 */
async function writeDirectly(ctx: BenchContext, build: BuildModules, dir: string, from: number, to: number, deadline: number): Promise<number> {
  const storage = await build.open(dir);
  try {
    let templateId: string | undefined;
    for await (const batch of storage.scan()) {
      templateId = batch[0]?.id;
      if (templateId !== undefined) break;
    }
    const template = templateId === undefined ? undefined : await storage.read(templateId);
    if (template === undefined) throw new Error('no entry written by the server to copy');
    let next = from;
    let written = 0;
    const writer = async () => {
      while (next < to && performance.now() < deadline) {
        const url = originUrl(ctx, `/tiny/${next++}.png`);
        const key = build.sourceKey(url);
        const meta = { ...template.meta, key, sourceKey: key, sourceUrl: url, storedAt: Date.now() };
        await storage.write(storage.entryId(key, key), storage.prepare({ meta, body: template.body }));
        written += 1;
      }
    };
    // Enough writes in flight to keep the thread pool busy.
    await Promise.all(Array.from({ length: 32 }, writer));
    return written;
  } finally {
    await storage.close();
  }
}

async function fill(ctx: BenchContext, dir: string, paths: string[], workers: number | undefined, sizes: Sizes, name: string) {
  const { service, port } = await startReady(ctx, dir, workers, name);
  try {
    const load = await runLoad({
      baseUrl: `http://${HOST}:${port}`,
      paths,
      connections: 32,
      durationSec: sizes.indexPopulateSec,
      countLimit: paths.length,
      exact: true,
      tool: 'autocannon',
      workDir: ctx.workDir,
    });
    return { stored: Math.max(0, load.requests - load.non2xx - load.errors), failed: load.non2xx + load.errors, seconds: load.seconds };
  } finally {
    await service.stop();
  }
}

async function restart(ctx: BenchContext, dir: string, hitPath: string, workers: number | undefined, name: string, notes: Set<string>): Promise<Restart> {
  const port = await freePort();
  const t0 = performance.now();
  const service = spawnFic(ctx, dir, port, workers, name);
  try {
    await waitForHttp(`http://${HOST}:${port}${hitPath}`, {
      timeoutMs: 120_000,
      intervalMs: 5,
      service,
      ok: (status, headers) => status === 200 && /HIT/i.test(headers.get('x-cache') ?? 'HIT'),
    });
    const firstHitMs = performance.now() - t0;
    // The index is read in the background after start: measure its memory only once it is all there.
    if (!(await untilIndexLoaded(port, service))) notes.add('this build does not report its index state on /readyz: RSS read once it stopped moving');
    return { firstHitMs, ...(await settledRss(service.pid)) };
  } catch (err) {
    throw new Error(`${(err as Error).message}; log: ${logTail(ctx, name)}`);
  } finally {
    await service.stop();
  }
}

function medianOf(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

const spread = (values: number[]) => Math.max(...values) - Math.min(...values);

export async function runIndexScale(
  ctx: BenchContext,
  signer: (sourceUrl: string, options?: string) => string,
  workers: number | undefined,
  sizes: Sizes,
  log: (line: string) => void,
): Promise<IndexScaleResult> {
  const notes: string[] = [];
  const restartNotes = new Set<string>();
  const fullDir = path.join(ctx.workDir, 'index-full');
  const smallDir = path.join(ctx.workDir, 'index-small');
  const tinyPath = (i: number) => signer(originUrl(ctx, `/tiny/${i}.png`));
  const smallPaths = Array.from({ length: SMALL_ENTRIES }, (_, i) => tinyPath(i));
  const origin = `http://${HOST}:${ctx.originPort}`;

  log(`  filling a cache dir: up to ${sizes.indexEntries.toLocaleString('en-US')} entries or ${sizes.indexPopulateSec} s…`);
  const fillStart = performance.now();
  const build = await loadBuildStorage(ctx);
  let big: { stored: number; failed: number; seconds: number };
  let writtenDirectly = 0;
  if (typeof build === 'string') {
    notes.push(`the large directory was filled through HTTP only (${build})`);
    const tinyPaths = Array.from({ length: sizes.indexEntries }, (_, i) => tinyPath(i));
    big = await fill(ctx, fullDir, tinyPaths, workers, sizes, 'fic-index-fill');
  } else {
    const viaHttp = await fill(ctx, fullDir, smallPaths, workers, sizes, 'fic-index-fill');
    const deadline = fillStart + sizes.indexPopulateSec * 1000;
    writtenDirectly = await writeDirectly(ctx, build, fullDir, viaHttp.stored, sizes.indexEntries, deadline);
    big = { stored: viaHttp.stored + writtenDirectly, failed: viaHttp.failed, seconds: (performance.now() - fillStart) / 1000 };
  }
  if (big.failed > 0) notes.push(`${big.failed} fill requests failed`);
  if (big.stored <= SMALL_ENTRIES) throw new Error(`only ${big.stored} entries could be stored in ${sizes.indexPopulateSec} s`);
  if (big.stored < sizes.indexEntries) {
    const n = (x: number) => x.toLocaleString('en-US');
    log(`  the fill stopped at its time bound: ${n(big.stored)} of ${n(sizes.indexEntries)} entries`);
  }
  const small = await fill(ctx, smallDir, smallPaths, workers, sizes, 'fic-index-fill-small');
  if (small.stored !== SMALL_ENTRIES) notes.push(`the small directory got ${small.stored} entries, not ${SMALL_ENTRIES}`);

  const hitPath = smallPaths[0] as string;
  const smallRuns: Restart[] = [];
  const fullRuns: Restart[] = [];
  await fetch(`${origin}/__tiny?serve=0`);
  try {
    for (let i = 0; i < sizes.indexRestarts; i++) {
      smallRuns.push(await restart(ctx, smallDir, hitPath, workers, 'fic-index-small', restartNotes));
      fullRuns.push(await restart(ctx, fullDir, hitPath, workers, 'fic-index-full', restartNotes));
      log(
        `  restart ${i + 1}/${sizes.indexRestarts}: first hit ${smallRuns[i]?.firstHitMs.toFixed(0)} ms over ${small.stored} entries, ` +
          `${fullRuns[i]?.firstHitMs.toFixed(0)} ms over ${big.stored}`,
      );
    }
  } finally {
    await fetch(`${origin}/__tiny?serve=1`);
  }

  notes.push(...restartNotes);
  const med = (runs: Restart[]): Restart => ({
    firstHitMs: medianOf(runs.map((r) => r.firstHitMs)),
    totalBytes: medianOf(runs.map((r) => r.totalBytes)),
    maxProcessBytes: medianOf(runs.map((r) => r.maxProcessBytes)),
    primaryBytes: medianOf(runs.map((r) => r.primaryBytes)),
  });
  const s = med(smallRuns);
  const f = med(fullRuns);
  const extra = big.stored - small.stored;
  const noise = Math.max(spread(smallRuns.map((r) => r.firstHitMs)), spread(fullRuns.map((r) => r.firstHitMs)));
  const growth = f.firstHitMs - s.firstHitMs;
  const perEntryMs = Math.max(0, growth) / extra;
  const rssNoise = Math.max(spread(smallRuns.map((r) => r.primaryBytes)), spread(fullRuns.map((r) => r.primaryBytes)));
  return {
    entries: big.stored,
    requestedEntries: sizes.indexEntries,
    populateBoundSec: sizes.indexPopulateSec,
    measuredAt1M: big.stored >= 1_000_000,
    smallEntries: small.stored,
    populateSec: big.seconds,
    writtenDirectly,
    small: s,
    full: f,
    firstHitNoiseMs: noise,
    growthMeasurable: growth > Math.max(noise, 10),
    firstHitAt1MEstimateMs: s.firstHitMs + perEntryMs * (1_000_000 - small.stored),
    bytesPerEntryPerProcess: (f.primaryBytes - s.primaryBytes) / extra,
    bytesPerEntryNoise: rssNoise / extra,
    notes,
  };
}
