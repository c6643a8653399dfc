import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/** True when the `openssl` command is on PATH (the certificates below are made with it). */
export function hasOpenssl(): boolean {
  return spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
}

function openssl(args: string[], cwd: string): string {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** The HPKP-style pin of a PEM certificate, computed by openssl (independently of the code under test). */
export function opensslPin(certPath: string, cwd: string): string {
  const r = spawnSync(
    'sh',
    ['-c', `openssl x509 -in "${certPath}" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`],
    { cwd, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`pin computation failed: ${r.stderr}`);
  return r.stdout.trim();
}

export interface TestPki {
  caPath: string;
  caPem: string;
  leafKeyPem: string;
  leafPem: string;
  /** Pins of the leaf and of the CA, and of an unrelated key. */
  leafPin: string;
  caPin: string;
  otherPin: string;
}

/**
 * A private CA and a server certificate it signed for `localhost` and
 * 127.0.0.1, made in `dir` with openssl (P-256 keys: fast to make).
 */
export function makeTestPki(dir: string): TestPki {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=fastimagecache test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  openssl(['req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost'], dir);
  writeFileSync(
    join(dir, 'leaf.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem',
    '-days', '2', '-extfile', 'leaf.ext'], dir);
  openssl(['req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=unrelated'], dir);
  return {
    caPath: join(dir, 'ca.pem'),
    caPem: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    leafKeyPem: readFileSync(join(dir, 'leaf.key'), 'utf8'),
    leafPem: readFileSync(join(dir, 'leaf.pem'), 'utf8'),
    leafPin: opensslPin('leaf.pem', dir),
    caPin: opensslPin('ca.pem', dir),
    otherPin: opensslPin('other.pem', dir),
  };
}

export interface HttpsOrigin {
  port: number;
  /** Requests that got past the TLS handshake. */
  requests(): number;
  close(): Promise<void>;
}

/** A real HTTPS origin on 127.0.0.1 presenting the test certificate chain; every path answers `body`. */
export async function startHttpsOrigin(pki: TestPki, body: Buffer, contentType: string): Promise<HttpsOrigin> {
  let requests = 0;
  const server = https.createServer({ key: pki.leafKeyPem, cert: pki.leafPem + pki.caPem }, (_req, res) => {
    requests += 1;
    res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': body.length });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    requests: () => requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => { resolve(); }));
    },
  };
}
