import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Range = [Address, number];

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`, as dual-stack sockets report IPv4 peers) becomes plain IPv4. */
function unmap(address: Address): Address {
  return address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress()
    ? (address as ipaddr.IPv6).toIPv4Address()
    : address;
}

/** An address as it may appear in a socket or an X-Forwarded-For hop: plain, `[v6]`, `[v6]:port` or `v4:port`. */
export function parseHopAddress(text: string): Address | undefined {
  let candidate = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(candidate);
  if (bracketed?.[1] !== undefined) candidate = bracketed[1];
  else if (/^\d{1,3}(\.\d{1,3}){3}:\d+$/.test(candidate)) candidate = candidate.slice(0, candidate.lastIndexOf(':'));
  // Zone ids (fe80::1%eth0) say nothing about who the client is.
  candidate = candidate.replace(/%.*$/, '');
  if (!ipaddr.isValid(candidate)) return undefined;
  // ipaddr.parse accepts legacy IPv4 spellings (octal, 32-bit numbers); only the four-part decimal form is a hop.
  if (candidate.includes('.') && !candidate.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(candidate)) return undefined;
  return unmap(ipaddr.parse(candidate));
}

function inRanges(address: Address, ranges: readonly Range[]): boolean {
  return ranges.some(([base, bits]) => address.kind() === base.kind() && address.match([base, bits]));
}

/**
 * A pure function of an address string, remembered for the addresses seen
 * lately: parsing one with ipaddr.js costs 2–5 µs, on every request of a
 * keep-alive connection. Cleared when full, so a flood of new addresses costs
 * what it did without it.
 */
function remembered(fn: (address: string) => string, max = 4096): (address: string) => string {
  const known = new Map<string, string>();
  return (address) => {
    let value = known.get(address);
    if (value === undefined) {
      value = fn(address);
      if (known.size >= max) known.clear();
      known.set(address, value);
    }
    return value;
  };
}

/** The socket peer as the client's address, in its canonical form (IPv4-mapped IPv6 unmapped). */
const peerAddress = remembered((socketAddress) => parseHopAddress(socketAddress)?.toString() ?? socketAddress);

/**
 * Who the client is. The socket peer, unless that peer is a trusted proxy:
 * then X-Forwarded-For is walked from the right (the hop our proxy appended)
 * past every trusted hop, and the first untrusted address is the client.
 * Entries left of it were written by the client itself and are ignored, so
 * a spoofed header only ever names addresses behind an untrusted hop.
 */
export function createClientAddressResolver(trustedProxies: readonly string[]): (
  socketAddress: string | undefined,
  forwardedFor: string | string[] | undefined,
) => string {
  const ranges: Range[] = trustedProxies.map((cidr) => {
    const [base, bits] = ipaddr.parseCIDR(cidr);
    return [unmap(base), base.kind() === 'ipv6' && unmap(base).kind() === 'ipv4' ? bits - 96 : bits];
  });

  return function clientAddress(socketAddress, forwardedFor) {
    if (socketAddress !== undefined && (ranges.length === 0 || forwardedFor === undefined)) return peerAddress(socketAddress);
    const peer = socketAddress === undefined ? undefined : parseHopAddress(socketAddress);
    if (peer === undefined) return socketAddress ?? 'unknown';
    if (ranges.length === 0 || forwardedFor === undefined || !inRanges(peer, ranges)) return peer.toString();

    // Several X-Forwarded-For headers are one list, in order (RFC 9110 §5.3).
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
    let client: Address = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = parseHopAddress(hops[i] ?? '');
      // A hop that is not an address cannot be followed: the trusted proxy that passed it on is the best we know.
      if (hop === undefined) break;
      client = hop;
      if (!inRanges(hop, ranges)) break;
    }
    return client.toString();
  };
}

/**
 * The key a client is counted under: its address, or for IPv6 its /64, since
 * one IPv6 host usually owns a whole /64 and could otherwise hop addresses.
 */
export const rateLimitKey = remembered((address) => {
  const parsed = parseHopAddress(address);
  if (parsed === undefined || parsed.kind() === 'ipv4') return address;
  const parts = (parsed as ipaddr.IPv6).parts.slice(0, 4).map((p) => p.toString(16));
  return `${parts.join(':')}::/64`;
});
