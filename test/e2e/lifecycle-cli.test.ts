/**
 * The maintenance commands as an operator runs them (`node src/cli/main.ts
 * stats|purge|verify|prune`), on the cache directory of a server running in
 * this process.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, TEST_KEY_HEX, type TestProxy } from '../helpers/proxy.ts';

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
let origin: Origin;
let proxy: TestProxy;
const pngs: Buffer[] = [];

before(async () => {
  origin = await startOrigin();
  for (let i = 0; i < 6; i++) {
    const png = await makeImage('png', 20 + i, 20);
    pngs.push(png);
    origin.serve(`/c${i}.png`, png, { contentType: 'image/png', headers: { 'Cache-Control': 'max-age=3600' } });
  }
  proxy = await startProxy();
});
after(async () => {
  await proxy.close();
  await origin.close();
});

/** Runs the CLI on the proxy's cache directory; stdout and stderr are pipes (not a terminal). */
function cli(args: string[], extraEnv: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FASTIMAGECACHE_') && v !== undefined) env[k] = v;
  Object.assign(env, { FASTIMAGECACHE_CACHE_DIR: proxy.cacheDir, FASTIMAGECACHE_KEY: TEST_KEY_HEX, ...extraEnv });
  const r = spawnSync(process.execPath, [MAIN, ...args], { env, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function get(i: number): Promise<string | null> {
  const url = proxy.signedUrl(`${origin.url}/c${i}.png`);
  // A kept-alive connection the server closed as idle meanwhile fails once; that is not what these tests are about.
  const res = await fetch(url).catch(() => fetch(url));
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(pngs[i] as Buffer));
  return res.headers.get('x-cache');
}

const entryFiles = () =>
  readdirSync(proxy.cacheDir, { recursive: true, encoding: 'utf8' }).filter((p) => /^[0-9a-f]{2}\/[0-9a-f]{16}\/[0-9a-f]{8}$/.test(p));

test('stats: entries, bytes, limit, oldest entry, and the running server\'s hit ratio', async () => {
  for (let i = 0; i < 4; i++) await get(i);
  for (let i = 0; i < 4; i++) assert.equal(await get(i), 'HIT');
  await sleep(2200); // the server publishes its counters every 2 s
  const r = cli(['stats', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(report.entries, 4);
  assert.ok((report.bytes as number) > pngs.slice(0, 4).reduce((s, p) => s + p.length, 0));
  assert.equal(report.maxBytes, 1024 ** 3);
  assert.match(String(report.oldestEntry), /^\d{4}-\d\d-\d\dT/);
  assert.equal((report.servers as unknown[]).length, 1);
  assert.equal(report.hitRatio, 0.5);

  const human = cli(['stats']);
  assert.match(human.stdout, /entries: +4/);
  assert.match(human.stdout, /hit ratio: +50\.0% since start/);
});

test('purge <url> removes the source from disk and from the running server\'s memory; purge --all empties the cache', async () => {
  await get(4);
  assert.equal(await get(4), 'HIT'); // from the memory tier now
  const before = entryFiles().length;
  const r = cli(['purge', `${origin.url}/c4.png`]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /purged 1 entry/);
  assert.equal(entryFiles().length, before - 1);
  let status: string | null = 'HIT';
  for (let i = 0; i < 60 && status === 'HIT'; i++) {
    await sleep(100);
    status = await get(4);
  }
  assert.equal(status, 'MISS', 'the running server forgot it (memory tier included)');

  assert.equal(cli(['purge']).status, 2, 'a URL or --all is required');
  const all = cli(['purge', '--all']);
  assert.equal(all.status, 0, all.stderr);
  assert.deepEqual(entryFiles(), []);
  // The running server hears of it at its next poll (every 2 s) and drops its memory tier.
  for (let i = 0; i < 60 && (await proxy.imageCache.stats()).memoryEntries > 0; i++) await sleep(100);
  assert.equal((await proxy.imageCache.stats()).memoryEntries, 0);
  assert.equal(await get(0), 'MISS');
});

test('verify removes damaged entries and prints a summary; no progress bar when piped', async () => {
  for (let i = 1; i < 3; i++) await get(i);
  assert.equal(entryFiles().length, 3);
  const [victim] = entryFiles();
  assert.ok(victim);
  const file = path.join(proxy.cacheDir, victim);
  const bytes = readFileSync(file);
  bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0xff;
  writeFileSync(file, bytes);

  const r = cli(['verify']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /verified 3 entries: 2 ok, 1 damaged and removed/);
  assert.equal(r.stderr, '', 'quiet when piped');
  assert.equal(entryFiles().length, 2);
});

test('a progress bar on a terminal', { skip: spawnSync('script', ['--version']).status !== 0 && 'script(1) is not available' }, () => {
  const command = `FASTIMAGECACHE_CACHE_DIR='${proxy.cacheDir}' FASTIMAGECACHE_KEY=${TEST_KEY_HEX} '${process.execPath}' '${MAIN}' verify`;
  const out = execFileSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', timeout: 20_000 });
  assert.match(out, /verifying \[#+\] (\d+)\/\1 100%/);
  assert.match(out, /verified \d+ entries/);
});

test('prune enforces the limits now (and removes nothing fresh)', async () => {
  // The entry verify removed comes back once the server has heard of the removal (memory tier dropped, fetched again).
  for (let round = 0; round < 30 && entryFiles().length < 6; round++) {
    for (let i = 0; i < 6; i++) await get(i);
    if (entryFiles().length < 6) await sleep(200);
  }
  assert.equal(entryFiles().length, 6);
  const fresh = cli(['prune']);
  assert.equal(fresh.status, 0, fresh.stderr);
  assert.match(fresh.stdout, /0 expired and 0 evicted/);
  const limited = cli(['prune', '--json'], { FASTIMAGECACHE_MAX_ENTRIES: '2' });
  assert.equal(limited.status, 0, limited.stderr);
  assert.deepEqual(JSON.parse(limited.stdout), { ...JSON.parse(limited.stdout), expired: 0, evicted: 4 });
  assert.equal(entryFiles().length, 2);
});
