/**
 * fastimagecache over a large cache directory: fill one with as many entries
 * as fit in a bounded time (tiny PNGs requested through the server, so the
 * entries are exactly what this build writes) and a small one with 100, then
 * restart over each, alternately, a few times: the time to the first hit and
 * the settled RSS. The differences, divided by the entry counts, give the
 * start-up cost and the index memory per entry; the start-up is then
 * extrapolated linearly to 1,000,000 entries and labelled as such.
 *
 * While restarting, the origin refuses /tiny/ (404), so a 200 can only be a
 * real hit from the cache, never a quiet re-fetch.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { runLoad } from './load.ts';
import { HOST, freePort, processTree, rssBytes, startService, waitForHttp, type Service } from './processes.ts';
import type { Sizes } from './scenarios.ts';
import { ficEnv, originUrl, type BenchContext } from './systems.ts';

const SMALL_ENTRIES = 100;

export interface Restart {
  firstHitMs: number;
  /** Settled RSS of the whole tree and of its largest process. */
  totalBytes: number;
  maxProcessBytes: number;
}

export interface IndexScaleResult {
  entries: number;
  smallEntries: number;
  populateSec: number;
  /** Medians over the restarts. */
  small: Restart;
  full: Restart;
  /** Spread (max − min) of first-hit times over all restarts of one directory, the larger of the two. */
  firstHitNoiseMs: number;
  /** False when the full directory's first hit is not slower than the small one's by more than the noise. */
  growthMeasurable: boolean;
  /** Linear extrapolation to 1M entries from the two medians. */
  firstHitAt1MEstimateMs: number;
  /** (largest-process RSS over `entries` − over `smallEntries`) / their difference. */
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
async function settledRss(pid: number, maxMs = 15_000): Promise<{ totalBytes: number; maxProcessBytes: number }> {
  const measure = () => {
    const each = processTree(pid).map(rssBytes);
    return { totalBytes: each.reduce((a, b) => a + b, 0), maxProcessBytes: Math.max(0, ...each) };
  };
  const start = performance.now();
  let last = measure();
  while (performance.now() - start < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const now = measure();
    if (Math.abs(now.totalBytes - last.totalBytes) < last.totalBytes * 0.01) return now;
    last = now;
  }
  return last;
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

async function restart(ctx: BenchContext, dir: string, hitPath: string, workers: number | undefined, name: string): Promise<Restart> {
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
  const fullDir = path.join(ctx.workDir, 'index-full');
  const smallDir = path.join(ctx.workDir, 'index-small');
  const tinyPaths = Array.from({ length: sizes.indexEntries }, (_, i) => signer(originUrl(ctx, `/tiny/${i}.png`)));
  const origin = `http://${HOST}:${ctx.originPort}`;

  log(`  filling a cache dir: up to ${sizes.indexEntries.toLocaleString('en-US')} entries or ${sizes.indexPopulateSec} s…`);
  const big = await fill(ctx, fullDir, tinyPaths, workers, sizes, 'fic-index-fill');
  if (big.failed > 0) notes.push(`${big.failed} fill requests failed`);
  if (big.stored <= SMALL_ENTRIES) throw new Error(`only ${big.stored} entries could be stored in ${sizes.indexPopulateSec} s`);
  const small = await fill(ctx, smallDir, tinyPaths.slice(0, SMALL_ENTRIES), workers, sizes, 'fic-index-fill-small');
  if (small.stored !== SMALL_ENTRIES) notes.push(`the small directory got ${small.stored} entries, not ${SMALL_ENTRIES}`);

  const hitPath = tinyPaths[0] as string;
  const smallRuns: Restart[] = [];
  const fullRuns: Restart[] = [];
  await fetch(`${origin}/__tiny?serve=0`);
  try {
    for (let i = 0; i < sizes.indexRestarts; i++) {
      smallRuns.push(await restart(ctx, smallDir, hitPath, workers, 'fic-index-small'));
      fullRuns.push(await restart(ctx, fullDir, hitPath, workers, 'fic-index-full'));
      log(
        `  restart ${i + 1}/${sizes.indexRestarts}: first hit ${smallRuns[i]?.firstHitMs.toFixed(0)} ms over ${small.stored} entries, ` +
          `${fullRuns[i]?.firstHitMs.toFixed(0)} ms over ${big.stored}`,
      );
    }
  } finally {
    await fetch(`${origin}/__tiny?serve=1`);
  }

  const med = (runs: Restart[]): Restart => ({
    firstHitMs: medianOf(runs.map((r) => r.firstHitMs)),
    totalBytes: medianOf(runs.map((r) => r.totalBytes)),
    maxProcessBytes: medianOf(runs.map((r) => r.maxProcessBytes)),
  });
  const s = med(smallRuns);
  const f = med(fullRuns);
  const extra = big.stored - small.stored;
  const noise = Math.max(spread(smallRuns.map((r) => r.firstHitMs)), spread(fullRuns.map((r) => r.firstHitMs)));
  const growth = f.firstHitMs - s.firstHitMs;
  const perEntryMs = Math.max(0, growth) / extra;
  const rssNoise = Math.max(spread(smallRuns.map((r) => r.maxProcessBytes)), spread(fullRuns.map((r) => r.maxProcessBytes)));
  return {
    entries: big.stored,
    smallEntries: small.stored,
    populateSec: big.seconds,
    small: s,
    full: f,
    firstHitNoiseMs: noise,
    growthMeasurable: growth > Math.max(noise, 10),
    firstHitAt1MEstimateMs: s.firstHitMs + perEntryMs * (1_000_000 - small.stored),
    bytesPerEntryPerProcess: (f.maxProcessBytes - s.maxProcessBytes) / extra,
    bytesPerEntryNoise: rssNoise / extra,
    notes,
  };
}
