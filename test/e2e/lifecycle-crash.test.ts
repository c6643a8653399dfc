/**
 * Crash safety: a real server process is killed with SIGKILL in the middle of
 * a burst of cache writes, then restarted on the same directory. Every entry
 * it serves must match the origin byte for byte, no temporary file may be
 * left once it has started, every response completed before the kill must be
 * a hit, and its size accounting must match the directory again.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildImagePath } from '../../src/server/signature.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { TEST_KEY_HEX } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const COUNT = 120;
const KEY = Buffer.from(TEST_KEY_HEX, 'hex');
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

let origin: Origin;
const images: Buffer[] = [];
const tmp = makeTempDir('fic-crash-');
const cacheDir = path.join(tmp.dir, 'cache');

before(async () => {
  origin = await startOrigin();
  for (let i = 0; i < COUNT; i++) {
    const png = await makeImage('png', 16 + i, 12 + (i % 7));
    images.push(png);
    // A little latency, so the burst's writes are spread out and the kill lands among them.
    origin.handle(`/img${i}.png`, (_req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': png.length, 'Cache-Control': 'max-age=3600' });
        res.end(png);
      }, i % 20);
    });
  }
});
after(async () => {
  await origin.close();
  tmp.cleanup();
});

interface Server {
  child: ChildProcess;
  url: string;
}

/** `node src/cli/main.ts serve` as an operator runs it, on the shared cache directory. */
async function startServer(): Promise<Server> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FASTIMAGECACHE_') && v !== undefined) env[k] = v;
  Object.assign(env, {
    HOME: tmp.dir,
    FASTIMAGECACHE_CACHE_DIR: cacheDir,
    FASTIMAGECACHE_STATE_DIR: path.join(tmp.dir, 'state'),
    FASTIMAGECACHE_KEY: TEST_KEY_HEX,
    FASTIMAGECACHE_ALLOW_HTTP: 'true',
    FASTIMAGECACHE_ALLOWED_PORTS: '*',
    FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '127.0.0.1/32',
    FASTIMAGECACHE_LOG_LEVEL: 'warn',
  });
  const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0', '--workers', '1'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`server did not start: ${stderr}`)); }, 15_000);
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const m = /listening on (http:\/\/[\d.:]+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.once('exit', (code) => { reject(new Error(`server exited (${code}): ${stderr}`)); });
  });
  return { child, url };
}

const imageUrl = (server: Server, i: number) => server.url + buildImagePath(KEY, `${origin.url}/img${i}.png`, '_');

/** Entry files and their total size, as the directory really is. */
function onDisk(): { entries: number; bytes: number } {
  let entries = 0;
  let bytes = 0;
  for (const rel of readdirSync(cacheDir, { recursive: true, encoding: 'utf8' })) {
    if (!/^[0-9a-f]{2}\/[0-9a-f]{16}\/[0-9a-f]{8}$/.test(rel)) continue;
    entries += 1;
    bytes += statSync(path.join(cacheDir, rel)).size;
  }
  return { entries, bytes };
}

test('SIGKILL during a burst of cache writes, restart on the same directory: intact, no temp files, accounting right', async () => {
  const first = await startServer();
  const completed: number[] = [];
  const burst = Array.from({ length: COUNT }, async (_, i) => {
    try {
      const res = await fetch(imageUrl(first, i));
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status === 200 && body.equals(images[i] as Buffer)) completed.push(i);
    } catch {
      // cut off by the kill
    }
  });
  while (completed.length < COUNT / 3) await sleep(2);
  first.child.kill('SIGKILL');
  await Promise.all(burst);
  await new Promise((resolve) => {
    if (first.child.exitCode !== null || first.child.signalCode !== null) resolve(null);
    else first.child.once('exit', resolve);
  });
  assert.ok(completed.length < COUNT, 'the kill landed in the middle of the burst');

  const second = await startServer();
  try {
    assert.deepEqual(readdirSync(path.join(cacheDir, 'tmp')), [], 'no temporary file left after start-up');

    const t0 = performance.now();
    const firstHit = await fetch(imageUrl(second, completed[0] as number));
    assert.equal(firstHit.headers.get('x-cache'), 'HIT');
    assert.ok(Buffer.from(await firstHit.arrayBuffer()).equals(images[completed[0] as number] as Buffer));
    const firstHitMs = performance.now() - t0;
    assert.ok(firstHitMs < 1000, `first hit after restart took ${firstHitMs} ms`);

    // The server publishes its index's accounting once it has read the directory.
    const statusFile = path.join(cacheDir, '.status', `${second.child.pid}.json`);
    let status: Record<string, unknown> | undefined;
    for (let i = 0; i < 200 && status?.indexReady !== true; i++) {
      await sleep(25);
      try {
        status = JSON.parse(readFileSync(statusFile, 'utf8')) as Record<string, unknown>;
      } catch {
        // not written yet
      }
    }
    assert.equal(status?.indexReady, true);
    const real = onDisk();
    assert.deepEqual({ entries: status.entries, bytes: status.bytes }, real, 'the rebuilt index accounts for exactly what is on disk');

    let hits = 0;
    for (let i = 0; i < COUNT; i++) {
      const res = await fetch(imageUrl(second, i));
      assert.equal(res.status, 200, `image ${i}`);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(images[i] as Buffer), `image ${i} matches the origin byte for byte`);
      if (res.headers.get('x-cache') === 'HIT') hits += 1;
      else assert.ok(!completed.includes(i), `image ${i} was served before the kill, so it must have been stored`);
    }
    assert.ok(hits >= completed.length, `${hits} hits, ${completed.length} completed before the kill`);
    assert.equal(onDisk().entries, COUNT);
  } finally {
    second.child.kill('SIGTERM');
    await new Promise((resolve) => second.child.once('exit', resolve));
  }
});
