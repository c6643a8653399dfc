import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildImagePath } from '../../src/server/signature.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { eventually, spawnServe } from './process-helper.ts';
import { TEST_KEY } from './service-helper.ts';

const ADMIN_TOKEN = 'process-test-admin-token-0123';

/** Serves `body` as a PNG `delayMs` after the request arrives. */
let origin: Origin;
let png: Buffer;
const tmp = makeTempDir('fic-process-');
before(async () => {
  origin = await startOrigin();
  png = await makeImage('png', 64, 64);
});
after(async () => {
  await origin.close();
  tmp.cleanup();
});

describe('one process', () => {
  test('SIGTERM with a request in flight: it finishes, then the process exits 0', async () => {
    const home = join(tmp.dir, 'term');
    const server = await spawnServe(home, ['--workers', '1'], { FASTIMAGECACHE_SERVER_SHUTDOWN_GRACE_MS: '5000' });
    try {
      origin.slowHeaders('/in-flight.png', 700, png);
      const pending = fetch(server.url + buildImagePath(TEST_KEY, `${origin.url}/in-flight.png`));
      await eventually(() => (origin.hits('/in-flight.png') === 1 ? true : undefined), 10_000, 'the origin request');
      server.child.kill('SIGTERM');
      const res = await pending;
      assert.equal(res.status, 200);
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), png);
      assert.equal(await server.exited, 0);
      const messages = server.logs().map((l) => l.msg);
      assert.ok(messages.includes('shutting down') && messages.includes('stopped'), String(messages));
      // Every line about the request carries its request id.
      const served = server.logs().filter((l) => l.msg === 'image served');
      assert.equal(served.length, 1);
      assert.match(String(served[0]?.reqId), /^[0-9a-f-]{36}$/);
    } finally {
      await server.stop();
    }
  });

  test('SIGHUP reloads a valid config and refuses an invalid one; both are audited; the admin API answers', async () => {
    const home = join(tmp.dir, 'hup');
    const configFile = join(tmp.dir, 'hup.yaml');
    writeFileSync(configFile, 'clientMaxAge: 111\n');
    const server = await spawnServe(home, ['--workers', '1', '--config', configFile], {
      FASTIMAGECACHE_ADMIN_TOKEN: ADMIN_TOKEN,
      FASTIMAGECACHE_ADMIN_PORT: '0',
    });
    const auditPath = join(home, '.local', 'state', 'fastimagecache', 'audit.log');
    const auditLines = () =>
      existsSync(auditPath)
        ? readFileSync(auditPath, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => JSON.parse(l) as { actor: string; action: string; outcome: string; changes?: unknown[]; reason?: string })
        : [];
    try {
      origin.serve('/hup.png', png, { contentType: 'image/png' });
      const url = server.url + buildImagePath(TEST_KEY, `${origin.url}/hup.png`);
      const before = await fetch(url);
      await before.arrayBuffer();
      assert.equal(before.headers.get('cache-control'), 'public, max-age=111');

      writeFileSync(configFile, 'clientMaxAge: 222\n');
      server.child.kill('SIGHUP');
      await eventually(() => (auditLines().length >= 1 ? true : undefined), 10_000, 'the reload audit line');
      const reloaded = await fetch(url);
      await reloaded.arrayBuffer();
      assert.equal(reloaded.headers.get('cache-control'), 'public, max-age=222');

      writeFileSync(configFile, 'clientMaxAge: "not a number"\n');
      server.child.kill('SIGHUP');
      await eventually(() => (auditLines().length >= 2 ? true : undefined), 10_000, 'the refused reload audit line');
      const still = await fetch(url);
      await still.arrayBuffer();
      assert.equal(still.headers.get('cache-control'), 'public, max-age=222', 'the running config stays');

      const lines = auditLines();
      assert.deepEqual(
        lines.map((l) => [l.actor, l.action, l.outcome]),
        [
          ['signal:SIGHUP', 'reload', 'applied'],
          ['signal:SIGHUP', 'reload', 'refused'],
        ],
      );
      assert.deepEqual(lines[0]?.changes, [{ setting: 'clientMaxAge', from: 111, to: 222 }]);
      assert.match(lines[1]?.reason ?? '', /clientMaxAge/);
      assert.equal(statSync(auditPath).mode & 0o777, 0o600);

      assert.ok(server.adminUrl, 'the admin listener is announced');
      const stats = await fetch(`${server.adminUrl}/admin/stats`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(stats.status, 200);
      assert.ok(((await stats.json()) as { cache: { hits: number } }).cache.hits >= 1);
      assert.equal(await server.stop(), 0);
    } finally {
      await server.stop();
    }
  });
});

describe('workers', () => {
  test('two workers share each client budget: over it by at most one report batch per worker', async () => {
    // perSecond 1 + burst 40: a 41-request budget whose burst refills over 40 s, so the window outlasts the test.
    const server = await spawnServe(join(tmp.dir, 'limits'), ['--workers', '2'], {
      FASTIMAGECACHE_RATE_LIMIT_PER_SECOND: '1',
      FASTIMAGECACHE_RATE_LIMIT_BURST: '40',
      FASTIMAGECACHE_LOG_LEVEL: 'warn',
    });
    try {
      const started = Date.now();
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      // Separate connections, so the cluster spreads them over both workers; alone, each would admit 41.
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          for (let i = 0; i < 10; i++) {
            const res = await fetch(`${server.url}/not-a-route`, { headers: { Connection: 'close' } });
            statuses.push(res.status);
            if (res.status === 429) {
              retryAfter = res.headers.get('retry-after');
              assert.equal(((await res.json()) as { error: string }).error, 'rate_limited');
            } else await res.arrayBuffer();
          }
        }),
      );
      const admitted = statuses.filter((s) => s !== 429).length;
      // Each worker reports every 2nd request (reportEvery), so it admits at most 1 the primary has not counted yet;
      // a batch crossing the 1-request sustained window is charged to the burst whole.
      const refills = Math.ceil((Date.now() - started) / 1000);
      assert.ok(admitted >= 41 - 2 && admitted <= 41 + 2 + refills, `${admitted} of 100 admitted for a budget of 41 (+${refills} refills)`);
      assert.ok(Number(retryAfter) >= 1, `Retry-After ${String(retryAfter)}`);
    } finally {
      await server.stop();
    }
  });

  test('two workers hammering one cold key: at most one origin fetch per worker, an intact entry, a dead worker replaced', async () => {
    const home = join(tmp.dir, 'workers');
    const server = await spawnServe(home, ['--workers', '2'], {
      FASTIMAGECACHE_ADMIN_TOKEN: ADMIN_TOKEN,
      FASTIMAGECACHE_ADMIN_PORT: '0',
      FASTIMAGECACHE_LOG_LEVEL: 'warn',
      FASTIMAGECACHE_MAX_ENTRIES: '3',
    });
    const admin = async <T>(path: string): Promise<T> => {
      const res = await fetch(`${server.adminUrl ?? ''}${path}`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      assert.equal(res.status, 200);
      return (await res.json()) as T;
    };
    type Stats = {
      workers: number;
      cache: { entries: number; evictions: number; maxEntries: number };
      perWorker: Array<{ pid: number; cache: { hits: number; misses: number } }>;
    };
    try {
      assert.match(server.stderr(), /workers: +2 processes/);
      origin.slowHeaders('/cold.png', 400, png);
      const url = server.url + buildImagePath(TEST_KEY, `${origin.url}/cold.png`);
      // Separate connections, so the cluster spreads them over both workers.
      const responses = await Promise.all(
        Array.from({ length: 16 }, async () => {
          const res = await fetch(url, { headers: { Connection: 'close' } });
          return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
        }),
      );
      for (const r of responses) {
        assert.equal(r.status, 200);
        assert.deepEqual(r.body, png);
      }
      const fetches = origin.hits('/cold.png');
      assert.ok(fetches >= 1 && fetches <= 2, `${fetches} origin fetches for one key with two workers`);

      const stats = await admin<Stats>('/admin/stats');
      assert.equal(stats.workers, 2);
      assert.ok(stats.perWorker.every((w) => w.cache.hits + w.cache.misses > 0), 'both workers served the key');
      assert.ok(stats.cache.entries >= 1, 'the entry is accounted for by the one index');
      // The entry written (perhaps twice, concurrently) is intact: served from the cache, byte for byte.
      const hit = await fetch(url);
      assert.equal(hit.headers.get('x-cache'), 'HIT');
      assert.deepEqual(Buffer.from(await hit.arrayBuffer()), png);
      assert.equal(origin.hits('/cold.png'), fetches);

      // One index, in the primary, keeps the limit for all workers together: 3 entries at most.
      for (let i = 0; i < 5; i++) origin.serve(`/more-${i}.png`, await makeImage('png', 8 + i, 8), { contentType: 'image/png' });
      for (let i = 0; i < 5; i++) {
        const res = await fetch(server.url + buildImagePath(TEST_KEY, `${origin.url}/more-${i}.png`), { headers: { Connection: 'close' } });
        assert.equal(res.status, 200);
        await res.arrayBuffer();
      }
      const limited = await eventually(
        async () => {
          const now = await admin<Stats>('/admin/stats');
          return now.cache.evictions >= 3 ? now : undefined;
        },
        5_000,
        'evictions by the shared index',
      );
      assert.equal(limited.cache.maxEntries, 3);
      assert.ok(limited.cache.entries <= 3, `${limited.cache.entries} entries with a limit of 3`);

      // A worker that dies is replaced.
      const victim = stats.perWorker[0]?.pid;
      assert.ok(victim);
      process.kill(victim, 'SIGKILL');
      const replaced = await eventually(
        async () => {
          const now = await admin<Stats>('/admin/stats').catch(() => undefined);
          return now && now.workers === 2 && !now.perWorker.some((w) => w.pid === victim) ? now : undefined;
        },
        15_000,
        'a replacement worker',
      );
      assert.equal(replaced.workers, 2);
      const metrics = await fetch(`${server.adminUrl ?? ''}/metrics`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      const text = await metrics.text();
      assert.match(text, /fastimagecache_worker_restarts_total 1/);
      assert.match(text, /fastimagecache_http_requests_total\{route="image",status="200"\} \d+/);
      assert.equal((await fetch(url)).status, 200, 'still serving');
      assert.equal(await server.stop(), 0);
    } finally {
      await server.stop();
    }
  });
});
