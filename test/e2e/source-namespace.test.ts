/**
 * Settings that change what is stored for a source (here stripMetadata) are
 * part of the source's cache key: after changing them (a reload), the next
 * request is a miss served under the new settings, with no purge.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { sourceNamespaceFrom } from '../../src/cache-config.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { startService, type TestService } from '../ops/service-helper.ts';

let origin: Origin;
let photo: Buffer;
let proxy: TestService;
const tmp = makeTempDir('fic-source-ns-');
const configFile = join(tmp.dir, 'config.yaml');

before(async () => {
  origin = await startOrigin();
  const plain = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 80, b: 20 } } }).jpeg().toBuffer();
  photo = await sharp(plain).withExif({ IFD0: { Copyright: 'where-the-cat-lives' } }).jpeg().toBuffer();
  assert.ok(photo.includes('where-the-cat-lives'), 'the source carries EXIF');
  origin.serve('/cat.jpg', photo, { contentType: 'image/jpeg', headers: { 'Cache-Control': 'max-age=3600' } });
  writeFileSync(configFile, 'stripMetadata: true\n');
  proxy = await startService({ configFile, dir: { dir: tmp.dir, cleanup: () => {} } });
});
after(async () => {
  await proxy.close();
  await origin.close();
  tmp.cleanup();
});

async function get(): Promise<{ xCache: string | null; body: Buffer }> {
  const res = await fetch(proxy.signedUrl(`${origin.url}/cat.jpg`));
  assert.equal(res.status, 200);
  return { xCache: res.headers.get('x-cache'), body: Buffer.from(await res.arrayBuffer()) };
}

async function reloadWith(yaml: string): Promise<void> {
  writeFileSync(configFile, yaml);
  const outcome = await proxy.service.reload();
  assert.equal(outcome.outcome, 'applied');
}

test('flipping stripMetadata: the next request is a MISS with the newly processed bytes; flipping back finds the old entry', async () => {
  const stripped = await get();
  assert.equal(stripped.xCache, 'MISS');
  assert.ok(!stripped.body.includes('where-the-cat-lives'), 'metadata stripped');
  assert.equal((await get()).xCache, 'HIT');
  assert.equal(origin.hits('/cat.jpg'), 1);

  await reloadWith('stripMetadata: false\n');
  const asSent = await get();
  assert.equal(asSent.xCache, 'MISS', 'the source stored under the old setting is not served');
  assert.deepEqual(asSent.body, photo, 'the bytes as the origin sent them, EXIF included');
  assert.equal(origin.hits('/cat.jpg'), 2);
  const again = await get();
  assert.equal(again.xCache, 'HIT');
  assert.deepEqual(again.body, photo);

  // Each setting has its own entry: back to stripping serves the stripped copy stored before.
  await reloadWith('stripMetadata: true\n');
  const back = await get();
  assert.equal(back.xCache, 'HIT');
  assert.deepEqual(back.body, stripped.body);
  assert.equal(origin.hits('/cat.jpg'), 2);

  // A purge of the URL removes the source under every setting.
  assert.equal((await proxy.service.purge({ sourceUrl: `${origin.url}/cat.jpg` })).removed, 2);
});

test('the source namespace covers stripMetadata, svg and inputFormats (in any order), and nothing else', () => {
  const base = { stripMetadata: true, svg: 'refuse', inputFormats: ['jpeg', 'png', 'gif', 'webp'] } as const;
  const ns = (changes: object) => sourceNamespaceFrom({ ...base, inputFormats: [...base.inputFormats], ...changes });
  assert.equal(ns({ inputFormats: ['webp', 'gif', 'png', 'jpeg', 'png'] }), ns({}), 'order and repeats do not matter');
  assert.notEqual(ns({ stripMetadata: false }), ns({}));
  assert.notEqual(ns({ svg: 'rasterize' }), ns({}));
  assert.notEqual(ns({ inputFormats: ['jpeg', 'png', 'gif', 'webp', 'avif'] }), ns({}));
  assert.equal(ns({ clientMaxAge: 5 }), ns({}), 'settings that do not change stored sources are not in it');
});
