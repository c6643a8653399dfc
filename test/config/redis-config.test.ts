import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadConfig, redactConfig } from '../../src/config/index.ts';
import { resolveRedisUrl } from '../../src/config/redis-url.ts';
import { expectConfigError, writeFileWithMode } from '../helpers/config-files.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const tmp = makeTempDir();
after(tmp.cleanup);
const baseEnv = { HOME: tmp.dir };

const write = (name: string, text: string, mode?: number): string => writeFileWithMode(tmp.dir, name, text, mode);
const configError = expectConfigError;

test('Redis is off by default, with secure bounded defaults', () => {
  const { config } = loadConfig({ env: baseEnv });
  assert.equal(resolveRedisUrl(config), undefined);
  assert.equal(config.redis.maxEntryBytes, 1024 * 1024);
  assert.ok(config.redis.commandTimeoutMs > 0 && config.redis.commandTimeoutMs <= 1_000);
  assert.ok(config.redis.connectTimeoutMs > 0);
  assert.ok(config.redis.lockTtlMs > 0);
});

test('a Redis URL without a password may sit in the config file; settings come from env with their names', () => {
  const file = write('plain.yaml', 'redis:\n  url: redis://cache.internal:6379/2\n  maxEntryBytes: 2048\n');
  const { config } = loadConfig({
    env: { ...baseEnv, FASTIMAGECACHE_REDIS_LOCK_TTL_MS: '3000', FASTIMAGECACHE_REDIS_COMMAND_TIMEOUT_MS: '200' },
    configFile: file,
  });
  assert.equal(resolveRedisUrl(config), 'redis://cache.internal:6379/2');
  assert.equal(config.redis.maxEntryBytes, 2048);
  assert.equal(config.redis.lockTtlMs, 3000);
  assert.equal(config.redis.commandTimeoutMs, 200);
});

test('a Redis URL with a password is a secret: refused in a config file, accepted from the environment, never printed', () => {
  const file = write('secret.yaml', 'redis:\n  url: redis://app:hunter2hunter2@cache.internal:6379\n');
  const err = configError(() => loadConfig({ env: baseEnv, configFile: file }));
  assert.equal(err.key, 'redis.url');
  assert.doesNotMatch(err.message, /hunter2/);

  const { config } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_REDIS_URL: 'rediss://app:hunter2hunter2@cache.internal:6380' } });
  assert.equal(resolveRedisUrl(config), 'rediss://app:hunter2hunter2@cache.internal:6380');
  const printed = JSON.stringify(redactConfig(config));
  assert.doesNotMatch(printed, /hunter2/);
  assert.match(printed, /rediss:\/\/app:\[redacted\]@cache\.internal:6380/);
});

test('redis.urlFile must be readable by its owner only', () => {
  const loose = write('redis-loose.url', 'redis://:pw-pw-pw-pw@cache.internal:6379\n', 0o644);
  const { config: c1 } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_REDIS_URL_FILE: loose } });
  assert.equal(configError(() => resolveRedisUrl(c1)).key, 'redis.urlFile');

  const tight = write('redis-tight.url', 'redis://:pw-pw-pw-pw@cache.internal:6379\n', 0o600);
  const { config: c2 } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_REDIS_URL_FILE: tight } });
  assert.equal(resolveRedisUrl(c2), 'redis://:pw-pw-pw-pw@cache.internal:6379');

  const wrong = write('redis-wrong.url', 'http://cache.internal/\n', 0o600);
  const { config: c3 } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_REDIS_URL_FILE: wrong } });
  assert.equal(configError(() => resolveRedisUrl(c3)).key, 'redis.urlFile');
});

test('only redis:// and rediss:// URLs are accepted', () => {
  const err = configError(() => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_REDIS_URL: 'http://cache.internal:6379' } }));
  assert.equal(err.key, 'redis.url');
});
