import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { makeTempDir } from '../helpers/tmp.ts';

const UNIT = join(import.meta.dirname, '..', '..', 'deploy', 'fastimagecache.service');
const text = readFileSync(UNIT, 'utf8');

/** Every `Key=value` line of the [Service] section, in order (keys may repeat). */
function serviceDirectives(): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) {
      section = header[1];
      continue;
    }
    const eq = line.indexOf('=');
    if (section === 'Service' && eq > 0) out.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return out;
}

const directives = serviceDirectives();
const values = (key: string): string[] => directives.filter(([k]) => k === key).map(([, v]) => v);
const value = (key: string): string | undefined => values(key).at(-1);

describe('deploy/fastimagecache.service', () => {
  test('has the sandboxing the README promises', () => {
    assert.equal(value('NoNewPrivileges'), 'yes');
    assert.equal(value('ProtectSystem'), 'strict');
    assert.equal(value('PrivateTmp'), 'yes');
    assert.equal(value('ProtectHome'), 'yes');
    assert.equal(value('CapabilityBoundingSet'), '');
    assert.equal(value('UMask'), '0077');
    const user = value('User');
    assert.ok(user !== undefined && user !== 'root' && user !== '0', 'runs as a dedicated user');
    assert.equal(value('DynamicUser'), undefined);
  });

  test('may write to the cache directory only, and that is the directory the server uses', () => {
    const writable = values('ReadWritePaths').flatMap((v) => v.split(/\s+/)).filter((v) => v !== '');
    assert.deepEqual(writable, ['/var/cache/fastimagecache']);
    assert.ok(values('Environment').includes(`FASTIMAGECACHE_CACHE_DIR=${writable[0] ?? ''}`));
    assert.equal(`/var/cache/${value('CacheDirectory') ?? ''}`, writable[0]);
    assert.equal(value('CacheDirectoryMode'), '0700');
    for (const other of ['StateDirectory', 'LogsDirectory', 'RuntimeDirectory', 'BindPaths']) {
      assert.equal(value(other), undefined, `${other} would add a writable path`);
    }
  });

  test('gates the start on doctor', () => {
    assert.match(value('ExecStartPre') ?? '', / doctor$/);
    assert.match(value('ExecStart') ?? '', / serve$/);
  });

  test('systemd-analyze verify passes', (t) => {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) {
      t.skip('systemd-analyze is not installed here: the unit file was not verified');
      return;
    }
    let unit = UNIT;
    const node = /^(\S+)/.exec(value('ExecStart') ?? '')?.[1] ?? '';
    if (!existsSync(node)) {
      // verify insists that the program exists; only the program path changes, every directive is checked as written.
      const tmp = makeTempDir('fic-unit-');
      t.after(tmp.cleanup);
      unit = join(tmp.dir, 'fastimagecache.service');
      writeFileSync(unit, text.replaceAll(`${node} `, `${process.execPath} `));
      t.diagnostic(`${node} does not exist here; verified a copy that runs ${process.execPath} instead`);
    }
    const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    // Unknown or misspelt directives are only warnings for systemd: treat them as failures.
    assert.doesNotMatch(r.stderr, /Unknown|Invalid|Failed|ignoring/i, r.stderr);
  });
});
