import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSourceUrl, hostMatches } from '../../src/download/url-policy.ts';
import type { DownloadPolicy } from '../../src/download/types.ts';
import { FastImageCacheError, type ErrorCode } from '../../src/errors.ts';

function policy(overrides: Partial<DownloadPolicy> = {}): DownloadPolicy {
  return {
    allowHttp: false,
    allowedPorts: [80, 443],
    allowedHosts: [],
    deniedHosts: [],
    allowPrivateNetworks: false,
    allowedPrivateRanges: [],
    maxRedirects: 3,
    maxBytes: 1024 * 1024,
    connectTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    totalTimeoutMs: 2000,
    userAgent: 'fastimagecache-test',
    ...overrides,
  };
}

function refused(raw: string, p: DownloadPolicy, code: ErrorCode): void {
  assert.throws(
    () => checkSourceUrl(raw, p),
    (err: unknown) => err instanceof FastImageCacheError && err.code === code,
    `${raw} must be refused with ${code}`,
  );
}

describe('checkSourceUrl: shape of the URL', () => {
  test('accepts a plain https URL and returns it parsed', () => {
    const url = checkSourceUrl('https://images.example.com/a/b.jpg?w=1', policy());
    assert.equal(url.hostname, 'images.example.com');
    assert.equal(url.search, '?w=1');
  });

  test('refuses URLs over 8192 characters, accepts one at the limit', () => {
    const base = 'https://example.com/';
    checkSourceUrl(base + 'a'.repeat(8192 - base.length), policy());
    refused(base + 'a'.repeat(8193 - base.length), policy(), 'bad_url');
  });

  test('refuses unparsable and relative URLs', () => {
    for (const raw of ['', 'not a url', '/relative/path.jpg', '//example.com/x.jpg', 'https://', 'http://[::1/']) {
      refused(raw, policy({ allowHttp: true }), 'bad_url');
    }
  });

  test('refuses userinfo, even an empty password or a user alone', () => {
    for (const raw of ['https://user:pass@example.com/', 'https://user@example.com/', 'https://:pw@example.com/',
      'https://example.com@evil.example/']) {
      refused(raw, policy(), 'bad_url');
    }
  });
});

describe('checkSourceUrl: schemes', () => {
  test('only http and https', () => {
    for (const raw of ['ftp://example.com/a.jpg', 'file:///etc/passwd', 'data:image/png;base64,AAAA', 'javascript:alert(1)',
      'gopher://example.com/', 'ws://example.com/', 'blob:https://example.com/x']) {
      refused(raw, policy({ allowHttp: true }), 'scheme_denied');
    }
  });

  test('http only when allowHttp', () => {
    refused('http://example.com/a.jpg', policy(), 'scheme_denied');
    assert.equal(checkSourceUrl('http://example.com/a.jpg', policy({ allowHttp: true })).protocol, 'http:');
  });
});

describe('checkSourceUrl: ports', () => {
  test('default ports count as the port used', () => {
    refused('https://example.com/', policy({ allowedPorts: [8443] }), 'port_denied');
    refused('http://example.com/', policy({ allowHttp: true, allowedPorts: [443] }), 'port_denied');
    checkSourceUrl('https://example.com:443/', policy({ allowedPorts: [443] }));
  });

  test('explicit ports must be listed', () => {
    refused('https://example.com:8443/', policy(), 'port_denied');
    refused('https://example.com:22/', policy(), 'port_denied');
    checkSourceUrl('https://example.com:8443/', policy({ allowedPorts: [443, 8443] }));
  });

  test("'*' allows any port", () => {
    checkSourceUrl('https://example.com:8443/', policy({ allowedPorts: '*' }));
    checkSourceUrl('http://example.com:1/', policy({ allowHttp: true, allowedPorts: '*' }));
  });
});

describe('checkSourceUrl: host lists', () => {
  test('an empty allow-list allows any host; a non-empty one allows only its entries', () => {
    checkSourceUrl('https://anything.example.net/', policy());
    const p = policy({ allowedHosts: ['images.example.com'] });
    checkSourceUrl('https://images.example.com/', p);
    refused('https://other.example.com/', p, 'host_denied');
    refused('https://sub.images.example.com/', p, 'host_denied');
  });

  test('wildcards match subdomains at any depth but not the apex', () => {
    const p = policy({ allowedHosts: ['*.example.com'] });
    checkSourceUrl('https://a.example.com/', p);
    checkSourceUrl('https://a.b.example.com/', p);
    refused('https://example.com/', p, 'host_denied');
    refused('https://badexample.com/', p, 'host_denied');
    refused('https://example.com.evil.net/', p, 'host_denied');
  });

  test('the deny-list wins over the allow-list', () => {
    const p = policy({ allowedHosts: ['*.example.com'], deniedHosts: ['internal.example.com', '*.corp.example.com'] });
    checkSourceUrl('https://cdn.example.com/', p);
    refused('https://internal.example.com/', p, 'host_denied');
    refused('https://db.corp.example.com/', p, 'host_denied');
  });

  test('comparisons ignore case and a trailing dot', () => {
    const p = policy({ allowedHosts: ['Images.Example.COM.'], deniedHosts: ['EVIL.example.org'] });
    checkSourceUrl('https://IMAGES.example.com/', p);
    checkSourceUrl('https://images.example.com./', p);
    refused('https://evil.EXAMPLE.org./', policy({ deniedHosts: ['EVIL.example.org'] }), 'host_denied');
  });

  test('IDN hosts compare as punycode, whichever way either side is written', () => {
    checkSourceUrl('https://bücher.example/', policy({ allowedHosts: ['xn--bcher-kva.example'] }));
    checkSourceUrl('https://xn--bcher-kva.example/', policy({ allowedHosts: ['bücher.example'] }));
    refused('https://BÜCHER.example/', policy({ deniedHosts: ['*.example', 'bücher.example'] }), 'host_denied');
    checkSourceUrl('https://img.bücher.example/', policy({ allowedHosts: ['*.bücher.example'] }));
  });

  test('hostMatches is exported for reuse', () => {
    assert.equal(hostMatches('a.example.com', '*.example.com'), true);
    assert.equal(hostMatches('example.com', '*.example.com'), false);
    assert.equal(hostMatches('EXAMPLE.com.', 'example.COM'), true);
    assert.equal(hostMatches('[::1]', '::1'), true);
    assert.equal(hostMatches('127.0.0.1', '*.0.0.1'), false);
  });
});

describe('checkSourceUrl: IP literal hosts', () => {
  test('denied addresses are refused before any network use, in every spelling', () => {
    const p = policy({ allowHttp: true, allowedPorts: '*' });
    for (const raw of ['http://127.0.0.1/', 'http://2130706433/', 'http://0x7f000001/', 'http://0177.0.0.1/', 'http://127.1/',
      'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://[::ffff:7f00:1]/', 'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1:8080/', 'http://[fd00:ec2::254]/', 'http://0.0.0.0/', 'http://[64:ff9b::10.0.0.1]/']) {
      refused(raw, p, 'address_denied');
    }
  });

  test('public IP literals pass; carve-outs apply', () => {
    checkSourceUrl('https://8.8.8.8/', policy());
    checkSourceUrl('https://[2606:4700:4700::1111]/', policy());
    checkSourceUrl('http://127.0.0.1:9/', policy({ allowHttp: true, allowedPorts: '*', allowedPrivateRanges: ['127.0.0.1/32'] }));
  });

  test('host lists also apply to IP literals', () => {
    refused('https://8.8.8.8/', policy({ deniedHosts: ['8.8.8.8'] }), 'host_denied');
    refused('https://8.8.8.8/', policy({ allowedHosts: ['example.com'] }), 'host_denied');
  });
});
