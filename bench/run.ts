/**
 * `npm run bench`: fastimagecache side by side with nginx proxy_cache,
 * Varnish, ipx and a node:http ceiling, all on loopback in front of one local
 * origin, in interleaved rounds; writes bench/results/latest.md.
 *
 *   npm run bench                    full run (3 rounds, ~10 min)
 *   npm run bench -- --quick         1-round smoke run (< 2 min) → bench/results/quick.md
 *   npm run bench -- --profile       CPU profile of the hit path → bench/results/*.cpuprofile
 *
 * See bench/README.md for every option and how to read the table.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadPhotos, type Photo } from './corpus.ts';
import { runIndexScale, type IndexScaleResult } from './index-scale.ts';
import type { LoadTool } from './load.ts';
import { describeMachine } from './machine.ts';
import { ensurePeers, type PeerStatus } from './peers.ts';
import { freePort, HOST, runCommand, sampleRss, startService, stopAllServices, waitForHttp, waitIdle } from './processes.ts';
import { formatSelfTime, topSelfTime } from './profile.ts';
import { renderReport, type SystemRow } from './report.ts';
import {
  hotOriginPaths,
  prime,
  probeResize,
  resizeOriginPaths,
  runHot,
  runMixed,
  runRawSharp,
  runResizeCold,
  runResizeWarm,
  runStampede,
  type ResizeColdResult,
  type RoundResult,
  type Sizes,
} from './scenarios.ts';
import {
  ficEnv,
  loadSigner,
  originUrl,
  RESIZE_OPTIONS,
  servingProcesses,
  signWithCli,
  startFastImageCache,
  startIpx,
  startNginx,
  startNodeCeiling,
  startVarnish,
  type BenchContext,
  type SystemHandle,
  type SystemId,
} from './systems.ts';

const REPO_ROOT = path.resolve(import.meta.dirname, '..');
const RESULTS_DIR = path.join(import.meta.dirname, 'results');
const ALL_SYSTEMS: SystemId[] = ['fastimagecache', 'nginx', 'varnish', 'ipx', 'node'];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    connections: { type: 'string' },
    duration: { type: 'string' },
    workers: { type: 'string' },
    only: { type: 'string' },
    tool: { type: 'string' },
    out: { type: 'string' },
    'no-install': { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'no-index': { type: 'boolean', default: false },
    'index-entries': { type: 'string' },
    keep: { type: 'boolean', default: false },
    target: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

if (args.help) {
  process.stdout.write(`npm run bench -- [options]
  --quick              1 round, short loads, 10k-entry index scenario (< 2 min)
  --profile            CPU profile of fastimagecache's hit path only (writes bench/results/*.cpuprofile)
  --rounds N           interleaved rounds (default 3; quick 1)
  --connections N      connections for every load (default 50)
  --duration S         seconds of each hot load (default 8; quick 3)
  --workers N          fastimagecache --workers (default: CPUs)
  --only a,b           systems: ${ALL_SYSTEMS.join(',')}
  --tool wrk|autocannon  load tool for time-bound loads (default: wrk if installed)
  --out FILE           report file (default bench/results/latest.md; quick: quick.md)
  --no-install         do not apt-get/npm install missing peers
  --no-build           do not rebuild dist/ even if src/ is newer
  --no-index           skip the large-cache-directory scenario
  --index-entries N    entries of its large cache directory (default 100,000; quick 10,000); the fill is bounded
                       by N / 1,000 s (at least the default's 60 s; quick 6 s), at most 15 min; from 1,000,000 the
                       start-up at 1M is measured, not extrapolated (1M takes ~8 GB of disk and 2M inodes in $TMPDIR)
  --keep               keep the temp dir (configs, logs, caches)
  --target DIR         measure another fastimagecache checkout (built, with node_modules), e.g. to compare commits
`);
  process.exit(0);
}

/** The fastimagecache checkout under test (its bin/ and dist/); the bench itself always runs from this one. */
const TARGET_ROOT = path.resolve(args.target ?? REPO_ROOT);

const started = performance.now();
function log(line: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
}

function positiveInt(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

/**
 * The large-cache-directory fill's time bound: 60 s (quick 6 s) for the default entry count; for `--index-entries N`,
 * room for 1,000 entries/s (direct writes by the storage layer run at a few thousand a second here), at least that and
 * at most 15 minutes. The report says how many entries were written when the bound cut the fill short.
 */
function indexPopulateSec(quick: boolean, entries: number | undefined): number {
  const base = quick ? 6 : 60;
  return entries === undefined ? base : Math.min(15 * 60, Math.max(base, Math.ceil(entries / 1000)));
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(path.join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** `npm run build` when dist/ is missing or older than src/: the bench measures the production build. */
async function ensureBuild(notes: string[]): Promise<void> {
  const distEntry = path.join(TARGET_ROOT, 'dist', 'cli', 'main.js');
  const srcDir = path.join(TARGET_ROOT, 'src');
  const stale = !existsSync(distEntry) || (existsSync(srcDir) && newestMtime(srcDir) > statSync(distEntry).mtimeMs);
  if (stale && args['no-build']) notes.push('dist/ is older than src/ and --no-build was given: the existing build was measured');
  if (stale && !args['no-build']) {
    log('building (npm run build)…');
    const build = await runCommand('npm', ['run', 'build'], { cwd: TARGET_ROOT, timeoutMs: 300_000 });
    if (build.code !== 0) {
      const why = `${build.stdout}${build.stderr}`.trim().split('\n').filter((l) => /error/i.test(l)).slice(0, 3).join(' | ');
      notes.push(`npm run build reported errors (${why.slice(0, 300)}); dist/ as emitted was measured`);
      log(`build reported errors: ${why.slice(0, 300)}`);
    }
  }
  // tsc emits even with type errors: make sure what is there actually loads before measuring it.
  const smoke = await runCommand(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(path.join(TARGET_ROOT, 'dist', 'index.js'))})`], {
    timeoutMs: 30_000,
  });
  if (smoke.code !== 0) {
    throw new Error(`the build in ${TARGET_ROOT}/dist does not load: ${smoke.stderr.trim().split('\n').slice(0, 6).join(' | ')}`);
  }
}

interface BuildSettings {
  /** The memory-tier size setting (issue 3), if this build has one. */
  memoryTier?: { setting: string; env: string; bytes: number };
  /** Settings the bench must change for a loopback load from one client, with why. */
  env: Record<string, string>;
  notes: string[];
}

const envNameOf = (setting: string) => `FASTIMAGECACHE_${setting.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()}`;

/**
 * Reads this build's effective configuration (`config check`) to learn which
 * settings exist, so the bench works with builds before and after a feature:
 * a per-client rate limit is turned off (every request comes from one
 * loopback address), and a memory-tier size setting enables the disk-hit row.
 */
async function benchSettings(ctx: BenchContext): Promise<BuildSettings> {
  const out = await runCommand(process.execPath, [path.join(TARGET_ROOT, 'bin', 'fastimagecache.js'), 'config', 'check'], {
    cwd: TARGET_ROOT,
    env: ficEnv(ctx, {}),
    timeoutMs: 30_000,
  });
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(out.stdout) as Record<string, unknown>;
  } catch {
    return { env: {}, notes: [`\`fastimagecache config check\` gave no JSON (exit ${String(out.code)}): settings not inspected`] };
  }
  const result: BuildSettings = { env: {}, notes: [] };
  const rateLimit = config.rateLimit as Record<string, unknown> | undefined;
  if (typeof rateLimit?.perSecond === 'number' && rateLimit.perSecond > 0) {
    result.env[envNameOf('rateLimit.perSecond')] = '0';
    result.notes.push(`rateLimit.perSecond=0 (was ${rateLimit.perSecond}): all bench load comes from one client address`);
  }
  const found: Array<{ setting: string; bytes: number }> = [];
  const walk = (value: unknown, prefix: string[]) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
    for (const [k, v] of Object.entries(value)) {
      const p = [...prefix, k];
      if (typeof v === 'number' && /memory/i.test(p.join('.')) && /bytes|size|max/i.test(k)) found.push({ setting: p.join('.'), bytes: v });
      else walk(v, p);
    }
  };
  walk(config, []);
  const tier = found[0];
  if (tier) result.memoryTier = { ...tier, env: envNameOf(tier.setting) };
  return result;
}

/**
 * One resize to see that it works (the reason when not: the handle then loses its resizePath), then a few at once, so
 * that every worker has run sharp before the timed cold requests (raw sharp warms up too).
 */
async function warmUpResize(h: SystemHandle, probePath: string, warmPaths: string[]): Promise<string | undefined> {
  const probe = await probeResize(h, probePath);
  if (!probe.ok) {
    delete (h as { resizePath?: unknown }).resizePath;
    return probe.why;
  }
  await Promise.all(warmPaths.map((p) => probeResize(h, p)));
  return undefined;
}

async function startOrigin(workDir: string, logDir: string, photos: Photo[]): Promise<number> {
  const port = await freePort();
  const configFile = path.join(workDir, 'origin.json');
  writeFileSync(configFile, JSON.stringify({ port, stampedeDelayMs: 50, photos }));
  const service = startService('origin', process.execPath, [path.join(import.meta.dirname, 'origin.ts'), configFile], {
    logDir,
    cwd: REPO_ROOT,
  });
  await waitForHttp(`http://${HOST}:${port}/__stats`, { timeoutMs: 30_000, service });
  return port;
}

async function runProfile(ctx: BenchContext, sizes: Sizes, hotPaths: string[]): Promise<void> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const signer = await loadSigner(ctx);
  const cacheDir = path.join(ctx.workDir, 'fic-profile-cache');
  // Fill the cache without the profiler, so the profile holds hits, not the misses that stored them.
  log('filling the cache (not profiled)…');
  const filler = await startFastImageCache(ctx, { cacheDir, workers: 1, signer });
  for (const p of await prime(filler, hotPaths)) log(`  ${p}`);
  await filler.service.stop();

  const before = new Set(readdirSync(RESULTS_DIR));
  log('restarting fastimagecache (1 process) under node --cpu-prof over that cache…');
  const fic = await startFastImageCache(ctx, {
    cacheDir,
    workers: 1,
    signer,
    nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${RESULTS_DIR}`],
  });
  for (const p of await prime(fic, hotPaths)) log(`  ${p}`); // every request a hit now; warms any memory tier
  log(`hot load for ${sizes.hotSec} s (${sizes.connections} connections)…`);
  const { load } = await runHot(ctx, fic, hotPaths, sizes);
  log(`  ${load.rps.toFixed(0)} req/s, p50 ${load.p50Ms.toFixed(2)} ms, p99 ${load.p99Ms.toFixed(2)} ms (${load.tool}; profiling slows it)`);
  await fic.service.stop('SIGTERM', 30_000); // the profile is written when the process exits normally
  const created = readdirSync(RESULTS_DIR).filter((f) => f.endsWith('.cpuprofile') && !before.has(f));
  if (created.length === 0) throw new Error(`no .cpuprofile appeared in ${RESULTS_DIR} (did the server exit cleanly on SIGTERM?)`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(RESULTS_DIR, `hit-path-${stamp}.cpuprofile`);
  renameSync(path.join(RESULTS_DIR, created[0] as string), file);
  const top = topSelfTime(file, TARGET_ROOT, 25);
  const text =
    `CPU profile of fastimagecache's hit path (${TARGET_ROOT}): ${load.rps.toFixed(0)} req/s over ${sizes.hotSec} s, ` +
    `${sizes.connections} connections, ${hotPaths.length} hot URLs, all hits.\n` +
    `Busy ${top.busyMs.toFixed(0)} ms, idle ${top.idleMs.toFixed(0)} ms (start-up and the warm pass are included; percentages are of busy time).\n\n` +
    `Top self time by function:\n${formatSelfTime(top.total)}\n\nBy file:\n${formatSelfTime(top.byFile.slice(0, 15))}\n\n` +
    `Open ${path.relative(process.cwd(), file)} in Chrome DevTools (Performance → Load profile) or speedscope for the call tree.\n`;
  writeFileSync(file.replace(/\.cpuprofile$/, '.txt'), text);
  process.stdout.write(text);
}

async function main(): Promise<void> {
  const quick = args.quick;
  const cpus = os.availableParallelism();
  const notes: string[] = [];
  const only = args.only ? (args.only.split(',').map((s) => s.trim()) as SystemId[]) : ALL_SYSTEMS;
  for (const s of only) if (!ALL_SYSTEMS.includes(s)) throw new Error(`--only: unknown system "${s}" (${ALL_SYSTEMS.join(', ')})`);

  log(`fastimagecache bench${quick ? ' (quick)' : ''}${args.profile ? ' (profile)' : ''}`);
  const machine = await describeMachine(REPO_ROOT, TARGET_ROOT);
  const peers = await ensurePeers({ install: !args['no-install'] && !args.profile, log });
  for (const [name, status] of Object.entries(peers) as Array<[string, PeerStatus]>) {
    log(`  ${name}: ${status.version ?? `MISSING: ${status.missing ?? ''}`}`);
  }
  const isLoadTool = (t: string): t is LoadTool => t === 'wrk' || t === 'autocannon';
  if (args.tool !== undefined && !isLoadTool(args.tool)) throw new Error('--tool must be wrk or autocannon');
  const loadTool: LoadTool = args.tool !== undefined && isLoadTool(args.tool) ? args.tool : peers.wrk.path ? 'wrk' : 'autocannon';
  if (loadTool === 'wrk' && !peers.wrk.path) throw new Error('--tool wrk but wrk is not installed');

  const indexEntries = args['index-entries'] === undefined ? undefined : positiveInt(args['index-entries'], 1, 'index-entries');
  if (indexEntries !== undefined && indexEntries < 1000) throw new Error('--index-entries must be at least 1000 (the small directory has 100)');
  const sizes: Sizes = {
    rounds: positiveInt(args.rounds, quick ? 1 : 3, 'rounds'),
    connections: positiveInt(args.connections, 50, 'connections'),
    hotSec: positiveInt(args.duration, quick ? 3 : args.profile ? 10 : 8, 'duration'),
    warmSec: quick ? 2 : 4,
    mixedRequests: quick ? 1000 : 3000,
    mixedCapSec: quick ? 8 : 15,
    stampedeClients: 200,
    stampedeCapSec: quick ? 15 : 30,
    resizeImages: quick ? 8 : 72, // about 1.5 s of cold resizes per system and round: long enough to average the machine's drift
    resizeConcurrency: cpus,
    resizeCapSec: quick ? 15 : 30,
    hotUrls: quick ? 100 : 200,
    loadTool,
    indexEntries: indexEntries ?? (quick ? 10_000 : 100_000),
    indexPopulateSec: indexPopulateSec(quick, indexEntries),
    indexRestarts: quick ? 2 : 3,
  };
  const workers = positiveInt(args.workers, cpus, 'workers');

  await ensureBuild(notes);

  const workDir = mkdtempSync(path.join(os.tmpdir(), 'fic-bench-'));
  const logDir = path.join(workDir, 'logs');
  mkdirSync(logDir);
  // Also on Ctrl-C (processes.ts exits on SIGINT after killing every service).
  const removeWorkDir = () => {
    if (!args.keep) rmSync(workDir, { recursive: true, force: true });
  };
  process.on('exit', removeWorkDir);
  log(`temp dir ${workDir}`);
  try {
    const photoSet = await loadPhotos(workDir);
    if (photoSet.generated) notes.push(`the corpus was not found: photos were ${photoSet.source}`);
    log(`photos: ${photoSet.source}`);
    const originPort = await startOrigin(workDir, logDir, [...new Map([...photoSet.photos, ...photoSet.resizePhotos].map((p) => [p.name, p])).values()]);
    const ctx: BenchContext = {
      repoRoot: TARGET_ROOT,
      workDir,
      logDir,
      originPort,
      keyHex: randomBytes(32).toString('hex'),
      cpus,
      photos: photoSet.photos,
      peers,
      ficSettings: {},
    };
    const build = await benchSettings(ctx);
    ctx.ficSettings = build.env;
    notes.push(...build.notes.map((n) => `fastimagecache setting: ${n}`));
    const memoryTier = build.memoryTier;
    const hotPaths = hotOriginPaths(photoSet.photos, sizes.hotUrls);

    if (args.profile) {
      await runProfile(ctx, sizes, hotPaths);
      return;
    }

    const signer = await loadSigner(ctx);
    const systems: SystemRow[] = [];
    const handles: SystemHandle[] = [];
    const skip = (id: SystemId, label: string, why: string) => {
      log(`  ${label}: NOT RUN (${why})`);
      systems.push({ id, label, notes: [], skipped: why });
    };

    // fastimagecache: resize URLs are signed by the CLI (the documented contract for option strings).
    let resizeUnavailable: string | undefined;
    let resizePaths: Map<string, string> | undefined;
    const ficResizeOrigin = Array.from({ length: sizes.rounds }, (_, i) =>
      resizeOriginPaths(photoSet.resizePhotos, sizes.resizeImages, i + 1, 'fastimagecache'),
    );
    const probePath = `/img/rz-probe/${(photoSet.resizePhotos[0] as Photo).name}`;
    const warmPaths = Array.from({ length: 2 * workers }, (_, k) => {
      const photo = photoSet.resizePhotos[k % photoSet.resizePhotos.length] as Photo;
      return `/img/rz-warm${k}/${photo.name}`;
    });
    if (only.includes('fastimagecache')) {
      const all = [probePath, ...warmPaths, ...ficResizeOrigin.flat()];
      try {
        const signed = await signWithCli(ctx, all.map((p) => originUrl(ctx, p)), RESIZE_OPTIONS);
        resizePaths = new Map(all.map((p, i) => [p, signed[i] as string]));
      } catch (err) {
        resizeUnavailable = `could not sign "${RESIZE_OPTIONS}": ${(err as Error).message.slice(0, 120)}`;
      }
    }

    let ficWorkers = 1;
    let ficWorkersFlag: number | undefined;
    log('starting the systems…');
    if (only.includes('fastimagecache')) {
      try {
        const fic = await startFastImageCache(ctx, {
          cacheDir: path.join(workDir, 'fic-cache'),
          workers,
          signer,
          ...(resizePaths ? { resizePaths } : {}),
        });
        ficWorkers = servingProcesses(fic);
        ficWorkersFlag = fic.notes.some((n) => n.includes('--workers not supported')) ? undefined : workers;
        if (resizePaths) resizeUnavailable = await warmUpResize(fic, probePath, warmPaths);
        handles.push(fic);
        systems.push({ id: fic.id, label: fic.label, notes: fic.notes });
        log(`  ${fic.label} on ${fic.baseUrl}${resizeUnavailable ? `; resize: n/a (${resizeUnavailable})` : '; resize: supported'}`);
        if (memoryTier) {
          const small = memoryTier.bytes >= 1e6 ? 1024 * 1024 : 1;
          const label = `fastimagecache, disk hits (${memoryTier.setting}=${small})`;
          try {
            const disk = await startFastImageCache(ctx, {
              id: 'fastimagecache-disk',
              label,
              cacheDir: path.join(workDir, 'fic-disk-cache'),
              workers,
              signer,
              env: { [memoryTier.env]: String(small) },
            });
            handles.push(disk);
            systems.push({ id: disk.id, label, notes: [...disk.notes, 'hot scenario only'] });
          } catch (err) {
            skip('fastimagecache-disk', label, (err as Error).message);
          }
        }
        // The rate limit is on by default; the main row turns it off (one client address would be refused). This row
        // keeps it counting every request, at a rate no load here reaches, to show what counting costs a hit.
        const limitedLabel = 'fastimagecache, rate limit counted (rateLimit.perSecond=1000000)';
        try {
          const limited = await startFastImageCache(ctx, {
            id: 'fastimagecache-limited',
            label: limitedLabel,
            cacheDir: path.join(workDir, 'fic-limited-cache'),
            workers,
            signer,
            env: { [envNameOf('rateLimit.perSecond')]: '1000000' },
          });
          handles.push(limited);
          systems.push({ id: limited.id, label: limitedLabel, notes: [...limited.notes, 'hot scenario only'] });
        } catch (err) {
          skip('fastimagecache-limited', limitedLabel, (err as Error).message);
        }
      } catch (err) {
        skip('fastimagecache', 'fastimagecache', (err as Error).message);
      }
    }
    const starters: Array<[SystemId, string, () => Promise<SystemHandle>]> = [
      ['nginx', 'nginx proxy_cache', () => startNginx(ctx)],
      ['varnish', 'Varnish', () => startVarnish(ctx)],
      ['ipx', 'ipx', () => startIpx(ctx)],
      [
        'node',
        'node:http ceiling',
        async () => {
          const node = await startNodeCeiling(ctx, ficWorkers);
          const why = await warmUpResize(node, probePath, warmPaths);
          if (why !== undefined) node.notes.push(`its resize route failed: ${why}`);
          return node;
        },
      ],
    ];
    for (const [id, label, start] of starters) {
      if (!only.includes(id)) continue;
      try {
        const h = await start();
        handles.push(h);
        systems.push({ id, label: h.label, notes: h.notes });
        log(`  ${h.label} on ${h.baseUrl}`);
      } catch (err) {
        skip(id, label, (err as Error).message);
      }
    }
    const runSharp = only.includes('fastimagecache') || only.includes('ipx') || only.includes('node');
    if (runSharp) systems.push({ id: 'sharp', label: 'raw sharp, in-process (resize only)', notes: [] });

    log(`priming the hot set (${hotPaths.length} URLs) on every system that caches…`);
    const primeProblems = new Map<SystemId, string[]>();
    for (const h of handles) {
      if (!h.caches) continue;
      const problems = await prime(h, hotPaths);
      primeProblems.set(h.id, problems);
      for (const p of problems) log(`  ${h.label}: ${p}`);
    }

    const rounds: RoundResult[] = [];
    const rawSharp: ResizeColdResult[] = [];
    let rawSharpVersion: string | undefined;
    // A typical photo (the median-sized JPEG): the stampede is about coalescing, not about one huge decode.
    const jpegs = photoSet.photos.filter((p) => p.contentType === 'image/jpeg').sort((a, b) => a.bytes - b.bytes);
    const stampedePhoto = (jpegs[Math.floor(jpegs.length / 2)] ?? photoSet.photos[0]) as Photo;
    for (let round = 1; round <= sizes.rounds; round++) {
      for (const h of handles) {
        log(`round ${round}/${sizes.rounds}: ${h.label}`);
        const result: RoundResult = { system: h.id, round, errors: round === 1 ? [...(primeProblems.get(h.id) ?? [])] : [] };
        rounds.push(result);
        const attempt = async (what: string, fn: () => Promise<void>) => {
          try {
            await fn();
          } catch (err) {
            result.errors.push(`${what}: ${(err as Error).message.slice(0, 300)}`);
            log(`  ${what} FAILED: ${(err as Error).message.slice(0, 300)}`);
          }
          // Work left over (abandoned requests, background writes) must not run into the next load.
          const waited = await waitIdle(h.service.pid);
          if (waited > 1500) log(`  (waited ${(waited / 1000).toFixed(1)} s for ${h.label} to go idle)`);
        };
        await attempt('hot', async () => {
          const { load, rss } = await runHot(ctx, h, hotPaths, sizes);
          result.hot = load;
          result.hotRss = rss;
          log(`  hot: ${load.rps.toFixed(0)} req/s, p50 ${load.p50Ms.toFixed(2)} ms, p99 ${load.p99Ms.toFixed(2)} ms, ${load.mbPerSec.toFixed(0)} MB/s`);
        });
        if (h.id === 'fastimagecache-disk' || h.id === 'fastimagecache-limited') continue;
        const missRss = sampleRss(h.service.pid);
        // Without a cache every request is a miss already: mixed would only repeat the hot figure, slowly.
        if (h.caches) {
          await attempt('mixed', async () => {
            result.mixed = await runMixed(ctx, h, hotPaths, round, sizes);
            log(`  mixed: ${result.mixed.rps.toFixed(0)} req/s, p99 ${result.mixed.p99Ms.toFixed(1)} ms (${result.mixed.requests} requests)`);
          });
        }
        await attempt('stampede', async () => {
          result.stampede = await runStampede(ctx, h, stampedePhoto, round, sizes);
          const st = result.stampede;
          log(
            `  stampede: ${st.originGets} origin GETs, last byte ${st.abandoned ? `> ${st.lastByteMs.toFixed(0)}` : st.lastByteMs.toFixed(0)} ms, ` +
              `${st.ok} ok${st.abandoned ? `, ${st.abandoned} abandoned at the deadline` : ''}`,
          );
        });
        const resizeOrigin =
          h.id === 'fastimagecache' ? (ficResizeOrigin[round - 1] as string[]) : resizeOriginPaths(photoSet.resizePhotos, sizes.resizeImages, round, h.id);
        if (h.resizePath) {
          await attempt('resize cold', async () => {
            result.resizeCold = await runResizeCold(ctx, h, resizeOrigin, sizes);
            log(`  resize cold: ${result.resizeCold.perSec.toFixed(2)} img/s (${result.resizeCold.images} images)`);
          });
        }
        // The warm resize load that follows is hits: its memory is not a miss storm's.
        result.missRss = missRss.stop();
        if (h.resizePath && h.warmResize !== false) {
          await attempt('resize warm', async () => {
            result.resizeWarm = await runResizeWarm(ctx, h, resizeOrigin, sizes);
            log(`  resize warm: ${result.resizeWarm.rps.toFixed(0)} req/s`);
          });
        }
      }
      if (runSharp) {
        log(`round ${round}/${sizes.rounds}: raw sharp`);
        try {
          const r = await runRawSharp(ctx, photoSet.resizePhotos, sizes, round);
          rawSharp.push(r);
          rawSharpVersion = r.version;
          log(`  resize: ${r.perSec.toFixed(2)} img/s`);
        } catch (err) {
          notes.push(`raw sharp, round ${round}: ${(err as Error).message}`);
        }
      }
    }

    let index: IndexScaleResult | undefined;
    let indexError: string | undefined;
    const ficHandle = handles.find((h) => h.id === 'fastimagecache');
    if (ficHandle && !args['no-index']) {
      log('large cache directory: stopping the other systems first');
      for (const h of handles) await h.service.stop();
      try {
        index = await runIndexScale(ctx, signer, ficWorkersFlag, sizes, log);
        log(
          `  first hit ${index.full.firstHitMs.toFixed(0)} ms over ${index.entries} entries (${index.small.firstHitMs.toFixed(0)} ms over ${index.smallEntries}), ` +
            `${index.bytesPerEntryPerProcess.toFixed(0)} ± ${index.bytesPerEntryNoise.toFixed(0)} B/entry`,
        );
      } catch (err) {
        indexError = (err as Error).message;
        log(`  FAILED: ${indexError}`);
      }
    } else if (!ficHandle) {
      indexError = 'fastimagecache did not run';
    } else {
      indexError = 'skipped (--no-index)';
    }

    notes.push(
      'The origin answers on 127.0.0.1 from memory, Cache-Control: public, max-age=31536000; stampede URLs answer after 50 ms, like an origin across a network.',
      `fastimagecache runs the production build (dist/) with logLevel warn (nginx: access_log off), the loopback origin allowed explicitly (allowHttp, allowedPorts '*', allowedPrivateRanges 127.0.0.1/32), key from the environment.`,
      `Mixed: ${sizes.mixedRequests} requests, every 10th a URL never asked before, each requested once across ${sizes.connections} connections (capped at ${sizes.mixedCapSec} s; with wrk up to ${sizes.connections} of the last requests may be hot padding instead of slow misses still in flight).`,
      `Resize: ${sizes.resizeImages} distinct URLs of photos (JPEG ≥ 100 KB) to 300 px wide WebP, ${sizes.resizeConcurrency} at a time (cold, capped at ${sizes.resizeCapSec} s, after 2 warm-up resizes per worker), then the same URLs for ${sizes.warmSec} s with ${sizes.connections} connections (warm). fastimagecache: \`${RESIZE_OPTIONS}\`; ipx: \`w_300,f_webp\`; the node:http ceiling: \`/rz/\` (cold only); raw sharp: rotate().resize({ width: 300 }).webp() on the bytes in memory.`,
      `Stampede: ${sizes.stampedeClients} clients, one connection each, at once, for one URL never asked before (${stampedePhoto.name}, ${Math.round(stampedePhoto.bytes / 1024)} KB); clients still waiting after ${sizes.stampedeCapSec} s are abandoned (the last-byte figure is then "> cap").`,
      `Peak RSS is sampled from /proc every 100 ms over the whole process tree (nginx master + workers, Varnish manager + child, fastimagecache primary + workers; each system's own tree, while only its own load runs): during the hot load, and during the misses (mixed, stampede and cold resize; the warm resize load, all hits, is no longer in this window).`,
      `This machine is shared: absolute numbers drift with other load (load average at start: ${machine.loadAverageAtStart}; at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}); compare ratios within one run.`,
    );
    const report = renderReport({
      title: `fastimagecache benchmark${quick ? ' (quick smoke run: 1 round, short loads; not for comparison)' : ''}`,
      machine,
      peers,
      sizes,
      photosSource: photoSet.source.replace(REPO_ROOT, '.'),
      loadTool:
        sizes.loadTool === 'wrk'
          ? 'wrk (autocannon where each URL must be asked exactly once: cold resize, filling the cache dir)'
          : 'autocannon (wrk not installed)',
      systems,
      rounds,
      rawSharp,
      ...(rawSharpVersion ? { rawSharpVersion } : {}),
      ...(resizeUnavailable ? { resizeUnavailable } : {}),
      ...(index ? { index } : {}),
      ...(indexError ? { indexError } : {}),
      ...(memoryTier ? { memoryTier: { setting: memoryTier.setting, bytes: memoryTier.bytes } } : {}),
      notes,
      elapsedSec: (performance.now() - started) / 1000,
    });
    mkdirSync(RESULTS_DIR, { recursive: true });
    const outFile = path.resolve(args.out ?? path.join(RESULTS_DIR, quick ? 'quick.md' : 'latest.md'));
    writeFileSync(outFile, `${report}\n`);
    process.stdout.write(`\n${report}\n`);
    log(`written to ${path.relative(process.cwd(), outFile)}`);
  } finally {
    log('stopping the remaining processes…');
    await stopAllServices();
    if (args.keep) log(`kept ${workDir}`);
    else log(`removing ${workDir}…`);
    removeWorkDir();
    log('done');
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  await stopAllServices();
  process.exitCode = 1;
}
