import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { cacheKey } from '../../src/cache/cache-key.ts';
import { normalizeSourceUrl } from '../../src/cache/normalize-url.ts';
import { checkSourceUrl } from '../../src/download/url-policy.ts';
import type { DownloadPolicy } from '../../src/download/types.ts';
import { FastImageCacheError, type ErrorCode } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { decodeSource, parseImagePath } from '../../src/server/image-path.ts';
import { encodeSource } from '../../src/server/signature.ts';
import { FsStorage } from '../../src/storage/fs-storage.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { fuzzParameters } from './fuzz-settings.ts';

/*
 * Every parser a source URL goes through, fed hostile and random input:
 * URL policy, normalization, the base64url path segment, cache keys and the
 * storage path they lead to. Nothing may throw anything but a typed error.
 */

function expectTyped(err: unknown, codes: readonly ErrorCode[], input: string): void {
  assert.ok(err instanceof FastImageCacheError, `${JSON.stringify(input).slice(0, 200)} threw ${String(err)}`);
  assert.ok(codes.includes(err.code), `${JSON.stringify(input).slice(0, 200)} gave ${err.code}`);
}

// ---- inputs ----

const hosts = fc.oneof(
  fc.domain(),
  fc.ipV4().map(String),
  fc.ipV4Extended(),
  fc.ipV6().map((a) => `[${a}]`),
  fc.constantFrom(
    'localhost', '127.0.0.1', '0x7f.1', '2130706433', '0177.0.0.1', '[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]',
    '169.254.169.254', '[fd00:ec2::254]', 'example.com.', 'EXAMPLE.com', 'images.example.com', 'a.images.example.com',
    'xn--bcher-kva.example', 'bücher.example', '例え.jp', '%31%32%37.0.0.1', 'exa mple.com', '', 'a..b', '-a-.com', '[::1',
    'evil.com\\@good.com', 'good.com#@evil.com', 'user@host', '[fe80::1%25eth0]', '1.2.3.4.5', '999.1.1.1',
  ),
);

const rawUrl = fc
  .tuple(
    fc.constantFrom('https', 'http', 'HTTPS', 'HtTp', 'ftp', 'file', 'javascript', 'data', 'ws', 'gopher', ''),
    fc.constantFrom('://', ':/', ':\\\\', ':', ':///', '://\\', ' ://'),
    fc.option(fc.constantFrom('user@', 'user:pass@', ':@', '@', 'a%40b@', ':pass@'), { nil: '' }),
    hosts,
    fc.option(fc.oneof(fc.integer({ min: 0, max: 70_000 }).map(String), fc.constantFrom('', '080', '+1', 'abc', '443 ')), { nil: undefined }),
    fc.string({ maxLength: 40 }),
    fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    fc.option(fc.string({ maxLength: 10 }), { nil: undefined }),
  )
  .map(([scheme, sep, user, host, port, p, q, frag]) =>
    `${scheme}${sep}${user}${host}${port === undefined ? '' : `:${port}`}/${p}${q === undefined ? '' : `?${q}`}${frag === undefined ? '' : `#${frag}`}`,
  );

const anyInput = fc.oneof(
  { weight: 4, arbitrary: rawUrl },
  { weight: 2, arbitrary: fc.webUrl({ withQueryParameters: true, withFragments: true }) },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
  { weight: 1, arbitrary: fc.integer({ min: 8100, max: 8300 }).map((n) => `https://example.com/${'a'.repeat(n)}`) },
);

const patterns = ['images.example.com', '*.example.com', 'localhost', '127.0.0.1', '*.evil.com', 'xn--bcher-kva.example'];

const policies: fc.Arbitrary<DownloadPolicy> = fc.record({
  allowHttp: fc.boolean(),
  allowedPorts: fc.oneof(fc.constant('*' as const), fc.subarray([80, 443, 8080, 8443], { minLength: 1 })),
  allowedHosts: fc.subarray(patterns, { maxLength: 2 }),
  deniedHosts: fc.subarray(patterns, { maxLength: 2 }),
  allowPrivateNetworks: fc.boolean(),
  allowedPrivateRanges: fc.subarray(['127.0.0.1/32', '10.0.0.0/8', 'fd00::/8']),
  maxRedirects: fc.constant(3),
  maxBytes: fc.constant(1024),
  connectTimeoutMs: fc.constant(1000),
  headersTimeoutMs: fc.constant(1000),
  totalTimeoutMs: fc.constant(1000),
  userAgent: fc.constant('fuzz'),
});

/** Independent reading of a host-list entry: exact name, or `*.suffix` for subdomains only. */
function listed(hostname: string, list: readonly string[]): boolean {
  return list.some((p) => (p.startsWith('*.') ? hostname.endsWith(p.slice(1)) : hostname === p));
}

describe('source URL parsing (property-based)', () => {
  test('checkSourceUrl: typed refusals only; what it accepts obeys the policy', () => {
    const codes: ErrorCode[] = ['bad_url', 'scheme_denied', 'port_denied', 'host_denied', 'address_denied'];
    fc.assert(
      fc.property(anyInput, policies, (input, policy) => {
        let url: URL;
        try {
          url = checkSourceUrl(input, policy);
        } catch (err) {
          expectTyped(err, codes, input);
          return;
        }
        assert.ok(url.protocol === 'https:' || (url.protocol === 'http:' && policy.allowHttp), `${input}: ${url.protocol}`);
        assert.equal(url.username, '');
        assert.equal(url.password, '');
        assert.ok(input.length <= 8192);
        const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
        assert.ok(policy.allowedPorts === '*' || policy.allowedPorts.includes(port), `${input}: port ${port}`);
        const host = url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '');
        assert.ok(!listed(host, policy.deniedHosts), `${input}: ${host} is denied`);
        if (policy.allowedHosts.length > 0) assert.ok(listed(host, policy.allowedHosts), `${input}: ${host} not allowed`);
      }),
      fuzzParameters(1500),
    );
  });

  test('normalization: typed refusals only, idempotent, no fragment', () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        let once: string;
        try {
          once = normalizeSourceUrl(input);
        } catch (err) {
          expectTyped(err, ['bad_url'], input);
          return;
        }
        assert.equal(normalizeSourceUrl(once), once, `not idempotent for ${input}`);
        assert.ok(!once.includes('#'), `${once} keeps a fragment`);
      }),
      fuzzParameters(1500),
    );
  });

  test('the source path segment: typed refusals only; every UTF-8 URL round-trips', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.base64String(), fc.string({ unit: fc.constantFrom('A', 'z', '-', '_', '=', '+', '/', '.') })), (segment) => {
        try {
          const text = decodeSource(segment);
          assert.equal(encodeSource(text), segment, 'only the canonical encoding is accepted');
        } catch (err) {
          expectTyped(err, ['bad_url'], segment);
        }
      }),
      fuzzParameters(1500),
    );
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1 }), (text) => {
        assert.equal(decodeSource(encodeSource(text)), text);
      }),
      fuzzParameters(1000),
    );
  });

  test('the image path: typed refusals only', () => {
    const segment = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('', 'i', '_', 'unsafe', '..', '%2F'));
    const paths = fc.oneof(
      fc.string(),
      fc.array(segment, { maxLength: 7 }).map((parts) => `/${parts.join('/')}`),
      fc.tuple(segment, segment, segment).map(([a, b, c]) => `/i/${a}/${b}/${c}`),
      fc.integer({ min: 12_000, max: 13_000 }).map((n) => `/i/s/_/${'A'.repeat(n)}`),
    );
    fc.assert(
      fc.property(paths, (p) => {
        try {
          const parsed = parseImagePath(p);
          assert.equal(`/i/${parsed.signature}/${parsed.options}/${parsed.encodedSource}`, p);
        } catch (err) {
          expectTyped(err, ['bad_url'], p);
        }
      }),
      fuzzParameters(1500),
    );
  });
});

// ---- same key only for the same resource ----

/** What a URL means: the request an origin would receive. */
interface Resource {
  scheme: 'http' | 'https';
  host: string;
  port: number | undefined;
  segments: string[];
  query: string | undefined;
}

const SEGMENTS = ['a', 'b', 'A', '%41', '%2F', 'x.png', 'é', '%C3%A9', '~u', 'a;b'];
/** How each segment travels on the wire (é is sent as its UTF-8 escape). */
const WIRE: Record<string, string> = { é: '%C3%A9' };

const resources: fc.Arbitrary<Resource> = fc.record({
  scheme: fc.constantFrom('http' as const, 'https' as const),
  host: fc.constantFrom('a.example', 'b.example', 'xn--bcher-kva.example', '127.0.0.1', '[::1]'),
  port: fc.constantFrom(undefined, 8443),
  segments: fc.array(fc.constantFrom(...SEGMENTS), { maxLength: 3 }),
  query: fc.constantFrom(undefined, '', 'x=1', 'x=2', 'X=1', 'x=1&y=2', 'y=2&x=1', 'q=%20', 'q=+'),
});

function meaning(r: Resource): string {
  return JSON.stringify([r.scheme, r.host, r.port ?? (r.scheme === 'https' ? 443 : 80), r.segments.map((s) => WIRE[s] ?? s), r.query ?? null]);
}

/** One way of writing a resource: case, default port, dot segments, fragments, IDN all vary. */
function spell(r: Resource): fc.Arbitrary<string> {
  return fc
    .record({
      upperScheme: fc.boolean(),
      upperHost: fc.boolean(),
      explicitDefaultPort: fc.boolean(),
      unicodeHost: fc.boolean(),
      dots: fc.array(fc.constantFrom('', './', 'zz/../'), { minLength: r.segments.length + 1, maxLength: r.segments.length + 1 }),
      fragment: fc.constantFrom('', '#', '#frag', '#a/../b'),
    })
    .map((s) => {
      const scheme = s.upperScheme ? r.scheme.toUpperCase() : r.scheme;
      let host = s.unicodeHost && r.host === 'xn--bcher-kva.example' ? 'bücher.example' : r.host;
      if (s.upperHost) host = host.toUpperCase();
      const defaultPort = r.scheme === 'https' ? 443 : 80;
      const port = r.port !== undefined ? `:${r.port}` : s.explicitDefaultPort ? `:${defaultPort}` : '';
      const pathText = r.segments.map((seg, i) => `${s.dots[i] ?? ''}${seg}`).join('/') + (s.dots[r.segments.length] === '' ? '' : '');
      const query = r.query === undefined ? '' : `?${r.query}`;
      return `${scheme}://${host}${port}/${pathText}${query}${s.fragment}`;
    });
}

const keyOf = (url: string, variant = '_'): string => cacheKey(normalizeSourceUrl(url), variant);

describe('cache keys (property-based)', () => {
  /** A resource and a near neighbour: the same one, or one field drawn again (often a different resource). */
  const pairs = fc.tuple(resources, resources, fc.constantFrom('same', 'scheme', 'host', 'port', 'segments', 'query')).map(([r1, other, field]) => {
    const r2: Resource = field === 'same' ? r1 : { ...r1, [field]: other[field] };
    return [r1, r2] as const;
  });

  test('two URLs share a key only when they mean the same resource (and spellings of one resource share it)', () => {
    fc.assert(
      fc.property(pairs.chain(([r1, r2]) => fc.tuple(fc.constant(r1), spell(r1), fc.constant(r2), spell(r2))), ([r1, u1, r2, u2]) => {
        const sameKey = keyOf(u1) === keyOf(u2);
        if (sameKey) assert.equal(meaning(r1), meaning(r2), `${u1} and ${u2} share a key but differ`);
        else assert.notEqual(meaning(r1), meaning(r2), `${u1} and ${u2} mean the same resource but have two keys`);
      }),
      fuzzParameters(3000),
    );
  });

  test('(url, variant) pairs never collide, however the fields split', () => {
    const field = fc.string({ unit: fc.constantFrom('a', '/', '_', ':', '\u0000', '1'), maxLength: 5 });
    fc.assert(
      fc.property(field, field, field, field, (u1, v1, u2, v2) => {
        const same = cacheKey(`https://h/${u1}`, v1) === cacheKey(`https://h/${u2}`, v2);
        assert.equal(same, u1 === u2 && v1 === v2, `(${u1}, ${v1}) vs (${u2}, ${v2})`);
      }),
      fuzzParameters(2000),
    );
  });
});

// ---- storage paths ----

describe('storage paths (property-based)', () => {
  const tmp = makeTempDir('fic-fuzz-storage-');
  const cacheDir = path.join(tmp.dir, 'cache');
  let storage: FsStorage;
  before(async () => {
    storage = await FsStorage.open({ dir: cacheDir, logger: silentLogger() });
  });
  after(async () => {
    await storage.close();
    tmp.cleanup();
  });

  const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

  test('no source URL or key yields a file outside the cache directory', async () => {
    const keys = fc.oneof(
      anyInput.map((input) => {
        try {
          return cacheKey(normalizeSourceUrl(input), '_');
        } catch {
          return input; // a raw string as a key: the storage must still keep it inside
        }
      }),
      fc.constantFrom('../../../etc/passwd', '/etc/passwd', '..', '.', '', '\u0000', 'a/../../b', '%2e%2e%2f'),
    );
    await fc.assert(
      fc.asyncProperty(keys, fc.string({ maxLength: 8 }), async (key, variantKey) => {
        const body = Buffer.from(`body of ${key}`);
        const entryKey = variantKey === '' ? key : `${key}/${variantKey}`;
        const id = storage.entryId(key, entryKey);
        const meta = {
          key: entryKey, sourceKey: key, sourceUrl: key, variant: variantKey === '' ? '_' : variantKey, contentType: 'image/png',
          size: body.length, sha256: sha256(body), sourceSha256: sha256(body), storedAt: 0,
          freshness: { freshUntil: 1, staleWhileRevalidateUntil: 1, staleIfErrorUntil: 1, mustRevalidate: false }, origin: {},
        };
        await storage.write(id, storage.prepare({ meta, body }));
        assert.deepEqual((await storage.read(id))?.body, body);
      }),
      fuzzParameters(100),
    );
    // Everything written lies inside the cache directory, checked by real paths.
    assert.deepEqual(await fs.readdir(tmp.dir), ['cache'], 'nothing beside the cache directory');
    const root = await fs.realpath(cacheDir);
    const files = (await fs.readdir(root, { recursive: true })).map((p) => path.join(root, p));
    assert.ok(files.length > 0);
    for (const file of files) {
      const real = await fs.realpath(file);
      assert.ok(real.startsWith(root + path.sep), `${real} is outside ${root}`);
    }
  });
});
