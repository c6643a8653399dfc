/**
 * The scenarios, run against one system at a time: hot hits, mixed (90 %
 * hits, 10 % new URLs), cold stampede, and resize to a 300-px WebP cold and
 * warm. Every load comes from a separate process and is bounded in time.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Photo } from './corpus.ts';
import { runLoad, type LoadResult, type LoadTool } from './load.ts';
import { HOST, runCommand, sampleRss, type RssPeak } from './processes.ts';
import type { BenchContext, SystemHandle, SystemId } from './systems.ts';

export interface Sizes {
  rounds: number;
  connections: number;
  hotSec: number;
  warmSec: number;
  mixedRequests: number;
  mixedCapSec: number;
  stampedeClients: number;
  /** Clients still waiting after this long are abandoned. */
  stampedeCapSec: number;
  resizeImages: number;
  resizeConcurrency: number;
  resizeCapSec: number;
  hotUrls: number;
  loadTool: LoadTool;
  /** Index-scale scenario: stop populating after this many entries or seconds. */
  indexEntries: number;
  indexPopulateSec: number;
  /** Restarts over each directory (medians are reported). */
  indexRestarts: number;
}

export interface StampedeResult {
  requests: number;
  ok: number;
  /** Clients given up at the deadline (then lastByteMs is the deadline: a lower bound). */
  abandoned: number;
  originGets: number;
  originHeads: number;
  lastByteMs: number;
}

export interface ResizeColdResult {
  images: number;
  perSec: number;
  p50Ms: number;
  failed: number;
}

export interface RoundResult {
  system: SystemId;
  round: number;
  hot?: LoadResult;
  hotRss?: RssPeak;
  mixed?: LoadResult;
  /** Peak RSS while missing: mixed, stampede and cold resize. */
  missRss?: RssPeak;
  stampede?: StampedeResult;
  resizeCold?: ResizeColdResult;
  resizeWarm?: LoadResult;
  errors: string[];
}

/** Origin paths `/img/{tag}/{photo}` of the hot set: every photo under several tags, in a fixed shuffled order. */
export function hotOriginPaths(photos: Photo[], count: number): string[] {
  const paths: string[] = [];
  for (let i = 0; paths.length < count; i++) {
    const photo = photos[i % photos.length] as Photo;
    paths.push(`/img/hot-${Math.floor(i / photos.length)}/${photo.name}`);
  }
  return shuffled(paths);
}

/** Deterministic Fisher–Yates (same order for every system and run). */
function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  let seed = 0x2545f491;
  for (let i = out.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const j = seed % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

export function resizeOriginPaths(photos: Photo[], count: number, round: number, system: SystemId): string[] {
  return Array.from({ length: count }, (_, k) => {
    const photo = photos[k % photos.length] as Photo;
    return `/img/rz-r${round}-${system}-${k}/${photo.name}`;
  });
}

/**
 * Requests every path once (a few at a time) so the hot set is cached.
 * Returns problems found: failures, or a second request that is not a HIT.
 */
export async function prime(handle: SystemHandle, originPaths: string[], concurrency = 8): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  let failed = 0;
  let firstFailure = '';
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < originPaths.length) {
        const p = originPaths[next++] as string;
        try {
          const res = await fetch(handle.baseUrl + handle.hitPath(p), { signal: AbortSignal.timeout(60_000) });
          await res.arrayBuffer();
          if (res.status !== 200) {
            failed += 1;
            firstFailure ||= `HTTP ${res.status}`;
          }
        } catch (err) {
          failed += 1;
          firstFailure ||= (err as Error).message;
        }
      }
    }),
  );
  if (failed > 0) problems.push(`priming: ${failed}/${originPaths.length} requests failed (first: ${firstFailure})`);
  const sample = originPaths[0];
  if (sample && handle.caches && handle.proxies) {
    const res = await fetch(handle.baseUrl + handle.hitPath(sample));
    await res.arrayBuffer();
    const xcache = res.headers.get('x-cache') ?? '';
    if (!/HIT/i.test(xcache)) problems.push(`after priming, a repeat request answered X-Cache: ${xcache || '(none)'}`);
  }
  return problems;
}

export async function runHot(
  ctx: BenchContext,
  handle: SystemHandle,
  hotPaths: string[],
  sizes: Sizes,
): Promise<{ load: LoadResult; rss: RssPeak }> {
  const rss = sampleRss(handle.service.pid);
  let load: LoadResult;
  try {
    load = await runLoad({
      baseUrl: handle.baseUrl,
      paths: hotPaths.map((p) => handle.hitPath(p)),
      connections: sizes.connections,
      durationSec: sizes.hotSec,
      tool: sizes.loadTool,
      workDir: ctx.workDir,
    });
  } catch (err) {
    rss.stop();
    throw err;
  }
  return { load, rss: rss.stop() };
}

/**
 * `mixedRequests` requests in order, across all connections: 90 % hot paths,
 * 10 % paths never asked before, then a few hot paths as padding (see
 * LoadJob.countLimit).
 */
export async function runMixed(
  ctx: BenchContext,
  handle: SystemHandle,
  hotPaths: string[],
  round: number,
  sizes: Sizes,
): Promise<LoadResult> {
  const paths: string[] = [];
  for (let i = 0; i < sizes.mixedRequests; i++) {
    if (i % 10 === 9) {
      const photo = ctx.photos[(i / 10) % ctx.photos.length | 0] as Photo;
      paths.push(handle.hitPath(`/img/mix-r${round}-${handle.id}-${i}/${photo.name}`));
    } else {
      paths.push(handle.hitPath(hotPaths[i % hotPaths.length] as string));
    }
  }
  for (let i = 0; i < sizes.connections; i++) paths.push(handle.hitPath(hotPaths[i % hotPaths.length] as string));
  return runLoad({
    baseUrl: handle.baseUrl,
    paths,
    connections: sizes.connections,
    durationSec: sizes.mixedCapSec,
    countLimit: sizes.mixedRequests,
    tool: sizes.loadTool,
    workDir: ctx.workDir,
  });
}

/** N clients at once for one URL nobody asked before; the origin counts what reached it. */
export async function runStampede(
  ctx: BenchContext,
  handle: SystemHandle,
  photo: Photo,
  round: number,
  sizes: Sizes,
): Promise<StampedeResult> {
  const prefix = `/img/stampede-r${round}-${handle.id}/`;
  const url = handle.baseUrl + handle.hitPath(`${prefix}${photo.name}`);
  const out = await runCommand(
    process.execPath,
    [path.join(import.meta.dirname, 'stampede.ts'), url, String(sizes.stampedeClients), String(sizes.stampedeCapSec * 1000)],
    { timeoutMs: (sizes.stampedeCapSec + 30) * 1000 },
  );
  const line = out.stdout.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`stampede client gave no result: ${out.stderr.slice(0, 300)}`);
  const r = JSON.parse(line.slice('BENCHJSON '.length)) as { requests: number; ok: number; lastByteMs: number; abandoned: number };
  const stats = (await (
    await fetch(`http://${HOST}:${ctx.originPort}/__stats?prefix=${encodeURIComponent(prefix)}`)
  ).json()) as { get: number; head: number };
  return { requests: r.requests, ok: r.ok, abandoned: r.abandoned, lastByteMs: r.lastByteMs, originGets: stats.get, originHeads: stats.head };
}

/** Each path once (distinct, never asked before), `resizeConcurrency` at a time. */
export async function runResizeCold(
  ctx: BenchContext,
  handle: SystemHandle,
  originPaths: string[],
  sizes: Sizes,
): Promise<ResizeColdResult> {
  const resizePath = handle.resizePath;
  if (!resizePath) throw new Error(`${handle.label} cannot resize`);
  const load = await runLoad({
    baseUrl: handle.baseUrl,
    paths: originPaths.map((p) => resizePath(p)),
    connections: sizes.resizeConcurrency,
    durationSec: sizes.resizeCapSec,
    countLimit: originPaths.length,
    exact: true,
    tool: 'autocannon',
    workDir: ctx.workDir,
  });
  return { images: load.requests, perSec: load.rps, p50Ms: load.p50Ms, failed: load.non2xx + load.errors };
}

/** The same resize URLs again (now cached, for a system that caches), time-bound. */
export async function runResizeWarm(
  ctx: BenchContext,
  handle: SystemHandle,
  originPaths: string[],
  sizes: Sizes,
): Promise<LoadResult> {
  const resizePath = handle.resizePath;
  if (!resizePath) throw new Error(`${handle.label} cannot resize`);
  return runLoad({
    baseUrl: handle.baseUrl,
    paths: originPaths.map((p) => resizePath(p)),
    connections: sizes.connections,
    durationSec: sizes.warmSec,
    tool: sizes.loadTool,
    workDir: ctx.workDir,
  });
}

/** Raw sharp in its own process: the same photos, from memory, same concurrency. */
export async function runRawSharp(ctx: BenchContext, photos: Photo[], sizes: Sizes, round: number): Promise<ResizeColdResult & { version: string }> {
  const files = Array.from({ length: sizes.resizeImages }, (_, k) => (photos[k % photos.length] as Photo).file);
  const configFile = path.join(ctx.workDir, `sharp-resize-${round}.json`);
  writeFileSync(configFile, JSON.stringify({ files, concurrency: sizes.resizeConcurrency, width: 300 }));
  const out = await runCommand(process.execPath, [path.join(import.meta.dirname, 'sharp-resize.ts'), configFile], {
    cwd: ctx.repoRoot,
    timeoutMs: (sizes.resizeCapSec + 30) * 1000,
  });
  const line = out.stdout.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`raw sharp gave no result: ${out.stderr.slice(0, 300)}`);
  const r = JSON.parse(line.slice('BENCHJSON '.length)) as { images: number; perSec: number; p50Ms: number; sharp: string; vips: string };
  return { images: r.images, perSec: r.perSec, p50Ms: r.p50Ms, failed: 0, version: `sharp ${r.sharp} (libvips ${r.vips})` };
}

/**
 * Does this build resize? One request for the 300-px WebP of a photo:
 * 200 image/webp = yes; 400 bad_options = "not supported by this build".
 */
export async function probeResize(handle: SystemHandle, originPath: string): Promise<{ ok: boolean; why: string }> {
  if (!handle.resizePath) return { ok: false, why: 'no resize URL for this system' };
  let res: Response;
  try {
    res = await fetch(handle.baseUrl + handle.resizePath(originPath), { signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
  const body = Buffer.from(await res.arrayBuffer());
  const type = res.headers.get('content-type') ?? '';
  if (res.status === 200 && type.startsWith('image/webp')) return { ok: true, why: '' };
  if (res.status === 400 && body.toString('utf8').includes('bad_options')) return { ok: false, why: 'not supported by this build' };
  return { ok: false, why: `HTTP ${res.status} ${type} ${body.subarray(0, 120).toString('utf8')}` };
}
