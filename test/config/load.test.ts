import assert from 'node:assert/strict';
import { chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadConfig, redactConfig, resolveSigningKeys, envNameFor } from '../../src/config/index.ts';
import { expectConfigError, writeFileWithMode } from '../helpers/config-files.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const tmp = makeTempDir();
after(tmp.cleanup);
const KEY_HEX = 'a'.repeat(64); // 32 bytes
const baseEnv = { HOME: tmp.dir };

const write = (name: string, text: string, mode?: number): string => writeFileWithMode(tmp.dir, name, text, mode);
const configError = expectConfigError;

describe('defaults', () => {
  test('secure defaults and XDG paths', () => {
    const { config, configFile } = loadConfig({ env: { HOME: '/home/u' } });
    assert.equal(configFile, undefined);
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 8080);
    assert.equal(config.cacheDir, '/home/u/.cache/fastimagecache');
    assert.equal(config.stateDir, '/home/u/.local/state/fastimagecache');
    assert.equal(config.allowHttp, false);
    assert.equal(config.allowPrivateNetworks, false);
    assert.equal(config.requireSignature, true);
    assert.deepEqual(config.allowedPorts, [80, 443]);
    assert.equal(config.maxRedirects, 3);
  });

  test('XDG_CACHE_HOME wins over HOME; relative XDG paths are ignored', () => {
    assert.equal(loadConfig({ env: { HOME: '/h', XDG_CACHE_HOME: '/xdg' } }).config.cacheDir, '/xdg/fastimagecache');
    assert.equal(loadConfig({ env: { HOME: '/h', XDG_CACHE_HOME: 'rel' } }).config.cacheDir, '/h/.cache/fastimagecache');
  });
});

describe('layering: defaults < file < env < flags', () => {
  test('each layer overrides the one before', () => {
    const file = write('layers.yaml', 'port: 9000\nhost: 0.0.0.0\nmaxRedirects: 1\n');
    const env = { ...baseEnv, FASTIMAGECACHE_PORT: '9001', FASTIMAGECACHE_MAX_REDIRECTS: '2' };
    const { config, configFile } = loadConfig({ configFile: file, env, flags: { port: 9002 } });
    assert.equal(configFile, file);
    assert.equal(config.host, '0.0.0.0'); // file
    assert.equal(config.maxRedirects, 2); // env over file
    assert.equal(config.port, 9002); // flag over env
  });

  test('JSON files are read too, and FASTIMAGECACHE_CONFIG names the file', () => {
    const file = write('c.json', JSON.stringify({ allowHttp: true, allowedPorts: '*' }));
    const { config } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_CONFIG: file } });
    assert.equal(config.allowHttp, true);
    assert.equal(config.allowedPorts, '*');
  });

  test('environment lists, booleans and ports', () => {
    const { config } = loadConfig({
      env: {
        ...baseEnv,
        FASTIMAGECACHE_ALLOW_HTTP: 'true',
        FASTIMAGECACHE_ALLOW_PRIVATE_NETWORKS: '0',
        FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '10.1.0.0/16, fd00::/8',
        FASTIMAGECACHE_ALLOWED_HOSTS: 'images.example.com,*.cdn.example.org',
        FASTIMAGECACHE_DENIED_HOSTS: 'bad.example.com',
        FASTIMAGECACHE_ALLOWED_PORTS: '443,8443',
        FASTIMAGECACHE_LOG_LEVEL: 'debug',
      },
    });
    assert.equal(config.allowHttp, true);
    assert.equal(config.allowPrivateNetworks, false);
    assert.deepEqual(config.allowedPrivateRanges, ['10.1.0.0/16', 'fd00::/8']);
    assert.deepEqual(config.allowedHosts, ['images.example.com', '*.cdn.example.org']);
    assert.deepEqual(config.deniedHosts, ['bad.example.com']);
    assert.deepEqual(config.allowedPorts, [443, 8443]);
    assert.equal(config.logLevel, 'debug');
    assert.equal(loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_ALLOWED_PORTS: '*' } }).config.allowedPorts, '*');
  });

  test('env names are upper snake case of the setting', () => {
    assert.equal(envNameFor('allowPrivateNetworks'), 'FASTIMAGECACHE_ALLOW_PRIVATE_NETWORKS');
    assert.equal(envNameFor('cacheDir'), 'FASTIMAGECACHE_CACHE_DIR');
  });
});

describe('refusals name the setting and why', () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['unknown file key', () => loadConfig({ env: baseEnv, configFile: write('u.yaml', 'prot: 1\n') }), /^prot: unknown setting/],
    ['unknown env var', () => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_PROT: '1' } }), /^FASTIMAGECACHE_PROT: unknown setting/],
    ['bad port', () => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_PORT: 'eighty' } }), /^port: /],
    ['port out of range', () => loadConfig({ env: baseEnv, flags: { port: 70000 } }), /^port: /],
    ['bad boolean', () => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_ALLOW_HTTP: 'maybe' } }), /^FASTIMAGECACHE_ALLOW_HTTP: expected true or false/],
    ['bad CIDR', () => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_ALLOWED_PRIVATE_RANGES: '10.0.0.0/99' } }), /^allowedPrivateRanges\.0: must be a CIDR/],
    ['bad host pattern', () => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_ALLOWED_HOSTS: 'a/b' } }), /^allowedHosts\.0: /],
    ['bad log level', () => loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_LOG_LEVEL: 'loud' } }), /^logLevel: /],
    ['key in a file', () => loadConfig({ env: baseEnv, configFile: write('k.yaml', `key: [${KEY_HEX}]\n`) }), /^key: secrets may not be written in a config file/],
    ['unreadable file', () => loadConfig({ env: baseEnv, configFile: join(tmp.dir, 'missing.yaml') }), /^config: cannot read .*ENOENT/],
    ['not YAML', () => loadConfig({ env: baseEnv, configFile: write('bad.yaml', 'a: [1,\n') }), /^config: .* is not valid YAML or JSON/],
    ['not a mapping', () => loadConfig({ env: baseEnv, configFile: write('list.yaml', '- 1\n') }), /^config: .* must hold a mapping/],
  ];
  for (const [name, fn, pattern] of cases) {
    test(name, () => { assert.match(configError(fn).message, pattern); });
  }
});

describe('signing keys', () => {
  test('keys from the environment, comma-separated for rotation, hex or base64', () => {
    const b64 = Buffer.alloc(32, 7).toString('base64');
    const { config } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_KEY: `${KEY_HEX},${b64}` } });
    const keys = resolveSigningKeys(config);
    assert.equal(keys.source, 'env');
    assert.equal(keys.keys.length, 2);
    assert.deepEqual(keys.keys[0], Buffer.alloc(32, 0xaa));
    assert.deepEqual(keys.keys[1], Buffer.alloc(32, 7));
  });

  test('short keys are refused', () => {
    const { config } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_KEY: 'ab'.repeat(16 - 1) } });
    assert.match(configError(() => resolveSigningKeys(config)).message, /^key: each key must be at least 32 bytes/);
  });

  test('a key file must not be readable by group or others', () => {
    const open = write('open.key', `${KEY_HEX}\n`, 0o644);
    const { config } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_KEY_FILE: open } });
    assert.match(configError(() => resolveSigningKeys(config)).message, /^keyFile: .* readable by group or others/);
    chmodSync(open, 0o600);
    assert.equal(resolveSigningKeys(config).source, 'keyFile');
  });

  test('first start generates a key in a 0600 file and reuses it', () => {
    const state = join(tmp.dir, 'state');
    const { config } = loadConfig({ env: baseEnv, flags: { stateDir: state } });
    const first = resolveSigningKeys(config);
    assert.equal(first.source, 'generated');
    assert.equal(first.keys[0]?.length, 32);
    assert.equal(statSync(first.path ?? '').mode & 0o777, 0o600);
    assert.equal(statSync(state).mode & 0o777, 0o700);
    const again = resolveSigningKeys(config);
    assert.equal(again.source, 'state');
    assert.deepEqual(again.keys[0], first.keys[0]);
  });

  test('redaction hides every key', () => {
    const { config } = loadConfig({ env: { ...baseEnv, FASTIMAGECACHE_KEY: `${KEY_HEX},${KEY_HEX}` } });
    const text = JSON.stringify(redactConfig(config));
    assert.ok(!text.includes(KEY_HEX));
    assert.deepEqual(redactConfig(config).key, ['[redacted]', '[redacted]']);
  });
});
