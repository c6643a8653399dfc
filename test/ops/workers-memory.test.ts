/**
 * Memory settings of `serve --workers N`: glibc reads its malloc settings only
 * at process start, so the primary must put them into each worker's
 * environment (and the V8 young-generation cap into its flags), and must
 * leave alone whatever the operator set.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { availableParallelism } from 'node:os';
import { WORKER_EXPOSE_GC_FLAG, WORKER_MALLOC_ENV, WORKER_SEMI_SPACE_FLAG, workerConfig, workerExecArgv, workerMallocEnv } from '../../src/cli/workers.ts';
import { loadConfig } from '../../src/config/load.ts';
import { defaultTransformConcurrency, threadPoolSize } from '../../src/image/transform-queue.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { eventually, spawnServe } from './process-helper.ts';

const tmp = makeTempDir('fic-workers-memory-');
after(() => { tmp.cleanup(); });

describe('worker memory settings, as computed', () => {
  test('glibc malloc: two arenas and a fixed mmap threshold, unless the operator set them', () => {
    assert.deepEqual(workerMallocEnv({}), { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072' });
    assert.deepEqual(workerMallocEnv({ MALLOC_ARENA_MAX: '8' }), { MALLOC_MMAP_THRESHOLD_: '131072' });
    assert.deepEqual(workerMallocEnv({ MALLOC_ARENA_MAX: '8', MALLOC_MMAP_THRESHOLD_: '0' }), {});
    assert.deepEqual(workerMallocEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=4' }), {}, 'GLIBC_TUNABLES says it all');
    assert.deepEqual(workerMallocEnv({ GLIBC_TUNABLES: 'glibc.rtld.optional_static_tls=512' }), WORKER_MALLOC_ENV, 'other tunables do not count');
  });

  test('V8: the semi-space cap and gc() are added to the primary\'s flags, unless given already', () => {
    assert.deepEqual(workerExecArgv(['--enable-source-maps'], {}), ['--enable-source-maps', WORKER_SEMI_SPACE_FLAG, WORKER_EXPOSE_GC_FLAG]);
    assert.deepEqual(workerExecArgv(['--max-semi-space-size=32'], {}), ['--max-semi-space-size=32', WORKER_EXPOSE_GC_FLAG]);
    assert.deepEqual(workerExecArgv([], { NODE_OPTIONS: '--max-semi-space-size=2 --expose-gc' }), []);
  });
});

describe('transform concurrency of the workers', () => {
  test('automatic (0): each of N workers gets its share of the CPUs; a number set is kept', () => {
    const { config } = loadConfig({ env: {}, overrides: { cacheDir: join(tmp.dir, 'c'), stateDir: join(tmp.dir, 's') } });
    assert.equal(config.transforms.concurrency, 0);
    const cpus = availableParallelism();
    assert.equal(workerConfig(config, cpus).transforms.concurrency, defaultTransformConcurrency(threadPoolSize(), cpus));
    assert.equal(workerConfig(config, cpus).transforms.concurrency, 1);
    const set = { ...config, transforms: { ...config.transforms, concurrency: 3 } };
    assert.equal(workerConfig(set, cpus), set);
  });
});

const hasProc = existsSync('/proc/self/environ');

describe('worker memory settings, in real workers', { skip: !hasProc && 'needs /proc to read a process\'s environment' }, () => {
  /** The pids of `pid`'s child processes. */
  const childrenOf = (pid: number): number[] =>
    readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((name) => {
        try {
          const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
        } catch {
          return false; // exited meanwhile
        }
      })
      .map(Number);
  const nulSeparated = (file: string) => readFileSync(file, 'utf8').split('\0').filter((s) => s !== '');

  test('each worker starts with the malloc settings and the V8 flag; an operator\'s own value is kept', async () => {
    const server = await spawnServe(join(tmp.dir, 'home'), ['--workers', '2'], { FASTIMAGECACHE_LOG_LEVEL: 'warn', MALLOC_ARENA_MAX: '4' });
    try {
      const pid = server.child.pid ?? -1;
      const workers = await eventually(() => {
        const found = childrenOf(pid).filter((child) => nulSeparated(`/proc/${child}/cmdline`).some((arg) => arg.endsWith('main.ts')));
        return found.length === 2 ? found : undefined;
      }, 10_000, 'two worker processes');
      for (const worker of workers) {
        const env = nulSeparated(`/proc/${worker}/environ`);
        assert.ok(env.includes('MALLOC_ARENA_MAX=4'), 'the operator\'s arena count');
        assert.ok(env.includes('MALLOC_MMAP_THRESHOLD_=131072'));
        assert.ok(nulSeparated(`/proc/${worker}/cmdline`).includes(WORKER_SEMI_SPACE_FLAG));
        assert.ok(nulSeparated(`/proc/${worker}/cmdline`).includes(WORKER_EXPOSE_GC_FLAG));
      }
      // The primary itself runs as it was started.
      assert.ok(!nulSeparated(`/proc/${pid}/environ`).includes('MALLOC_MMAP_THRESHOLD_=131072'));
    } finally {
      const code = await server.stop();
      assert.equal(code, 0, `exit signal ${String(server.child.signalCode)}; stderr ends: ${server.stderr().slice(-1500)}`);
    }
  });

  test('a worker loads neither the configuration loader (zod, yaml) nor the Redis client when no Redis is configured, and loads the origin HTTP client (undici) only once it listens', async () => {
    // Each costs MBs of heap in every worker: the primary validates the configuration, and Redis is optional. undici
    // is the largest part of a worker's start-up, and only misses need it: a restart answers hits before loading it.
    const logDir = join(tmp.dir, 'modules');
    mkdirSync(logDir, { recursive: true });
    const hook = join(tmp.dir, 'log-modules.mjs');
    writeFileSync(
      hook,
      `import { registerHooks } from 'node:module';
import cluster from 'node:cluster';
import net from 'node:net';
import { appendFileSync } from 'node:fs';
const log = (line) => appendFileSync(${JSON.stringify(logDir)} + '/' + process.pid, line + '\\n');
if (cluster.isWorker) {
  registerHooks({ resolve(spec, ctx, next) { const r = next(spec, ctx); log(r.url); return r; } });
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) { this.once('listening', () => log('LISTENING')); return listen.apply(this, args); };
}
`,
    );
    const server = await spawnServe(join(tmp.dir, 'home-modules'), ['--workers', '2'], { FASTIMAGECACHE_LOG_LEVEL: 'warn', NODE_OPTIONS: `--import ${hook}` });
    try {
      const res = await fetch(`${server.url}/healthz`);
      assert.equal(res.status, 200);
      // The warm-up after listening loads undici without any request asking for it.
      await eventually(
        () => (readdirSync(logDir).every((log) => readFileSync(join(logDir, log), 'utf8').includes('/node_modules/undici/')) ? true : undefined),
        10_000,
        'both workers loading undici',
      );
    } finally {
      assert.equal(await server.stop(), 0);
    }
    const logs = readdirSync(logDir);
    assert.equal(logs.length, 2, 'both workers logged their modules');
    for (const log of logs) {
      const urls = readFileSync(join(logDir, log), 'utf8');
      assert.match(urls, /node_modules\/sharp\//, 'the log holds the worker\'s modules');
      for (const pkg of ['zod', 'yaml', 'ioredis']) assert.doesNotMatch(urls, new RegExp(`node_modules/${pkg}/`), `${pkg} loaded in a worker`);
      const listening = urls.indexOf('LISTENING');
      assert.ok(listening > 0, 'the worker listened');
      assert.ok(urls.indexOf('/node_modules/undici/') > listening, 'undici loaded only after the worker listened');
    }
  });
});

