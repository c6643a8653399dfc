/**
 * Hits from the memory tier vs hits from disk (issue 3's figures): the real
 * server (`node src/cli/main.ts serve`, one process) is started twice on a
 * primed cache, once with the default memory tier and once with
 * memoryCacheBytes=0, and a keep-alive client loop requests the same few
 * images for a fixed time. Prints requests/s and latency for each.
 *
 *   node bench/lifecycle-memory-tier.ts [seconds=5] [connections=16]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { Pool } from 'undici';
import { buildImagePath } from '../src/server/signature.ts';

const seconds = Number(process.argv[2] ?? 5);
const connections = Number(process.argv[3] ?? 16);
const KEY_HEX = '7a'.repeat(32);
const KEY = Buffer.from(KEY_HEX, 'hex');
const MAIN = new URL('../src/cli/main.ts', import.meta.url).pathname;

// Eight ~40 KB JPEGs (noise): realistic thumbnail-to-small-photo sizes.
const images = await Promise.all(
  Array.from({ length: 8 }, (_, i) => sharp(randomBytes(160 * 120 * 3), { raw: { width: 160, height: 120, channels: 3 } }).jpeg({ quality: 80 + i }).toBuffer()),
);
const origin = http.createServer((req, res) => {
  const i = Number(/\/(\d+)\.jpg/.exec(req.url ?? '')?.[1] ?? -1);
  const body = images[i];
  if (body === undefined) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'image/jpeg', 'Content-Length': body.length, 'Cache-Control': 'max-age=86400' });
  res.end(body);
});
await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
const originUrl = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
const base = await fs.mkdtemp(path.join(os.tmpdir(), 'fic-memtier-'));

async function startServer(memoryCacheBytes: number): Promise<{ child: ChildProcess; url: string }> {
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FASTIMAGECACHE_'))),
    HOME: base,
    FASTIMAGECACHE_CACHE_DIR: path.join(base, 'cache'),
    FASTIMAGECACHE_STATE_DIR: path.join(base, 'state'),
    FASTIMAGECACHE_KEY: KEY_HEX,
    FASTIMAGECACHE_ALLOW_HTTP: 'true',
    FASTIMAGECACHE_ALLOWED_PORTS: '*',
    FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '127.0.0.1/32',
    FASTIMAGECACHE_LOG_LEVEL: 'error',
    FASTIMAGECACHE_MEMORY_CACHE_BYTES: String(memoryCacheBytes),
    FASTIMAGECACHE_RATE_LIMIT_PER_SECOND: '0',
  };
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--workers', '1'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /listening on (http:\/\/[\d.:]+)/.exec(err);
      if (m) resolve(m[1] as string);
    });
    child.once('exit', () => {
      reject(new Error(err));
    });
  });
  return { child, url };
}

async function run(label: string, memoryCacheBytes: number) {
  const { child, url } = await startServer(memoryCacheBytes);
  const paths = images.map((_, i) => buildImagePath(KEY, `${originUrl}/${i}.jpg`, '_'));
  const pool = new Pool(url, { connections, pipelining: 1 });
  const fetchOne = async (p: string) => {
    const res = await pool.request({ path: p, method: 'GET' });
    await res.body.arrayBuffer();
    return res.headers['x-cache'];
  };
  for (const p of paths) await fetchOne(p); // prime (MISS or HIT from an earlier run)
  for (const p of paths) await fetchOne(p);
  const statuses = new Map<string, number>();
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  let n = 0;
  await Promise.all(
    Array.from({ length: connections }, async (_, c) => {
      for (let i = c; performance.now() < end; i += connections) {
        const t = performance.now();
        const status = String(await fetchOne(paths[i % paths.length] as string));
        latencies.push(performance.now() - t);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        n += 1;
      }
    }),
  );
  await pool.close();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  latencies.sort((a, b) => a - b);
  const q = (p: number) => Number((latencies[Math.floor(p * (latencies.length - 1))] ?? 0).toFixed(2));
  return { label, requestsPerSec: Math.round(n / seconds), p50Ms: q(0.5), p99Ms: q(0.99), xCache: Object.fromEntries(statuses) };
}

const results = [await run('memory tier (64 MiB)', 64 * 1024 * 1024), await run('disk only (memoryCacheBytes=0)', 0)];
console.log(JSON.stringify({ seconds, connections, imageBytes: images.map((i) => i.length), cpus: os.availableParallelism(), loadavg: os.loadavg(), results }, null, 2));
origin.close();
await fs.rm(base, { recursive: true, force: true });
