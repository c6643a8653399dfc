import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import sharp from 'sharp';
import { checkDecoders } from '../../src/cli/doctor-checks.ts';
import { diagnose, type DoctorReport } from '../../src/cli/doctor.ts';
import { configSchema, loadConfig } from '../../src/config/index.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'src', 'cli', 'main.ts');
const KEY_HEX = '3c'.repeat(32);
const tmp = makeTempDir('fic-doctor-');
after(tmp.cleanup);

function run(args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: join(tmp.dir, 'home'), ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
}

describe('version', () => {
  test('prints this package, Node, sharp, libvips, every codec library and undici', () => {
    const r = run(['version']);
    assert.equal(r.status, 0, r.stderr);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const undici = JSON.parse(readFileSync(join(ROOT, 'node_modules', 'undici', 'package.json'), 'utf8')) as { version: string };
    const expected: Array<[string, string | undefined]> = [
      ['fastimagecache', pkg.version],
      ['node', process.versions.node],
      ['sharp', sharp.versions.sharp],
      ['libvips', sharp.versions.vips],
      ['undici', undici.version],
      ...Object.entries(sharp.versions).filter(([name]) => name !== 'vips' && name !== 'sharp'),
    ];
    for (const [name, version] of expected) {
      assert.ok(version, `${name} has a version`);
      assert.match(r.stdout, new RegExp(`^\\s*${name}\\s+${version.replace(/\./g, '\\.')}$`, 'm'), `${name} ${version}`);
    }
  });

  test('--json gives the same facts to scripts', () => {
    const r = run(['version', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { node: string; sharp: string; libvips: string; libraries: Record<string, string> };
    assert.equal(report.node, process.versions.node);
    assert.equal(report.sharp, sharp.versions.sharp);
    assert.equal(report.libvips, sharp.versions.vips);
    assert.equal(report.libraries.heif, sharp.versions.heif);
    assert.equal(report.libraries.webp, sharp.versions.webp);
    assert.equal(report.libraries.png, sharp.versions.png);
  });
});

interface Deployment {
  dir: string;
  cacheDir: string;
  stateDir: string;
  keyFile: string;
  configFile: string;
  settings: Record<string, unknown>;
  env: Record<string, string>;
}

let counter = 0;

/** A deployment that passes every check: private directories, a 0600 key file, loopback, signing on. */
function goodDeployment(): Deployment {
  const dir = join(tmp.dir, `deploy-${counter++}`);
  const cacheDir = join(dir, 'cache');
  const stateDir = join(dir, 'state');
  mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  mkdirSync(stateDir, { mode: 0o700 });
  chmodSync(cacheDir, 0o700);
  const keyFile = join(dir, 'keys');
  writeFileSync(keyFile, `${KEY_HEX}\n`, { mode: 0o600 });
  const d: Deployment = {
    dir,
    cacheDir,
    stateDir,
    keyFile,
    configFile: join(dir, 'config.json'),
    settings: { host: '127.0.0.1', cacheDir, stateDir, keyFile },
    env: { HOME: join(dir, 'home') },
  };
  save(d);
  return d;
}

function save(d: Deployment): void {
  writeFileSync(d.configFile, JSON.stringify(d.settings));
}

function check(d: Deployment, uid?: number): DoctorReport {
  save(d);
  return diagnose({ configFile: d.configFile, env: d.env, ...(uid === undefined ? {} : { uid }) });
}

function expectFinding(report: DoctorReport, id: string, severity: string): void {
  const found = report.findings.find((f) => f.id === id);
  assert.ok(found, `expected finding ${id}; got ${report.findings.map((f) => f.id).join(', ') || 'none'}`);
  assert.equal(found.severity, severity, `${id} severity`);
  assert.ok(found.fix.length > 0, `${id} says how to fix it`);
  assert.equal(report.failed, report.findings.some((f) => f.severity === 'high'));
}

describe('doctor', () => {
  test('a good deployment: exit 0 and nothing above info', () => {
    const d = goodDeployment();
    const r = run(['doctor', '--config', d.configFile, '--json'], d.env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as DoctorReport;
    assert.deepEqual(report.findings.filter((f) => f.severity !== 'info'), []);
    assert.equal(report.failed, false);
  });

  test('a bad deployment: exit 1, each finding printed with its severity and a fix, no secret shown', () => {
    const d = goodDeployment();
    chmodSync(d.cacheDir, 0o777);
    chmodSync(d.keyFile, 0o644);
    const r = run(['doctor', '--config', d.configFile], d.env);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^HIGH\s+cache-dir-writable: .*mode 0777/m);
    assert.match(r.stdout, /^HIGH\s+key-file-mode: /m);
    assert.match(r.stdout, /fix: chmod 700 /);
    assert.match(r.stdout, /fix: chmod 600 /);
    assert.match(r.stdout, /2 high, .*exit 1/);
    assert.ok(!r.stdout.includes(KEY_HEX) && !r.stderr.includes(KEY_HEX));
  });

  test('an invalid configuration is a high finding (exit 1), naming the setting', () => {
    const d = goodDeployment();
    d.settings.maxRedirect = 2;
    save(d);
    const r = run(['doctor', '--config', d.configFile], d.env);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /HIGH\s+config-invalid: .*maxRedirect/);
  });

  test('the real deployment files are only read: doctor creates nothing', () => {
    const d = goodDeployment();
    d.settings.cacheDir = join(d.dir, 'not-yet');
    d.settings.keyFile = undefined;
    d.settings.stateDir = join(d.dir, 'no-state');
    const report = check(d);
    expectFinding(report, 'cache-dir-missing', 'info');
    expectFinding(report, 'key-not-generated', 'info');
    assert.throws(() => readFileSync(join(d.dir, 'no-state', 'signing.key')));
    assert.throws(() => readFileSync(join(d.dir, 'not-yet', '.secret')));
  });

  describe('each finding, triggered on a real temp deployment', () => {
    test('cache directory writable by others (high)', () => {
      const d = goodDeployment();
      chmodSync(d.cacheDir, 0o777);
      expectFinding(check(d), 'cache-dir-writable', 'high');
      chmodSync(d.cacheDir, 0o770);
      expectFinding(check(d), 'cache-dir-writable', 'high');
    });

    test('cache directory readable by others (medium)', () => {
      const d = goodDeployment();
      chmodSync(d.cacheDir, 0o755);
      const report = check(d);
      expectFinding(report, 'cache-dir-readable', 'medium');
      assert.equal(report.failed, false);
    });

    test('cache directory is a symlink (high)', () => {
      const d = goodDeployment();
      const link = join(d.dir, 'cache-link');
      symlinkSync(d.cacheDir, link);
      d.settings.cacheDir = link;
      expectFinding(check(d), 'cache-dir-symlink', 'high');
    });

    test('cache directory owned by another user (medium)', () => {
      const d = goodDeployment();
      if (process.getuid?.() === 0) {
        chownSync(d.cacheDir, 4242, 4242);
        expectFinding(check(d), 'cache-dir-owner', 'medium');
      } else {
        // Not root: cannot give the directory away, so run the check as another uid.
        expectFinding(check(d, (process.getuid?.() ?? 0) + 1), 'cache-dir-owner', 'medium');
      }
    });

    test('cache directory inside the public web root (high)', () => {
      const d = goodDeployment();
      const pub = join(d.dir, 'www');
      const inside = join(pub, 'img-cache');
      mkdirSync(inside, { recursive: true, mode: 0o700 });
      Object.assign(d.settings, { publicDir: pub, cacheDir: inside });
      expectFinding(check(d), 'cache-dir-public', 'high');
    });

    test('cache file-name secret readable by others (high)', () => {
      const d = goodDeployment();
      writeFileSync(join(d.cacheDir, '.secret'), Buffer.alloc(32, 1), { mode: 0o644 });
      chmodSync(join(d.cacheDir, '.secret'), 0o644);
      expectFinding(check(d), 'cache-secret-mode', 'high');
    });

    test('key file with mode 0644 (high)', () => {
      const d = goodDeployment();
      chmodSync(d.keyFile, 0o644);
      const report = check(d);
      expectFinding(report, 'key-file-mode', 'high');
      assert.equal(report.failed, true);
    });

    test('key file missing (high)', () => {
      const d = goodDeployment();
      d.settings.keyFile = join(d.dir, 'no-such-keys');
      expectFinding(check(d), 'key-file-missing', 'high');
    });

    test('key file with a short key (high)', () => {
      const d = goodDeployment();
      writeFileSync(d.keyFile, 'abcd\n');
      expectFinding(check(d), 'key-invalid', 'high');
    });

    test('generated key file made readable by others (high)', () => {
      const d = goodDeployment();
      d.settings.keyFile = undefined;
      const generated = join(d.stateDir, 'signing.key');
      writeFileSync(generated, `${KEY_HEX}\n`, { mode: 0o644 });
      chmodSync(generated, 0o644);
      expectFinding(check(d), 'key-file-mode', 'high');
    });

    test('keys from the environment rather than a file (low), and a short one (high)', () => {
      const d = goodDeployment();
      d.settings.keyFile = undefined;
      d.env.FASTIMAGECACHE_KEY = KEY_HEX;
      const report = check(d);
      expectFinding(report, 'key-in-env', 'low');
      assert.equal(report.failed, false);
      d.env.FASTIMAGECACHE_KEY = 'deadbeef';
      expectFinding(check(d), 'key-invalid', 'high');
    });

    test('signing disabled on loopback (medium, not yet an open proxy)', () => {
      const d = goodDeployment();
      d.settings.requireSignature = false;
      const report = check(d);
      expectFinding(report, 'signing-disabled', 'medium');
      assert.ok(!report.findings.some((f) => f.id === 'open-proxy'));
      assert.equal(report.failed, false);
    });

    test('listening on 0.0.0.0 without signing (high: an open proxy)', () => {
      const d = goodDeployment();
      Object.assign(d.settings, { host: '0.0.0.0', requireSignature: false });
      const report = check(d);
      expectFinding(report, 'open-proxy', 'high');
      assert.equal(report.failed, true);
    });

    test('listening on 0.0.0.0 with signing: advice only (info)', () => {
      const d = goodDeployment();
      d.settings.host = '0.0.0.0';
      const report = check(d);
      expectFinding(report, 'public-listener', 'info');
      assert.equal(report.failed, false);
    });

    test('admin listener beyond loopback (high)', (t) => {
      if (!('admin' in configSchema.shape)) {
        t.skip('this build has no admin listener settings');
        return;
      }
      const d = goodDeployment();
      d.settings.admin = { host: '0.0.0.0' };
      d.env.FASTIMAGECACHE_ADMIN_TOKEN = 'a-long-admin-token-for-tests';
      expectFinding(check(d), 'admin-exposed', 'high');
      // The same listener on loopback is fine.
      d.settings.admin = { host: '127.0.0.1' };
      assert.ok(!check(d).findings.some((f) => f.id === 'admin-exposed'));
    });

    test('private networks allowed (high)', () => {
      const d = goodDeployment();
      d.settings.allowPrivateNetworks = true;
      expectFinding(check(d), 'private-networks-allowed', 'high');
    });

    test('HTTP origins allowed (medium)', () => {
      const d = goodDeployment();
      d.settings.allowHttp = true;
      expectFinding(check(d), 'http-origins-allowed', 'medium');
    });

    test('originTls pointing at a missing CA bundle (high: the server would not start)', () => {
      const d = goodDeployment();
      d.settings.originTls = { 'images.example.com': { caFile: join(d.dir, 'missing-ca.pem') } };
      expectFinding(check(d), 'origin-tls-invalid', 'high');
    });

    test('risky decoders enabled (medium)', (t) => {
      if (!('inputFormats' in configSchema.shape)) {
        t.skip('this build has no inputFormats setting yet; the check is exercised on a config object below');
        return;
      }
      const d = goodDeployment();
      // The setting is a list of formats or a map of format → on/off, depending on the build.
      const shapes: unknown[] = [['jpeg', 'tiff'], { jpeg: true, tiff: true }];
      const shape = shapes.find((value) => {
        try {
          loadConfig({ env: d.env, overrides: { ...d.settings, inputFormats: value } });
          return true;
        } catch {
          return false;
        }
      });
      assert.ok(shape !== undefined, 'inputFormats accepts a list or a map');
      d.settings.inputFormats = shape;
      expectFinding(check(d), 'risky-decoder', 'medium');
    });

    test('the other findings: each one on its own deployment', () => {
      const cases: Array<[string, string, (d: Deployment) => void]> = [
        ['cache-dir-not-directory', 'high', (d) => {
          writeFileSync(join(d.dir, 'a-file'), '');
          d.settings.cacheDir = join(d.dir, 'a-file');
        }],
        ['key-file-not-file', 'high', (d) => {
          d.settings.keyFile = d.stateDir;
        }],
        ['key-file-ignored', 'info', (d) => {
          d.env.FASTIMAGECACHE_KEY = KEY_HEX;
        }],
        ['state-dir-mode', 'medium', (d) => {
          d.settings.keyFile = undefined;
          writeFileSync(join(d.stateDir, 'signing.key'), `${KEY_HEX}\n`, { mode: 0o600 });
          chmodSync(d.stateDir, 0o755);
        }],
        ['private-ranges-allowed', 'low', (d) => {
          d.settings.allowedPrivateRanges = ['10.1.0.0/16'];
        }],
        ['any-port', 'low', (d) => {
          d.settings.allowedPorts = '*';
        }],
        ['verbose-logging', 'low', (d) => {
          d.settings.logLevel = 'debug';
        }],
      ];
      if ('admin' in configSchema.shape) {
        cases.push(['admin-token-file-mode', 'high', (d) => {
          const file = join(d.dir, 'admin-token');
          writeFileSync(file, 'a-long-admin-token-for-tests\n', { mode: 0o644 });
          chmodSync(file, 0o644);
          d.settings.admin = { tokenFile: file };
        }]);
      }
      if ('svg' in configSchema.shape) {
        cases.push(['risky-decoder', 'medium', (d) => {
          d.settings.svg = 'rasterize';
        }]);
      }
      if ('metrics' in configSchema.shape) {
        cases.push(['metrics-public', 'low', (d) => {
          Object.assign(d.settings, { host: '0.0.0.0', metrics: { onMainListener: true } });
        }]);
      }
      for (const [id, severity, breakIt] of cases) {
        const d = goodDeployment();
        breakIt(d);
        expectFinding(check(d), id, severity);
      }
    });

    test('key file owned by another user (medium)', () => {
      const d = goodDeployment();
      if (process.getuid?.() === 0) {
        chownSync(d.keyFile, 4242, 4242);
        expectFinding(check(d), 'key-file-owner', 'medium');
      } else {
        expectFinding(check(d, (process.getuid?.() ?? 0) + 1), 'key-file-owner', 'medium');
      }
    });

    test('risky decoders: the check reads both shapes of inputFormats', () => {
      const { config } = loadConfig({ env: { HOME: tmp.dir } });
      for (const inputFormats of [['jpeg', 'avif'], { jpeg: true, avif: true, tiff: false }]) {
        const findings = checkDecoders({ config: { ...config, inputFormats } as typeof config, uid: undefined });
        assert.deepEqual(findings.map((f) => [f.id, f.severity]), [['risky-decoder', 'medium']]);
        assert.match(findings[0]?.message ?? '', /avif/);
      }
      const safe: Record<string, unknown> = { ...config, inputFormats: ['jpeg', 'png'] };
      assert.deepEqual(checkDecoders({ config: safe as typeof config, uid: undefined }), []);
    });
  });
});
