import type { DownloadPolicy } from '../../src/download/types.ts';

/** A download policy for tests: the loopback origin allowed explicitly (http, any port, 127.0.0.1 only), short timeouts. */
export function loopbackPolicy(overrides: Partial<DownloadPolicy> = {}): DownloadPolicy {
  return {
    allowHttp: true,
    allowedPorts: '*',
    allowedHosts: [],
    deniedHosts: [],
    allowPrivateNetworks: false,
    allowedPrivateRanges: ['127.0.0.1/32'],
    maxRedirects: 3,
    maxBytes: 64 * 1024,
    connectTimeoutMs: 2000,
    headersTimeoutMs: 2000,
    totalTimeoutMs: 5000,
    userAgent: 'fastimagecache-test/1.0',
    ...overrides,
  };
}
