import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

test('the lockfile is in the repository and CI installs exactly it (npm ci)', (t) => {
  const tracked = spawnSync('git', ['ls-files', '--error-unmatch', 'package-lock.json'], { cwd: ROOT, encoding: 'utf8' });
  if (tracked.error !== undefined || /not a git repository/.test(tracked.stderr)) {
    t.skip('not a git checkout: cannot tell whether the lockfile is committed');
  } else {
    assert.equal(tracked.status, 0, 'package-lock.json is committed');
  }
  const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string }> };
  const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
  for (const [name, version] of Object.entries(pkg.dependencies)) {
    assert.equal(lock.packages[`node_modules/${name}`]?.version, version.replace(/^[\^~]/, ''), `${name} is locked at its pinned version`);
  }
  assert.match(read('.ci/run'), /^npm ci$/m);
  assert.doesNotMatch(read('.ci/run'), /^npm install/m);
});

test('runtime dependencies are pinned to exact versions', () => {
  const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
  for (const [name, range] of Object.entries(pkg.dependencies)) assert.match(range, /^\d+\.\d+\.\d+$/, `${name}@${range}`);
});

test('Renovate groups updates, keeps sharp with libvips, and labels security fixes', () => {
  const config = JSON.parse(read('renovate.json')) as {
    vulnerabilityAlerts?: { labels?: string[]; enabled?: boolean };
    osvVulnerabilityAlerts?: boolean;
    packageRules?: Array<{ matchPackageNames?: string[]; groupName?: string }>;
  };
  assert.ok(config.vulnerabilityAlerts?.labels?.includes('security'));
  assert.notEqual(config.vulnerabilityAlerts?.enabled, false);
  assert.equal(config.osvVulnerabilityAlerts, true);
  const native = config.packageRules?.find((r) => r.matchPackageNames?.includes('sharp'));
  assert.ok(native?.groupName, 'sharp is in a group');
  assert.ok(native.matchPackageNames?.some((p) => p.startsWith('@img/')), 'the prebuilt libvips packages are in the same group');
});

test('SECURITY.md says how to report and how updates are tested', () => {
  const text = read('SECURITY.md');
  assert.match(text, /## Reporting a vulnerability/);
  assert.match(text, /corpus/i);
  assert.match(text, /npm ci/);
  assert.match(text, /deps:check/);
});

test('the scripts the README names exist', () => {
  const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
  for (const name of ['lint', 'fuzz', 'deps:check', 'test']) assert.ok(scripts[name], `npm run ${name}`);
  const readme = read('README.md');
  for (const name of ['npm run lint', 'npm run fuzz', 'npm run deps:check', '## Production']) assert.ok(readme.includes(name), name);
});
