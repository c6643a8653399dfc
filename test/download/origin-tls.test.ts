import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createDownloader } from '../../src/download/downloader.ts';
import type { OriginTlsConfig } from '../../src/download/tls-options.ts';
import type { Downloader, DownloadPolicy } from '../../src/download/types.ts';
import { ConfigError } from '../../src/errors.ts';
import { createLogger, silentLogger, type Logger } from '../../src/log.ts';
import { startProxy } from '../helpers/proxy.ts';
import { hasOpenssl, makeTestPki, startHttpsOrigin, type HttpsOrigin, type TestPki } from '../helpers/tls-certs.ts';
import { makeImage } from '../helpers/images.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { expectRefusal } from '../helpers/refusal.ts';

const skip = hasOpenssl() ? false : 'openssl is not installed: cannot make the test certificates';

function policy(originTls: OriginTlsConfig | undefined): DownloadPolicy {
  return {
    allowHttp: false,
    allowedPorts: '*',
    allowedHosts: [],
    deniedHosts: [],
    allowPrivateNetworks: false,
    allowedPrivateRanges: ['127.0.0.1/32'],
    maxRedirects: 0,
    maxBytes: 1024 * 1024,
    connectTimeoutMs: 3000,
    headersTimeoutMs: 3000,
    totalTimeoutMs: 5000,
    userAgent: 'fastimagecache-test',
    ...(originTls ? { originTls } : {}),
  };
}

/** A logger whose JSON lines are kept for assertions. */
function capturingLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    logger: createLogger('debug', sink),
    lines: () => chunks.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const refusal = expectRefusal;

describe('per-origin TLS: extra CA and SPKI pinning', { skip }, () => {
  const tmp = makeTempDir('fic-tls-');
  let pki: TestPki;
  let origin: HttpsOrigin;
  const downloaders: Downloader[] = [];
  const body = Buffer.from('pinned bytes');

  before(async () => {
    pki = makeTestPki(tmp.dir);
    origin = await startHttpsOrigin(pki, body, 'image/png');
  });
  after(async () => {
    await Promise.all(downloaders.map((d) => d.close()));
    await origin.close();
    tmp.cleanup();
  });

  function downloader(originTls?: OriginTlsConfig, logger: Logger = silentLogger()): Downloader {
    const d = createDownloader(policy(originTls), logger);
    downloaders.push(d);
    return d;
  }
  const fetchFrom = (d: Downloader, host = 'localhost') => d.fetch({ url: new URL(`https://${host}:${origin.port}/x.png`) });

  test('the test CA is unknown by default: refused like any TLS failure', async () => {
    const before = origin.requests();
    const err = await refusal(fetchFrom(downloader()), 'origin_error');
    assert.match(err.detail ?? '', /certificate|CERT|issuer/i);
    assert.equal(origin.requests(), before, 'no HTTP request may reach an unverified origin');
  });

  test('the extra CA bundle makes that origin trusted', async () => {
    const result = await fetchFrom(downloader({ localhost: { caFile: pki.caPath } }));
    assert.equal(result.body.toString(), body.toString());
  });

  test('the extra CA is trusted only for the host it is configured for', async () => {
    await refusal(fetchFrom(downloader({ 'images.example.com': { caFile: pki.caPath } })), 'origin_error');
    // 127.0.0.1 is the same server, but not the configured host name.
    await refusal(fetchFrom(downloader({ localhost: { caFile: pki.caPath } }), '127.0.0.1'), 'origin_error');
  });

  test('a wildcard entry covers subdomains, not other hosts', async () => {
    // localhost has no subdomain form here, so the wildcard must not match it.
    await refusal(fetchFrom(downloader({ '*.localhost': { caFile: pki.caPath } })), 'origin_error');
  });

  test('the right pin (leaf key, computed by openssl) is accepted', async () => {
    const result = await fetchFrom(downloader({ localhost: { caFile: pki.caPath, pins: [pki.leafPin] } }));
    assert.equal(result.body.toString(), body.toString());
  });

  test('a pin of the issuing CA key is accepted too (any key of the chain, as in HPKP)', async () => {
    const result = await fetchFrom(downloader({ localhost: { caFile: pki.caPath, pins: [`sha256/${pki.caPin}`] } }));
    assert.equal(result.body.toString(), body.toString());
  });

  test('a wrong pin is refused before any request, and logged', async () => {
    const { logger, lines } = capturingLogger();
    const before = origin.requests();
    const err = await refusal(
      fetchFrom(downloader({ localhost: { caFile: pki.caPath, pins: [pki.otherPin] } }, logger)),
      'origin_error',
    );
    assert.match(err.detail ?? '', /pin/i);
    assert.equal(origin.requests(), before);
    const warning = lines().find((l) => typeof l.msg === 'string' && l.msg.includes('pins'));
    assert.ok(warning, 'the mismatch is logged');
    assert.equal(warning.host, 'localhost');
  });

  test('bad settings stop start-up with the setting named', () => {
    assert.throws(() => downloader({ localhost: { caFile: `${tmp.dir}/missing.pem` } }), (err: unknown) =>
      err instanceof ConfigError && err.key === 'originTls.localhost.caFile');
    assert.throws(() => downloader({ localhost: { pins: ['not-a-pin'] } }), (err: unknown) =>
      err instanceof ConfigError && err.key === 'originTls.localhost.pins');
  });

  test('through the proxy: the originTls setting pins, and a mismatch is 502 origin_error', async () => {
    const png = await makeImage('png');
    const imageOrigin = await startHttpsOrigin(pki, png, 'image/png');
    const source = `https://localhost:${imageOrigin.port}/cat.png`;
    const good = await startProxy({ allowHttp: false, originTls: { localhost: { caFile: pki.caPath, pins: [pki.leafPin] } } });
    const bad = await startProxy({ allowHttp: false, originTls: { localhost: { caFile: pki.caPath, pins: [pki.otherPin] } } });
    try {
      const ok = await fetch(good.signedUrl(source));
      assert.equal(ok.status, 200);
      assert.deepEqual(Buffer.from(await ok.arrayBuffer()), png);
      const refused = await fetch(bad.signedUrl(source));
      assert.equal(refused.status, 502);
      assert.equal(((await refused.json()) as { error: string }).error, 'origin_error');
    } finally {
      await good.close();
      await bad.close();
      await imageOrigin.close();
    }
  });
});
