/**
 * Issue 7's scenario: three fastimagecache nodes on this machine sharing one
 * Redis, 1000 distinct cold URLs requested in random order through all
 * nodes. Reports the total origin requests (target: exactly 1000) and the
 * hit throughput of the three nodes together compared with a single node on
 * the same URLs, in the same run.
 *
 *   npm run bench:cluster [-- --urls 1000 --seconds 10]
 *
 * Writes bench/results/redis-cluster.md. Needs redis-server (Debian package
 * redis-server) and a build (`npm run build`); loopback only, bounded in time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { buildImagePath } from '../src/server/signature.ts';
import { startRedis } from '../test/helpers/redis.ts';
import { runLoad } from './load.ts';
import { freePort, hasCommand, HOST, startService, stopAllServices, waitForHttp, type Service } from './processes.ts';

const ROOT = path.join(import.meta.dirname, '..');
const { values } = parseArgs({
  options: { urls: { type: 'string', default: '1000' }, seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '32' } },
});
const URLS = Number(values.urls);
const SECONDS = Number(values.seconds);
const CONCURRENCY = Number(values.concurrency);
const KEY_HEX = '7e'.repeat(32);

const work = mkdtempSync(path.join(os.tmpdir(), 'fic-bench-cluster-'));
const logDir = path.join(work, 'logs');
mkdirSync(logDir);

/** A counting origin: every path answers a small distinct JPEG. */
async function startCountingOrigin(): Promise<{ url: string; count: () => number; close: () => Promise<void> }> {
  const jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: '#4a7' } }).jpeg().toBuffer();
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests += 1;
    res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': jpeg.length, 'Cache-Control': 'max-age=3600' });
    res.end(req.method === 'HEAD' ? undefined : jpeg);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://${HOST}:${port}`, count: () => requests, close: () => new Promise((r) => server.close(() => { r(); })) };
}

async function startNode(name: string, redisUrl: string | undefined): Promise<{ url: string; service: Service }> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: work,
    FASTIMAGECACHE_KEY: KEY_HEX,
    FASTIMAGECACHE_ALLOW_HTTP: 'true',
    FASTIMAGECACHE_ALLOWED_PORTS: '*',
    FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '127.0.0.1/32',
    FASTIMAGECACHE_CACHE_DIR: path.join(work, `${name}-cache`),
    FASTIMAGECACHE_STATE_DIR: path.join(work, `${name}-state`),
    FASTIMAGECACHE_LOG_LEVEL: 'warn',
    FASTIMAGECACHE_RATE_LIMIT_PER_SECOND: '0',
    ...(redisUrl ? { FASTIMAGECACHE_REDIS_URL: redisUrl } : {}),
  };
  const service = startService(name, process.execPath, [path.join(ROOT, 'bin', 'fastimagecache.js'), 'serve', '--port', String(port), '--workers', '1'], {
    logDir,
    env,
    cwd: ROOT,
  });
  const url = `http://${HOST}:${port}`;
  await waitForHttp(`${url}/healthz`, { timeoutMs: 30_000, service });
  return { url, service };
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** Requests every path through every base (node), all shuffled together, `CONCURRENCY` at a time. */
async function coldRound(bases: string[], paths: string[]): Promise<{ ok: number; failed: number; seconds: number }> {
  const jobs = shuffle(bases.flatMap((base) => paths.map((p) => `${base}${p}`)));
  let next = 0;
  let ok = 0;
  let failed = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < jobs.length) {
        const url = jobs[next++] ?? '';
        const res = await fetch(url);
        await res.arrayBuffer();
        if (res.status === 200) ok += 1;
        else failed += 1;
      }
    }),
  );
  return { ok, failed, seconds: (performance.now() - started) / 1000 };
}

async function main(): Promise<void> {
  if (!(await hasCommand('redis-server'))) {
    console.error('redis-server not found: apt-get install redis-server (the cluster scenario needs it)');
    process.exitCode = 1;
    return;
  }
  const key = Buffer.from(KEY_HEX, 'hex');
  const redis = await startRedis();
  const origin = await startCountingOrigin();
  try {
    const paths = Array.from({ length: URLS }, (_, i) => buildImagePath(key, `${origin.url}/img/${i}.jpg`));
    const nodes = await Promise.all(['node-a', 'node-b', 'node-c'].map((n) => startNode(n, redis.url)));
    const cold = await coldRound(
      nodes.map((n) => n.url),
      paths,
    );
    const clusterOrigin = origin.count();

    // Hits: the same URL list through the three nodes (each its own load, at once) vs one node alone.
    const perNode = await Promise.all(
      nodes.map((n) => runLoad({ baseUrl: n.url, paths, connections: 16, durationSec: SECONDS, tool: 'autocannon', workDir: work })),
    );
    const clusterRps = perNode.reduce((sum, r) => sum + r.rps, 0);
    for (const n of nodes) await n.service.stop();

    const single = await startNode('single', undefined);
    const before = origin.count();
    await coldRound([single.url], paths);
    const singleOrigin = origin.count() - before;
    const singleHits = await runLoad({ baseUrl: single.url, paths, connections: 48, durationSec: SECONDS, tool: 'autocannon', workDir: work });
    await single.service.stop();

    const lines = [
      '# Redis cluster scenario (issue 7)',
      '',
      `Run ${new Date().toISOString()} on ${os.cpus()[0]?.model ?? 'unknown CPU'} × ${os.cpus().length}, Node ${process.version}; redis-server on loopback, no persistence.`,
      `${URLS} distinct cold URLs, each requested through each node, all in one random order, ${CONCURRENCY} at a time, over 3 nodes (one process each, own cache dir, one Redis); then ${SECONDS} s of hits on the same URLs (autocannon, 16 connections per node; 48 for the single node).`,
      '',
      '| setup | cold requests ok / failed | origin requests | cold wall time s | hit req/s | hit p99 ms |',
      '|---|---:|---:|---:|---:|---:|',
      `| 3 nodes + Redis | ${cold.ok} / ${cold.failed} | ${clusterOrigin} (target ${URLS}) | ${cold.seconds.toFixed(1)} | ${Math.round(clusterRps)} | ${Math.max(...perNode.map((r) => r.p99Ms)).toFixed(1)} |`,
      `| 1 node | — | ${singleOrigin} | — | ${Math.round(singleHits.rps)} | ${singleHits.p99Ms.toFixed(1)} |`,
      '',
      `Hit throughput, 3 nodes ÷ 1 node: ${(clusterRps / singleHits.rps).toFixed(2)}× (all processes share this machine's ${os.cpus().length} cores, so this measures overhead, not scale-out).`,
      '',
    ];
    const out = path.join(ROOT, 'bench', 'results', 'redis-cluster.md');
    writeFileSync(out, lines.join('\n'));
    console.log(lines.join('\n'));
    console.log(`written to ${out}`);
    if (clusterOrigin !== URLS) process.exitCode = 1;
  } finally {
    await stopAllServices();
    await origin.close();
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
