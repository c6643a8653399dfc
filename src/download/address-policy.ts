import net from 'node:net';
import ipaddr from 'ipaddr.js';
import { ConfigError } from '../errors.ts';

type IPv4 = ipaddr.IPv4;
type IPv6 = ipaddr.IPv6;
type Cidr = [IPv4 | IPv6, number];

export type AddressVerdict = { allowed: true } | { allowed: false; reason: string };

export interface AddressPolicy {
  check(address: string): AddressVerdict;
}

export interface AddressPolicyOptions {
  /** Allow the private, loopback, link-local, unique-local and CGNAT classes. */
  allowPrivateNetworks: boolean;
  /** CIDR ranges (v4 or v6) carved out of the denied set; metadata addresses stay denied. */
  allowedPrivateRanges: readonly string[];
}

/** Classes an operator may open with allowPrivateNetworks: reachable hosts on their own network. */
const PRIVATE_CLASSES = new Set(['private', 'loopback', 'linkLocal', 'uniqueLocal', 'carrierGradeNat']);

function cidrs(list: ReadonlyArray<readonly [string, string]>): Array<{ name: string; range: Cidr }> {
  return list.map(([name, cidr]) => ({ name, range: ipaddr.parseCIDR(cidr) }));
}

/** Every IPv4 range that is not plain global unicast. */
const IPV4_DENIED = cidrs([
  ['unspecified', '0.0.0.0/8'],
  ['private', '10.0.0.0/8'],
  ['carrierGradeNat', '100.64.0.0/10'],
  ['loopback', '127.0.0.0/8'],
  ['linkLocal', '169.254.0.0/16'],
  ['private', '172.16.0.0/12'],
  ['ietfProtocol', '192.0.0.0/24'],
  ['documentation', '192.0.2.0/24'],
  ['reserved', '192.88.99.0/24'], // deprecated 6to4 relay anycast
  ['private', '192.168.0.0/16'],
  ['benchmarking', '198.18.0.0/15'],
  ['documentation', '198.51.100.0/24'],
  ['documentation', '203.0.113.0/24'],
  ['multicast', '224.0.0.0/4'],
  ['broadcast', '255.255.255.255/32'],
  ['reserved', '240.0.0.0/4'],
]);

/**
 * IPv6 ranges denied inside 2000::/3 (global unicast); everything outside
 * 2000::/3 is denied too, under the class found here or 'reserved'.
 */
const IPV6_DENIED = cidrs([
  ['unspecified', '::/128'],
  ['loopback', '::1/128'],
  ['linkLocal', 'fe80::/10'],
  ['siteLocal', 'fec0::/10'],
  ['uniqueLocal', 'fc00::/7'],
  ['multicast', 'ff00::/8'],
  ['documentation', '2001:db8::/32'],
  ['documentation', '3fff::/20'],
  ['benchmarking', '2001:2::/48'],
  ['orchid', '2001:10::/28'],
]);
const IPV6_GLOBAL_UNICAST = ipaddr.parseCIDR('2000::/3');

/** Cloud instance metadata endpoints: never reachable, whatever else is allowed. */
const METADATA_V4 = ['169.254.169.254', '168.63.129.16', '100.100.100.200'].map((a) => ipaddr.IPv4.parse(a));
const METADATA_V6 = ['fd00:ec2::254'].map((a) => ipaddr.IPv6.parse(a));

const NAT64_WELL_KNOWN = ipaddr.parseCIDR('64:ff9b::/96');
const NAT64_LOCAL_USE = ipaddr.parseCIDR('64:ff9b:1::/48');
const IPV4_MAPPED = ipaddr.parseCIDR('::ffff:0:0/96');
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');
const SIX_TO_FOUR = ipaddr.parseCIDR('2002::/16');
const TEREDO = ipaddr.parseCIDR('2001::/32');

function v4(bytes: number[], ...indexes: number[]): IPv4 {
  return new ipaddr.IPv4(indexes.map((i) => bytes[i] ?? 0));
}

/** How an IPv6 address carries an IPv4 one, and which IPv4 address(es) it may stand for. */
interface EmbeddedIPv4 {
  form: string;
  addresses: IPv4[];
  /** ISATAP keeps a real IPv6 prefix, which must pass on its own as well. */
  alsoCheckIPv6: boolean;
}

/** The IPv4 address carried by an ISATAP interface identifier (0000:5efe or 0200:5efe, u/g bits may vary). */
function isatapIPv4(addr: IPv6): IPv4 | null {
  const w = addr.parts;
  return ((w[4] ?? 0) & 0xfcff) === 0 && w[5] === 0x5efe ? v4(addr.toByteArray(), 12, 13, 14, 15) : null;
}

/**
 * Every IPv4 address an IPv6 one carries. A prefix form (6to4, Teredo,
 * NAT64) may also end in an ISATAP interface identifier: both are checked.
 */
function embeddedIPv4(addr: IPv6): EmbeddedIPv4 | null {
  const byPrefix = prefixEmbeddedIPv4(addr);
  const isatap = isatapIPv4(addr);
  if (!isatap) return byPrefix;
  if (!byPrefix) return { form: 'ISATAP', addresses: [isatap], alsoCheckIPv6: true };
  return { ...byPrefix, form: `${byPrefix.form} with an ISATAP interface id`, addresses: [...byPrefix.addresses, isatap] };
}

function prefixEmbeddedIPv4(addr: IPv6): EmbeddedIPv4 | null {
  const b = addr.toByteArray();
  if (addr.match(IPV4_MAPPED)) return { form: 'IPv4-mapped', addresses: [v4(b, 12, 13, 14, 15)], alsoCheckIPv6: false };
  // :: and ::1 are their own IPv6 classes, not IPv4-compatible 0.0.0.0/0.0.0.1.
  if (addr.match(IPV4_COMPATIBLE) && !addr.match(ipaddr.parseCIDR('::/127'))) {
    return { form: 'IPv4-compatible', addresses: [v4(b, 12, 13, 14, 15)], alsoCheckIPv6: false };
  }
  if (addr.match(NAT64_WELL_KNOWN)) return { form: 'NAT64', addresses: [v4(b, 12, 13, 14, 15)], alsoCheckIPv6: false };
  if (addr.match(NAT64_LOCAL_USE)) {
    // The translator's prefix length (48..96) is not knowable from outside:
    // every RFC 6052 position must hold an acceptable address.
    return {
      form: 'NAT64 local-use',
      addresses: [v4(b, 6, 7, 9, 10), v4(b, 7, 9, 10, 11), v4(b, 9, 10, 11, 12), v4(b, 12, 13, 14, 15)],
      alsoCheckIPv6: false,
    };
  }
  if (addr.match(SIX_TO_FOUR)) return { form: '6to4', addresses: [v4(b, 2, 3, 4, 5)], alsoCheckIPv6: false };
  if (addr.match(TEREDO)) {
    const client = new ipaddr.IPv4([12, 13, 14, 15].map((i) => (b[i] ?? 0) ^ 0xff));
    return { form: 'Teredo', addresses: [client, v4(b, 4, 5, 6, 7)], alsoCheckIPv6: false };
  }
  return null;
}

function classify(addr: IPv4 | IPv6): string | null {
  const table = addr.kind() === 'ipv4' ? IPV4_DENIED : IPV6_DENIED;
  for (const { name, range } of table) {
    if (range[0].kind() === addr.kind() && addr.match(range)) return name;
  }
  if (addr.kind() === 'ipv6' && !addr.match(IPV6_GLOBAL_UNICAST)) return 'reserved';
  return null;
}

/** Strict parse: canonical dotted-quad IPv4 or IPv6 (optionally bracketed, optional zone id). */
function parseStrict(raw: string): IPv4 | IPv6 | null {
  const text = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  // net.isIP refuses legacy forms (0x7f.1, 2130706433, 0177.0.0.1) that ipaddr.js would accept.
  const family = net.isIP(text);
  try {
    if (family === 4) return ipaddr.IPv4.parse(text);
    if (family === 6) return ipaddr.IPv6.parse(text);
  } catch {
    return null;
  }
  return null;
}

function parseRange(entry: string): Cidr {
  try {
    if (entry.includes('/')) return ipaddr.parseCIDR(entry);
    const addr = parseStrict(entry);
    if (addr) return [addr, addr.kind() === 'ipv4' ? 32 : 128];
  } catch {
    // fall through to the error below
  }
  throw new ConfigError('allowedPrivateRanges', `not a CIDR range: ${entry}`);
}

const DENY = (reason: string): AddressVerdict => ({ allowed: false, reason });
const ALLOW: AddressVerdict = { allowed: true };

export function createAddressPolicy(options: AddressPolicyOptions): AddressPolicy {
  const carveOuts = options.allowedPrivateRanges.map(parseRange);

  const isCarvedOut = (addr: IPv4 | IPv6): boolean =>
    carveOuts.some((range) => range[0].kind() === addr.kind() && addr.match(range));

  // Compared by bytes so an IPv6 zone id (fd00:ec2::254%eth0) cannot slip past.
  const isMetadata = (addr: IPv4 | IPv6): boolean => {
    const bytes = addr.toByteArray().join('.');
    return (addr.kind() === 'ipv4' ? METADATA_V4 : METADATA_V6).some((m) => m.toByteArray().join('.') === bytes);
  };

  /** Verdict on one address by its own class, ignoring any embedded IPv4. */
  const judgeOwnClass = (addr: IPv4 | IPv6): AddressVerdict => {
    if (isMetadata(addr)) return DENY(`cloud metadata address ${addr.toString()}`);
    if (isCarvedOut(addr)) return ALLOW;
    const cls = classify(addr);
    if (cls === null) return ALLOW;
    if (options.allowPrivateNetworks && PRIVATE_CLASSES.has(cls)) return ALLOW;
    return DENY(`${cls} address ${addr.toString()}`);
  };

  const judge = (addr: IPv4 | IPv6): AddressVerdict => {
    if (addr.kind() === 'ipv4') return judgeOwnClass(addr);
    const v6 = addr as IPv6;
    const embedded = embeddedIPv4(v6);
    if (!embedded) return judgeOwnClass(v6);
    if (isMetadata(v6) || embedded.addresses.some(isMetadata)) {
      return DENY(`${embedded.form} form of a cloud metadata address ${v6.toString()}`);
    }
    // An explicit IPv6 carve-out covers the address as written.
    if (isCarvedOut(v6)) return ALLOW;
    for (const inner of embedded.addresses) {
      const verdict = judgeOwnClass(inner);
      if (!verdict.allowed) return DENY(`${embedded.form} ${v6.toString()} embeds ${verdict.reason}`);
    }
    return embedded.alsoCheckIPv6 ? judgeOwnClass(v6) : ALLOW;
  };

  return {
    check(address: string): AddressVerdict {
      const parsed = parseStrict(address);
      if (!parsed) return DENY(`not an IP address: ${JSON.stringify(address.slice(0, 64))}`);
      return judge(parsed);
    },
  };
}
