import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { sourceKey } from '../../src/cache/cache-key.ts';
import { normalizeSourceUrl } from '../../src/cache/normalize-url.ts';
import { makeImage } from '../helpers/images.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

let origin: Origin;
let proxy: TestProxy;

before(async () => {
  origin = await startOrigin();
  proxy = await startProxy();
});
after(async () => {
  await proxy.close();
  await origin.close();
});

/** Every path under `dir` (files and directories), relative to it. */
function listing(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((p) => relative(dir, join(dir, p)));
}

/**
 * The spellings a plain (unkeyed) hash of a URL could take in a file name:
 * SHA-256 of the URL as given and normalized, and the cache key itself,
 * which anyone who knows the URL can compute as well.
 */
function plainHashes(url: string): string[] {
  const out: string[] = [sourceKey(normalizeSourceUrl(url)), sourceKey(normalizeSourceUrl(url)).slice(0, 16)];
  for (const text of [url, normalizeSourceUrl(url), `${url}\n`]) {
    const digest = createHash('sha256').update(text).digest();
    out.push(digest.toString('hex'), digest.toString('base64url'), digest.toString('hex').slice(0, 16));
  }
  return out;
}

test('a listing of the cache directory shows no plain SHA-256 of any cached URL', async () => {
  const png = await makeImage('png');
  const urls: string[] = [];
  for (const name of ['cat.png', 'dog.png', 'a/b/c.png?size=1']) {
    origin.serve(`/${name}`, png, { contentType: 'image/png' });
    urls.push(`${origin.url}/${name}`);
  }
  for (const url of urls) {
    const first = await fetch(proxy.signedUrl(url));
    assert.equal(first.status, 200);
    await first.arrayBuffer();
    // Served from the cache the second time: the entries really are in the directory listed below.
    const second = await fetch(proxy.signedUrl(url));
    assert.equal(second.headers.get('x-cache'), 'HIT');
    await second.arrayBuffer();
  }

  const names = listing(proxy.cacheDir);
  // Entry files: hex-named files in the fan-out directories (whatever the exact layout).
  const entryFiles = names.filter((p) => /^[0-9a-f]{2,}\//.test(p) && /[0-9a-f]{8,}$/.test(p) && statSync(join(proxy.cacheDir, p)).isFile());
  assert.ok(entryFiles.length >= urls.length, `expected entry files, got ${names.join(', ')}`);
  for (const url of urls) {
    for (const hash of plainHashes(url)) {
      for (const name of names) assert.ok(!name.includes(hash), `${name} reveals the plain hash of ${url}`);
    }
    for (const name of names) assert.ok(!name.includes(new URL(url).pathname.slice(1, 8)), `${name} reveals the path of ${url}`);
  }
  // The names are keyed by the per-directory secret, which only the service user can read.
  const secret = readFileSync(join(proxy.cacheDir, '.secret'));
  assert.equal(secret.length, 32);
});
