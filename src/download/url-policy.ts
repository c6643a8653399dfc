import net from 'node:net';
import { domainToASCII } from 'node:url';
import ipaddr from 'ipaddr.js';
import { FastImageCacheError } from '../errors.ts';
import { createAddressPolicy, type AddressPolicy, type AddressPolicyOptions } from './address-policy.ts';
import type { DownloadPolicy } from './types.ts';

export const MAX_URL_LENGTH = 8192;

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

const addressPolicies = new WeakMap<AddressPolicyOptions, AddressPolicy>();

/** One AddressPolicy per policy object: ranges are parsed once, not on every request. */
export function addressPolicyFor(policy: AddressPolicyOptions): AddressPolicy {
  let found = addressPolicies.get(policy);
  if (!found) {
    found = createAddressPolicy(policy);
    addressPolicies.set(policy, found);
  }
  return found;
}

/**
 * Canonical form for comparing hosts: lower case, punycode, no trailing dot,
 * IPv6 without brackets in RFC 5952 form. Returns '' when the host is not valid.
 */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (net.isIPv6(h)) return ipaddr.IPv6.parse(h).toString();
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (net.isIPv4(h)) return h;
  return domainToASCII(h);
}

/**
 * Whether `host` matches a host-list entry: an exact name or IP, or `*.example.com`,
 * which matches any subdomain of example.com but not example.com itself.
 */
export function hostMatches(host: string, pattern: string): boolean {
  const h = normalizeHost(host);
  if (h === '') return false;
  const p = pattern.trim();
  if (p.startsWith('*.')) {
    const suffix = normalizeHost(p.slice(2));
    // IP addresses have no subdomains; never let '*.0.1' match '127.0.0.1'.
    if (suffix === '' || net.isIP(h) !== 0) return false;
    return h.endsWith(`.${suffix}`);
  }
  const exact = normalizeHost(p);
  return exact !== '' && exact === h;
}

export function matchesAnyHost(host: string, patterns: readonly string[]): boolean {
  return patterns.some((pattern) => hostMatches(host, pattern));
}

/**
 * Decides whether a source URL may be fetched, before any network use and on
 * every redirect hop. Returns the parsed URL; throws FastImageCacheError otherwise.
 */
export function checkSourceUrl(raw: string, policy: DownloadPolicy): URL {
  if (raw.length > MAX_URL_LENGTH) throw new FastImageCacheError('bad_url', `URL longer than ${MAX_URL_LENGTH}`);

  let url: URL;
  try {
    url = new URL(raw); // no base: relative URLs are refused
  } catch {
    throw new FastImageCacheError('bad_url', 'unparsable or relative URL');
  }

  if (url.username !== '' || url.password !== '') throw new FastImageCacheError('bad_url', 'userinfo in URL');

  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new FastImageCacheError('scheme_denied', `scheme ${url.protocol}`);
  }
  if (url.protocol === 'http:' && !policy.allowHttp) throw new FastImageCacheError('scheme_denied', 'http not allowed');

  const host = normalizeHost(url.hostname);
  if (host === '') throw new FastImageCacheError('bad_url', 'malformed or empty host');

  const port = url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port);
  if (port === undefined || port === 0) throw new FastImageCacheError('port_denied', `port ${url.port}`);
  if (policy.allowedPorts !== '*' && !policy.allowedPorts.includes(port)) {
    throw new FastImageCacheError('port_denied', `port ${port}`);
  }

  if (matchesAnyHost(host, policy.deniedHosts)) throw new FastImageCacheError('host_denied', `host ${host} is denied`);
  if (policy.allowedHosts.length > 0 && !matchesAnyHost(host, policy.allowedHosts)) {
    throw new FastImageCacheError('host_denied', `host ${host} is not allowed`);
  }

  if (net.isIP(host) !== 0) {
    const verdict = addressPolicyFor(policy).check(host);
    if (!verdict.allowed) throw new FastImageCacheError('address_denied', verdict.reason);
  }

  return url;
}
