/**
 * `serve` forks its first worker before reading the configuration when the
 * command line and the environment already tell how many workers there will
 * be (workerCountBeforeConfig). That early answer must never disagree with
 * the configuration's: a wrong "more than one" costs a worker forked for
 * nothing, a wrong count would run the wrong number.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { workerCountBeforeConfig } from '../../src/cli/worker-settings.ts';
import { loadConfig } from '../../src/config/index.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const tmp = makeTempDir('fic-worker-count-');
after(() => { tmp.cleanup(); });
const CPUS = 6;

/** The count serve runs with, from the configuration as loadConfig builds it (0 is one per CPU). */
function configuredCount(flags: { workers?: string; config?: string }, env: NodeJS.ProcessEnv): number {
  const { config } = loadConfig({
    configFile: flags.config,
    env: { FASTIMAGECACHE_CACHE_DIR: join(tmp.dir, 'cache'), FASTIMAGECACHE_STATE_DIR: join(tmp.dir, 'state'), ...env },
    flags: { workers: flags.workers === undefined ? undefined : Number(flags.workers) },
  });
  return config.workers === 0 ? CPUS : config.workers;
}

describe('the worker count known before the configuration is read', () => {
  const fileWith3 = join(tmp.dir, 'three.yaml');
  writeFileSync(fileWith3, 'workers: 3\n');
  const fileWithout = join(tmp.dir, 'none.yaml');
  writeFileSync(fileWithout, 'logLevel: warn\n');

  const cases: Array<{ name: string; flags: { workers?: string; config?: string }; env: NodeJS.ProcessEnv; early: number | undefined }> = [
    { name: 'nothing given: the default, one per CPU', flags: {}, env: {}, early: CPUS },
    { name: '--workers', flags: { workers: '4' }, env: {}, early: 4 },
    { name: '--workers 0 is one per CPU', flags: { workers: '0' }, env: {}, early: CPUS },
    { name: '--workers 1', flags: { workers: '1' }, env: {}, early: 1 },
    { name: 'the environment', flags: {}, env: { FASTIMAGECACHE_WORKERS: '2' }, early: 2 },
    { name: 'the flag over the environment', flags: { workers: '5' }, env: { FASTIMAGECACHE_WORKERS: '2' }, early: 5 },
    { name: 'the flag over a config file', flags: { workers: '2', config: fileWith3 }, env: {}, early: 2 },
    { name: 'the environment over a config file', flags: { config: fileWith3 }, env: { FASTIMAGECACHE_WORKERS: '1' }, early: 1 },
    { name: 'a config file (flag) leaves it unknown', flags: { config: fileWith3 }, env: {}, early: undefined },
    { name: 'a config file (environment) leaves it unknown', flags: {}, env: { FASTIMAGECACHE_CONFIG: fileWith3 }, early: undefined },
    { name: 'a config file without workers also', flags: { config: fileWithout }, env: {}, early: undefined },
  ];
  for (const c of cases) {
    test(`${c.name}: ${String(c.early)}, as the configuration says`, () => {
      assert.equal(workerCountBeforeConfig(c.flags, c.env, CPUS), c.early);
      if (c.early !== undefined) assert.equal(configuredCount(c.flags, c.env), c.early);
    });
  }

  test('what is not a plain count is left to the configuration to refuse', () => {
    for (const workers of ['two', '-1', '1.5', '', ' 2']) {
      assert.equal(workerCountBeforeConfig({ workers }, {}, CPUS), undefined, `--workers "${workers}"`);
      assert.equal(workerCountBeforeConfig({}, { FASTIMAGECACHE_WORKERS: workers }, CPUS), undefined, `FASTIMAGECACHE_WORKERS="${workers}"`);
    }
    assert.throws(() => configuredCount({ workers: 'two' }, {}));
    assert.throws(() => configuredCount({}, { FASTIMAGECACHE_WORKERS: '-1' }));
  });
});
