import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadConfig } from '../../src/config/index.ts';
import { diffConfig, effectiveAfterReload } from '../../src/config/reload.ts';
import { testSettings } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';

const tmp = makeTempDir('fic-reload-');
after(() => { tmp.cleanup(); });
const load = (settings: Record<string, unknown>, env: Record<string, string> = {}) =>
  loadConfig({ env: { HOME: tmp.dir, ...env }, overrides: { ...testSettings(tmp.dir), ...settings } }).config;

test('the diff names nested settings and never shows a secret', () => {
  const before = load({}, { FASTIMAGECACHE_ADMIN_TOKEN: 'first-token-0123456789' });
  const after = load({ rateLimit: { perSecond: 7 }, clientMaxAge: 5 }, { FASTIMAGECACHE_ADMIN_TOKEN: 'second-token-0123456789' });
  const changes = diffConfig(before, after);
  assert.deepEqual(changes.map((c) => c.setting).sort(), ['admin.token', 'clientMaxAge', 'rateLimit.perSecond']);
  assert.deepEqual(changes.find((c) => c.setting === 'admin.token'), { setting: 'admin.token', from: '[redacted]', to: '[redacted]' });
  assert.deepEqual(changes.find((c) => c.setting === 'rateLimit.perSecond'), { setting: 'rateLimit.perSecond', from: 50, to: 7 });
  assert.ok(!JSON.stringify(changes).includes('token-0123'));
  assert.deepEqual(diffConfig(before, before), []);
});

test('settings that need a restart keep their running values and are reported', () => {
  const running = load({ port: 8080, clientMaxAge: 1 });
  const loaded = load({ port: 9090, clientMaxAge: 2, admin: { port: 9999 } });
  const { config, restartNeeded } = effectiveAfterReload(running, loaded);
  assert.deepEqual(restartNeeded.sort(), ['admin.port', 'port']);
  assert.equal(config.port, 8080);
  assert.equal(config.admin.port, 8081);
  assert.equal(config.clientMaxAge, 2);
  const clustered = effectiveAfterReload(running, load({ port: 8080, maxEntries: 10 }), ['maxEntries']);
  assert.deepEqual(clustered.restartNeeded, ['maxEntries']);
  assert.equal(clustered.config.maxEntries, undefined);
});
