import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { compareVersions, libvipsFromExports, parseOutdated } from '../../scripts/deps-check.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const SCRIPT = join(ROOT, 'scripts', 'deps-check.ts');
const tmp = makeTempDir('fic-deps-');
after(tmp.cleanup);

function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const direct = [...Object.keys(pkg.dependencies), ...Object.keys(pkg.devDependencies)];
/** The prebuilt libvips package installed for this platform (linux-x64, linuxmusl-arm64, darwin-arm64…). */
const libvipsDir = readdirSync(join(ROOT, 'node_modules', '@img')).find((n) => n.startsWith('sharp-libvips-') && !n.endsWith('-dev'));
const libvipsPackage = `@img/${libvipsDir ?? 'sharp-libvips-unknown'}`;

function bump(version: string, part: 'major' | 'patch'): string {
  const [major = 0, minor = 0, patch = 0] = version.split('-')[0]?.split('.').map(Number) ?? [];
  return part === 'major' ? `${major + 1}.0.0` : `${major}.${minor}.${patch + 1}`;
}

/**
 * A minimal npm registry on 127.0.0.1 (what `npm outdated` and `npm view`
 * read): every direct dependency at its installed version, unless `latest`
 * says otherwise, and the prebuilt libvips package carrying `libvips`.
 */
async function startRegistry(latest: Record<string, string>, libvips: string): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0] ?? '');
    const versions: Record<string, Record<string, unknown>> = {};
    let newest: string;
    if (name === libvipsPackage) {
      newest = '9.9.9';
      versions[newest] = { name, version: newest, exports: { './binary': `./lib/libvips-cpp.so.${libvips}` } };
    } else if (direct.includes(name)) {
      const current = installedVersion(name);
      newest = latest[name] ?? current;
      for (const v of new Set([current, newest])) versions[v] = { name, version: v, dist: { tarball: `http://127.0.0.1/${name}-${v}.tgz` } };
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ name, 'dist-tags': { latest: newest }, versions }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => { resolve(); })),
  };
}

function runScript(registry: string, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT, ...args], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: tmp.dir,
        npm_config_registry: registry,
        npm_config_cache: join(tmp.dir, 'npm-cache'),
        npm_config_fetch_retries: '0',
        npm_config_update_notifier: 'false',
      },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => {
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const skip = spawnSync('npm', ['--version']).status !== 0
  ? 'npm is not on PATH'
  : libvipsDir ? false : 'no prebuilt libvips package installed (sharp built from source)';

describe('npm run deps:check', { skip }, () => {
  const vips = sharp.versions.vips;

  test('everything current: exit 0', async () => {
    const registry = await startRegistry({}, vips);
    try {
      const r = await runScript(registry.url);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /direct dependencies: all current/);
      assert.match(r.stdout, new RegExp(`libvips: sharp bundles ${vips.replace(/\./g, '\\.')}, the newest`));
    } finally {
      await registry.close();
    }
  });

  test('a newer release of a direct dependency and a newer libvips: listed, exit 1', async () => {
    const newerVips = bump(vips, 'patch');
    const pino = bump(installedVersion('pino'), 'major');
    const registry = await startRegistry({ pino }, newerVips);
    try {
      const r = await runScript(registry.url, ['--json']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      const report = JSON.parse(r.stdout) as { outdated: Array<{ name: string; latest: string; major: boolean }>; libvips: { newest: string; outdated: boolean } };
      assert.deepEqual(report.outdated.map((d) => [d.name, d.latest, d.major]), [['pino', pino, true]]);
      assert.equal(report.libvips.newest, newerVips);
      assert.equal(report.libvips.outdated, true);
    } finally {
      await registry.close();
    }
  });

  test('registry unreachable: says so, no stack trace, exit 2', async () => {
    const registry = await startRegistry({}, vips);
    await registry.close(); // nothing listens there any more
    const r = await runScript(registry.url);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout, /could not check: npm outdated failed \(ECONNREFUSED/);
    assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at /);
  });
});

describe('deps:check parsing', () => {
  test('versions compare numerically; a pre-release sorts before its release', () => {
    assert.equal(compareVersions('8.18.7', '8.18.10'), -1);
    assert.equal(compareVersions('10.0.0', '9.9.9'), 1);
    assert.equal(compareVersions('1.2.3-rc.1', '1.2.3'), -1);
    assert.equal(compareVersions('1.2.3', '1.2.3'), 0);
  });

  test('a "latest" tag older than the installed version is no upgrade', () => {
    const json = JSON.stringify({
      undici: { current: '8.12.4', wanted: '8.12.4', latest: '7.30.2' },
      typescript: { current: '5.9.3', wanted: '5.9.3', latest: '7.0.2' },
    });
    assert.deepEqual(parseOutdated(json).map((d) => d.name), ['typescript']);
  });

  test('the libvips version is read from the prebuilt package exports (Linux and macOS names)', () => {
    assert.equal(libvipsFromExports({ './binary': './lib/libvips-cpp.so.8.18.7' }), '8.18.7');
    assert.equal(libvipsFromExports({ './binary': './lib/libvips-cpp.8.17.1.dylib' }), '8.17.1');
    assert.equal(libvipsFromExports({ '.': './lib/index.js' }), undefined);
  });
});
