import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { makeTempDir } from '../helpers/tmp.ts';
import { waitForBanner } from '../helpers/serve-banner.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const KEY_HEX = '11'.repeat(32);
const tmp = makeTempDir('fic-cli-');
after(tmp.cleanup);

/** The environment a fresh user has: a home directory and nothing of ours. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: join(tmp.dir, 'home'), ...extra };
  return env;
}

function run(args: string[], env = cleanEnv()) {
  return spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', timeout: 20_000 });
}

describe('config check', () => {
  test('prints the effective configuration as JSON with secrets redacted', () => {
    const r = run(['config', 'check'], cleanEnv({ FASTIMAGECACHE_KEY: KEY_HEX, FASTIMAGECACHE_PORT: '9999' }));
    assert.equal(r.status, 0, r.stderr);
    const config = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.equal(config.port, 9999);
    assert.deepEqual(config.key, ['[redacted]']);
    assert.ok(!r.stdout.includes(KEY_HEX) && !r.stderr.includes(KEY_HEX));
  });

  test('a config file is read with --config', () => {
    const file = join(tmp.dir, 'ok.yaml');
    writeFileSync(file, 'port: 8123\nallowedHosts: ["*.example.com"]\n');
    const r = run(['config', 'check', '--config', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { port: number }).port, 8123);
  });

  test('exits 1 naming the bad or unknown setting', () => {
    const file = join(tmp.dir, 'bad.yaml');
    writeFileSync(file, 'port: 8123\nmaxRedirect: 2\n');
    const unknown = run(['config', 'check', '--config', file]);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /maxRedirect: unknown setting/);

    const invalid = run(['config', 'check'], cleanEnv({ FASTIMAGECACHE_ALLOWED_PORTS: '80,http' }));
    assert.equal(invalid.status, 1);
    assert.match(invalid.stderr, /allowedPorts/);
  });
});

describe('sign', () => {
  test('prints one signed path per source URL, verifiable with the key', () => {
    const sources = ['https://example.com/a.jpg', 'https://example.com/b.png?x=1'];
    const r = run(['sign', ...sources], cleanEnv({ FASTIMAGECACHE_KEY: KEY_HEX }));
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    lines.forEach((line, i) => {
      const [, prefix, sig, options, source] = line.split('/');
      assert.equal(prefix, 'i');
      assert.equal(options, '_');
      assert.equal(Buffer.from(source ?? '', 'base64url').toString(), sources[i]);
      const expected = createHmac('sha256', Buffer.from(KEY_HEX, 'hex')).update(`${options}/${source}`).digest('base64url');
      assert.equal(sig, expected);
    });
  });

  test('without a configured key it uses (and creates) the generated key file', () => {
    const home = join(tmp.dir, 'signhome');
    const r = run(['sign', 'https://example.com/a.jpg'], cleanEnv({ HOME: home }));
    assert.equal(r.status, 0, r.stderr);
    const keyFile = join(home, '.local', 'state', 'fastimagecache', 'signing.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const key = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'hex');
    const [, , sig, options, source] = r.stdout.trim().split('/');
    assert.equal(sig, createHmac('sha256', key).update(`${options}/${source}`).digest('base64url'));
  });

  test('refuses a non-URL with a usage error', () => {
    const r = run(['sign', 'not a url'], cleanEnv({ FASTIMAGECACHE_KEY: KEY_HEX }));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /not an absolute URL/);
  });
});

test('help and unknown commands', () => {
  const help = run(['help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /fastimagecache serve/);
  const bad = run(['frobnicate']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command/);
});

test('the package bin runs the compiled CLI', { skip: existsSync(join(ROOT, 'dist', 'cli', 'main.js')) ? false : 'dist/ not built (npm run build)' }, () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'fastimagecache.js'), 'help'], { encoding: 'utf8', env: cleanEnv() });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /fastimagecache sign/);
});

test('serve: first start with embedded defaults creates the cache and key privately, serves, and stops on SIGTERM', async () => {
  const home = join(tmp.dir, 'servehome');
  const xdgCache = join(tmp.dir, 'xdg-cache');
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0'], {
    env: cleanEnv({ HOME: home, XDG_CACHE_HOME: xdgCache, FASTIMAGECACHE_LOG_LEVEL: 'warn' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const banner = await waitForBanner(child, 15_000);
  const { url } = banner;
  const stderr = banner.stderr();
  try {
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const cacheDir = join(xdgCache, 'fastimagecache');
    assert.match(stderr, new RegExp(`cache: +${cacheDir}`));
    assert.match(stderr, /config: +\(embedded defaults\)/);
    assert.match(stderr, /https only, ports 80,443, private networks denied/);
    assert.match(stderr, /generated a new signing key/);
    assert.equal(statSync(cacheDir).mode & 0o777, 0o700);
    const keyFile = join(home, '.local', 'state', 'fastimagecache', 'signing.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    // Secure by default: a loopback origin is refused even when correctly signed.
    const sign = spawnSync(process.execPath, [CLI, 'sign', 'https://127.0.0.1/x.png'], { env: cleanEnv({ HOME: home }), encoding: 'utf8' });
    const res = await fetch(url + sign.stdout.trim());
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: string }).error, 'address_denied');
  } finally {
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => { resolve(code); }));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
});
