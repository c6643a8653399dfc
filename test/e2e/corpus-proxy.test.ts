import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadCorpus } from '../helpers/corpus.ts';
import { startOrigin, type Origin } from '../helpers/origin.ts';
import { startProxy, type TestProxy } from '../helpers/proxy.ts';

/**
 * Every real-world file of ../shared/corpus through the whole server, served
 * by a real origin that lies about the type (application/octet-stream), and
 * requested twice: accepted files must come back byte-identical with the
 * manifest's type and be a cache HIT the second time; refused files must be
 * refused both times with the origin asked both times (never cached), and
 * the server must still be healthy afterwards.
 */
const corpus = loadCorpus();
const skip = 'skip' in corpus ? corpus.skip : false;

describe('corpus through the proxy', { skip }, () => {
  if ('skip' in corpus) return;
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

  for (const row of corpus.rows) {
    const accept = row.expect === 'accept' || row.expect === 'accept-at-limit';
    test(`${row.expect}: ${row.path}`, async () => {
      const body = readFileSync(join(corpus.root, row.path));
      const path = `/corpus/${encodeURIComponent(row.path)}`;
      origin.serve(path, body, { contentType: 'application/octet-stream' });
      const url = proxy.signedUrl(origin.url + path);

      const first = await fetch(url);
      const firstBody = Buffer.from(await first.arrayBuffer());
      const second = await fetch(url);
      const secondBody = Buffer.from(await second.arrayBuffer());

      if (accept) {
        assert.equal(first.status, 200, `first: ${firstBody.toString('utf8', 0, 200)}`);
        assert.equal(first.headers.get('content-type'), row.content_type);
        assert.ok(firstBody.equals(body), 'served bytes differ from the origin');
        assert.equal(second.status, 200);
        assert.equal(second.headers.get('x-cache'), 'HIT');
        assert.ok(secondBody.equals(body));
        assert.equal(origin.hits(path), 1);
      } else {
        // reject, reject-or-passthrough (we reject), and policy (SVG is refused for now)
        assert.ok(first.status >= 400, `expected a refusal, got ${first.status}`);
        assert.ok([413, 415].includes(first.status), `status ${first.status}`);
        assert.match(first.headers.get('content-type') ?? '', /^application\/json/);
        assert.equal(second.status, first.status);
        assert.equal(origin.hits(path), 2, 'a refused file must not be cached');
      }
    });
  }

  test('the server is still healthy after the whole corpus', async () => {
    assert.equal((await fetch(`${proxy.url}/healthz`)).status, 200);
  });
});
