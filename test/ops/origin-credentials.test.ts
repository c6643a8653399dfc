import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/index.ts';
import { resolveOriginCredentials } from '../../src/config/origin-credentials.ts';
import { credentialHeadersFor, originHostOf } from '../../src/download/origin-credentials.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { testSettings } from '../helpers/proxy.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { capturingLogger, startService, type TestService } from './service-helper.ts';

const TOKEN = 'Bearer origin-secret-0123456789';
const API_KEY = 'api-key-from-a-file-9876543210';

describe('per-origin credentials', () => {
  let withCredentials: Origin;
  let elsewhere: Origin;
  let proxy: TestService;
  let logs: ReturnType<typeof capturingLogger>;
  let png: Buffer;

  before(async () => {
    withCredentials = await startOrigin();
    elsewhere = await startOrigin();
    png = await makeImage('png', 8, 8);
    const tmp = makeTempDir('fic-cred-');
    const keyFile = join(tmp.dir, 'api-key');
    writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
    logs = capturingLogger();
    // Both origins are 127.0.0.1: what tells them apart is the port, which is part of the host identity.
    proxy = await startService({
      dir: tmp,
      logger: logs.logger,
      env: { IMAGES_AUTH: TOKEN },
      settings: {
        rateLimit: { perSecond: 0 },
        originCredentials: {
          [`127.0.0.1:${withCredentials.port}`]: { Authorization: { env: 'IMAGES_AUTH' }, 'X-Api-Key': { file: keyFile } },
        },
      },
    });
  });
  after(async () => {
    await proxy.close();
    await withCredentials.close();
    await elsewhere.close();
  });

  test('sent to their origin host only', async () => {
    withCredentials.serve('/mine.png', png, { contentType: 'image/png' });
    elsewhere.serve('/theirs.png', png, { contentType: 'image/png' });
    assert.equal((await fetch(proxy.signedUrl(`${withCredentials.url}/mine.png`))).status, 200);
    assert.equal((await fetch(proxy.signedUrl(`${elsewhere.url}/theirs.png`))).status, 200);
    const mine = withCredentials.lastRequestHeaders('/mine.png');
    assert.ok(mine);
    assert.equal(mine.authorization, TOKEN);
    assert.equal(mine['x-api-key'], API_KEY);
    const theirs = elsewhere.lastRequestHeaders('/theirs.png');
    assert.equal(theirs?.authorization, undefined);
    assert.equal(theirs?.['x-api-key'], undefined);
  });

  test('not sent after a redirect to another host, sent again when a redirect comes back', async () => {
    withCredentials.redirect('/away.png', `${elsewhere.url}/landing.png`);
    elsewhere.serve('/landing.png', png, { contentType: 'image/png' });
    assert.equal((await fetch(proxy.signedUrl(`${withCredentials.url}/away.png`))).status, 200);
    assert.equal(withCredentials.lastRequestHeaders('/away.png')?.authorization, TOKEN);
    const landed = elsewhere.lastRequestHeaders('/landing.png');
    assert.ok(landed, 'the redirect was followed');
    assert.equal(landed.authorization, undefined);
    assert.equal(landed['x-api-key'], undefined);

    elsewhere.redirect('/back.png', `${withCredentials.url}/home.png`);
    withCredentials.serve('/home.png', png, { contentType: 'image/png' });
    assert.equal((await fetch(proxy.signedUrl(`${elsewhere.url}/back.png`))).status, 200);
    assert.equal(elsewhere.lastRequestHeaders('/back.png')?.authorization, undefined);
    assert.equal(withCredentials.lastRequestHeaders('/home.png')?.authorization, TOKEN);
  });

  test('never logged', () => {
    assert.ok(logs.lines.length > 0);
    assert.ok(!logs.text().includes('origin-secret'), 'the token is not in the logs');
    assert.ok(!logs.text().includes(API_KEY), 'the file value is not in the logs');
  });
});

describe('credential configuration', () => {
  const tmp = makeTempDir('fic-credcfg-');
  after(() => { tmp.cleanup(); });
  const base = testSettings(tmp.dir);

  test('host identity: host alone for default ports, host:port otherwise', () => {
    assert.equal(originHostOf('Images.Example.com'), 'images.example.com');
    assert.equal(originHostOf('images.example.com:443'), 'images.example.com');
    assert.equal(originHostOf('images.example.com:8443'), 'images.example.com:8443');
    const creds = new Map([['images.example.com', { authorization: 'x' }]]);
    assert.deepEqual(credentialHeadersFor(creds, new URL('https://images.example.com/a')), { authorization: 'x' });
    assert.deepEqual(credentialHeadersFor(creds, new URL('https://images.example.com:8443/a')), {});
    assert.deepEqual(credentialHeadersFor(creds, new URL('https://evil.images.example.com/a')), {});
  });

  test('a value cannot be written in the config itself', () => {
    assert.throws(
      () => loadConfig({ env: { HOME: tmp.dir }, overrides: { ...base, originCredentials: { 'a.example': { Authorization: 'Bearer x' } } } }),
      /originCredentials/,
    );
  });

  test('a missing variable, a file others can read, or a reserved header is refused', () => {
    const config = (settings: Record<string, unknown>) =>
      loadConfig({ env: { HOME: tmp.dir }, overrides: { ...base, originCredentials: settings } }).config;
    assert.throws(() => resolveOriginCredentials(config({ 'a.example': { Authorization: { env: 'NOPE_NOT_SET' } } }), {}), /not set/);
    const open = join(tmp.dir, 'open-token');
    writeFileSync(open, 'x');
    chmodSync(open, 0o644);
    assert.throws(() => resolveOriginCredentials(config({ 'a.example': { Authorization: { file: open } } }), {}), /chmod 600/);
    assert.throws(() => resolveOriginCredentials(config({ 'a.example': { Host: { env: 'X' } } }), { X: 'y' }), /set by fastimagecache/);
    assert.throws(() => resolveOriginCredentials(config({ 'a.example': { Authorization: { env: 'X' } } }), { X: 'a\r\nInjected: 1' }), /line break/);
  });
});

test('the logger redacts credentials and authorization headers wherever they sit', () => {
  const logs = capturingLogger();
  logs.logger.info({ credentials: { 'a.example': 'v1' }, headers: { authorization: 'Bearer v2' }, req: { headers: { authorization: 'v3' } } }, 'x');
  assert.ok(!/v1|v2|v3/.test(logs.text()), logs.text());
});
