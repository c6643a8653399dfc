import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createAddressPolicy } from '../../src/download/address-policy.ts';
import { fuzzParameters } from './fuzz-settings.ts';

/*
 * Address classification, checked against an oracle written here from the
 * README's security model (not from the code under test): addresses are made
 * as bytes, the oracle judges the bytes, the policy judges a text spelling.
 * Property: every address the policy allows is outside every denied range,
 * including each IPv6 form that embeds an IPv4 address.
 */

type Bytes = number[];
type Range = [prefix: Bytes, length: number];

function v4(text: string): Bytes {
  return text.split('.').map(Number);
}

/** README: loopback, RFC 1918, link-local, CGNAT, 0/8, broadcast, 240/4, benchmarking, documentation, multicast, IETF 192.0.0/24. */
const V4_DENIED: Range[] = [
  [v4('0.0.0.0'), 8], [v4('10.0.0.0'), 8], [v4('100.64.0.0'), 10], [v4('127.0.0.0'), 8], [v4('169.254.0.0'), 16],
  [v4('172.16.0.0'), 12], [v4('192.0.0.0'), 24], [v4('192.0.2.0'), 24], [v4('192.168.0.0'), 16], [v4('198.18.0.0'), 15],
  [v4('198.51.100.0'), 24], [v4('203.0.113.0'), 24], [v4('224.0.0.0'), 4], [v4('240.0.0.0'), 4], [v4('255.255.255.255'), 32],
];
/** Ranges an operator opens with allowPrivateNetworks. */
const V4_PRIVATE: Range[] = [[v4('10.0.0.0'), 8], [v4('100.64.0.0'), 10], [v4('127.0.0.0'), 8], [v4('169.254.0.0'), 16], [v4('172.16.0.0'), 12], [v4('192.168.0.0'), 16]];
const V4_METADATA: Bytes[] = [v4('169.254.169.254'), v4('168.63.129.16'), v4('100.100.100.200')];

function v6(groups: number[], length: number): Range {
  const bytes = groups.flatMap((g) => [g >> 8, g & 0xff]);
  while (bytes.length < 16) bytes.push(0);
  return [bytes, length];
}
/** README: unspecified, loopback, link-local, unique-local, multicast, documentation (and everything outside 2000::/3). */
const V6_DENIED: Range[] = [
  v6([], 128), v6([0, 0, 0, 0, 0, 0, 0, 1], 128), v6([0xfe80], 10), v6([0xfc00], 7), v6([0xff00], 8),
  v6([0x2001, 0x0db8], 32), v6([0x3fff], 20),
];
const V6_PRIVATE: Range[] = [v6([0, 0, 0, 0, 0, 0, 0, 1], 128), v6([0xfe80], 10), v6([0xfc00], 7)];
const V6_METADATA: Bytes[] = [v6([0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254], 128)[0]];

function inRange(bytes: Bytes, [prefix, length]: Range): boolean {
  if (bytes.length !== prefix.length) return false;
  for (let bit = 0; bit < length; bit++) {
    const mask = 0x80 >> (bit % 8);
    if (((bytes[bit >> 3] ?? 0) & mask) !== ((prefix[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}
const inAny = (bytes: Bytes, ranges: Range[]): boolean => ranges.some((r) => inRange(bytes, r));
const same = (a: Bytes, b: Bytes): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** Every IPv4 address an IPv6 address carries, by every form the README names. */
function embedded(b: Bytes): Bytes[] {
  const at = (...i: number[]): Bytes => i.map((k) => b[k] ?? 0);
  const out: Bytes[] = [];
  const zeros = (from: number, to: number): boolean => b.slice(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) out.push(at(12, 13, 14, 15)); // IPv4-mapped
  if (zeros(0, 12) && !zeros(12, 15)) out.push(at(12, 13, 14, 15)); // IPv4-compatible (not :: or ::1)
  if (zeros(0, 12) && zeros(12, 15) && (b[15] ?? 0) > 1) out.push(at(12, 13, 14, 15));
  if (inRange(b, v6([0x64, 0xff9b], 96))) out.push(at(12, 13, 14, 15)); // NAT64 well-known
  if (inRange(b, v6([0x64, 0xff9b, 1], 48))) out.push(at(6, 7, 9, 10), at(7, 9, 10, 11), at(9, 10, 11, 12), at(12, 13, 14, 15)); // RFC 6052, /48../96
  if (inRange(b, v6([0x2002], 16))) out.push(at(2, 3, 4, 5)); // 6to4
  if (inRange(b, v6([0x2001, 0], 32))) out.push(at(4, 5, 6, 7), at(12, 13, 14, 15).map((x) => x ^ 0xff)); // Teredo server, client
  if (((b[8] ?? 0) & 0xfc) === 0 && b[9] === 0 && b[10] === 0x5e && b[11] === 0xfe) out.push(at(12, 13, 14, 15)); // ISATAP
  return out;
}

/** The oracle: denied by the README's rules with private networks closed. */
function deniedByDefault(b: Bytes): boolean {
  if (b.length === 4) return inAny(b, V4_DENIED) || V4_METADATA.some((m) => same(m, b));
  return inAny(b, V6_DENIED) || embedded(b).some((e) => inAny(e, V4_DENIED));
}

/** Denied even with allowPrivateNetworks: the non-private special ranges and every metadata address. */
function deniedAlways(b: Bytes): boolean {
  if (b.length === 4) return (inAny(b, V4_DENIED) && !inAny(b, V4_PRIVATE)) || V4_METADATA.some((m) => same(m, b));
  if (V6_METADATA.some((m) => same(m, b))) return true;
  if (inAny(b, V6_DENIED) && !inAny(b, V6_PRIVATE)) return true;
  return embedded(b).some((e) => (inAny(e, V4_DENIED) && !inAny(e, V4_PRIVATE)) || V4_METADATA.some((m) => same(m, e)));
}

// ---- generators: bytes first, spellings second ----

const byte = fc.integer({ min: 0, max: 255 });
const bytesOf = (n: number) => fc.array(byte, { minLength: n, maxLength: n });

/** A random address inside `range`. */
function within([prefix, length]: Range): fc.Arbitrary<Bytes> {
  return bytesOf(prefix.length).map((random) =>
    random.map((r, i) => {
      const keep = Math.max(0, Math.min(8, length - i * 8));
      const mask = (0xff << (8 - keep)) & 0xff;
      return ((prefix[i] ?? 0) & mask) | (r & ~mask & 0xff);
    }),
  );
}

const interestingV4 = fc.oneof(
  bytesOf(4),
  fc.constantFrom(...V4_DENIED).chain(within),
  fc.constantFrom(...V4_METADATA),
  fc.constantFrom(v4('8.8.8.8'), v4('1.1.1.1'), v4('93.184.216.34')),
);

/** IPv6 addresses that embed an IPv4 address, in each form. */
const singleEmbeddingV6 = fc.tuple(interestingV4, bytesOf(16), fc.integer({ min: 0, max: 7 })).map(([a, r, form]) => {
  const b = [...r];
  const put = (positions: number[], values: Bytes): void => {
    positions.forEach((p, i) => (b[p] = values[i] ?? 0));
  };
  switch (form) {
    case 0: return [...Array<number>(10).fill(0), 0xff, 0xff, ...a]; // mapped
    case 1: return [...Array<number>(12).fill(0), ...a]; // compatible
    case 2: return [0, 0x64, 0xff, 0x9b, ...Array<number>(8).fill(0), ...a]; // NAT64
    case 3: { // NAT64 local-use, at one of the RFC 6052 positions
      put([0, 1, 2, 3, 4, 5], [0, 0x64, 0xff, 0x9b, 0, 1]);
      const positions = [[6, 7, 9, 10], [7, 9, 10, 11], [9, 10, 11, 12], [12, 13, 14, 15]][(r[15] ?? 0) % 4] ?? [];
      put(positions, a);
      b[8] = 0; // the "u" octet of RFC 6052
      return b;
    }
    case 4: put([0, 1], [0x20, 0x02]); put([2, 3, 4, 5], a); return b; // 6to4
    case 5: put([0, 1, 2, 3], [0x20, 0x01, 0, 0]); put([12, 13, 14, 15], a.map((x) => x ^ 0xff)); return b; // Teredo client
    case 6: put([0, 1, 2, 3], [0x20, 0x01, 0, 0]); put([4, 5, 6, 7], a); return b; // Teredo server
    default: // ISATAP under a global prefix
      b[0] = 0x20 | ((r[0] ?? 0) & 0x1f);
      put([8, 9, 10, 11], [(r[8] ?? 0) & 0x02, 0, 0x5e, 0xfe]);
      put([12, 13, 14, 15], a);
      return b;
  }
});

/** A prefix form whose interface identifier is an ISATAP one too: two IPv4 addresses in one IPv6. */
const doubleEmbeddingV6 = fc.tuple(singleEmbeddingV6, interestingV4, fc.boolean()).map(([b, a, u]) => [
  ...b.slice(0, 8), u ? 0x02 : 0, 0, 0x5e, 0xfe, ...a,
]);

const embeddingV6 = fc.oneof(singleEmbeddingV6, doubleEmbeddingV6);

const interestingV6 = fc.oneof(
  bytesOf(16),
  fc.constantFrom(...V6_DENIED).chain(within),
  within(v6([0x2000], 3)),
  embeddingV6,
  fc.constantFrom(...V6_METADATA),
);

/** The spellings of one address: the policy must judge them all alike. */
function spellings(b: Bytes): fc.Arbitrary<string> {
  if (b.length === 4) return fc.constant(b.join('.'));
  const groups = Array.from({ length: 8 }, (_, i) => ((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0));
  return fc.tuple(fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean(), fc.boolean()).map(([compress, upper, dotted, bracket, zone]) => {
    let head = groups.map((g) => g.toString(16));
    let tail = '';
    if (dotted) {
      head = head.slice(0, 6);
      tail = b.slice(12).join('.');
    }
    let text = head.join(':');
    if (compress) {
      // The longest run of zero groups becomes "::" (RFC 5952 style, done here by hand).
      const parts = head;
      let best = [-1, 0];
      for (let i = 0; i < parts.length; ) {
        let j = i;
        while (j < parts.length && parts[j] === '0') j++;
        if (j - i > (best[1] ?? 0)) best = [i, j - i];
        i = j === i ? i + 1 : j;
      }
      const [start = -1, len = 0] = best;
      if (len >= 2) text = `${parts.slice(0, start).join(':')}::${parts.slice(start + len).join(':')}`;
    }
    if (tail !== '') text = text.endsWith('::') ? `${text}${tail}` : `${text}:${tail}`;
    if (upper) text = text.toUpperCase();
    if (zone) text = `${text}%eth0`;
    return bracket ? `[${text}]` : text;
  });
}

const fmt = (b: Bytes): string => (b.length === 4 ? b.join('.') : b.map((x) => x.toString(16).padStart(2, '0')).join(''));

describe('address classification (property-based)', () => {
  const closed = createAddressPolicy({ allowPrivateNetworks: false, allowedPrivateRanges: [] });
  const open = createAddressPolicy({ allowPrivateNetworks: true, allowedPrivateRanges: [] });

  test('every IPv4 address allowed is outside every denied range', () => {
    fc.assert(
      fc.property(interestingV4, (b) => {
        const verdict = closed.check(b.join('.'));
        assert.equal(verdict.allowed, !deniedByDefault(b), `${b.join('.')}: ${JSON.stringify(verdict)}`);
      }),
      fuzzParameters(2000),
    );
  });

  test('every IPv6 address allowed is outside every denied range, embedded IPv4 forms included, however it is spelt', () => {
    fc.assert(
      fc.property(interestingV6.chain((b) => fc.tuple(fc.constant(b), spellings(b), spellings(b))), ([b, one, two]) => {
        const first = closed.check(one);
        if (first.allowed) assert.ok(!deniedByDefault(b), `${one} (${fmt(b)}) allowed but denied by the README's rules`);
        assert.equal(closed.check(two).allowed, first.allowed, `${one} and ${two} judged differently`);
      }),
      fuzzParameters(3000),
    );
  });

  test('with private networks allowed, metadata and the other special ranges stay denied in every form', () => {
    fc.assert(
      fc.property(fc.oneof(interestingV4, interestingV6).chain((b) => fc.tuple(fc.constant(b), spellings(b))), ([b, text]) => {
        const verdict = open.check(text);
        if (verdict.allowed) assert.ok(!deniedAlways(b), `${text} (${fmt(b)}) allowed with allowPrivateNetworks`);
      }),
      fuzzParameters(2000),
    );
  });

  test('examples: a 6to4 or Teredo prefix followed by an ISATAP interface id carrying a private address', () => {
    for (const text of ['2002:5db8:d822::5efe:10.0.0.1', '2002:5db8:d822::200:5efe:127.0.0.1', '2001:0:5db8:d822:0:5efe:192.168.1.1']) {
      assert.equal(closed.check(text).allowed, false, text);
    }
    assert.equal(closed.check('2002:5db8:d822::5efe:93.184.216.34').allowed, true, 'public on both counts');
  });

  test('arbitrary text never throws; only strict IP literals can be allowed', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.ipV4Extended(), fc.ipV6(), fc.domain()), (text) => {
        const verdict = closed.check(text);
        if (verdict.allowed) assert.ok(/^\[?[0-9a-fA-F:.]+(%[^\]]*)?\]?$/.test(text), `${JSON.stringify(text)} allowed`);
      }),
      fuzzParameters(500),
    );
  });
});
