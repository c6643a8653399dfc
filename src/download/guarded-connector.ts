import { AsyncLocalStorage } from 'node:async_hooks';
import dns from 'node:dns';
import net, { type LookupFunction } from 'node:net';
import os from 'node:os';
import ipaddr from 'ipaddr.js';
import { buildConnector } from 'undici';
import { FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { OriginTls } from './tls-options.ts';
import { addressPolicyFor } from './url-policy.ts';
import type { DownloadPolicy } from './types.ts';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a hostname to every address it has. */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

export interface GuardedConnectorOptions {
  policy: Pick<
    DownloadPolicy,
    'allowPrivateNetworks' | 'allowedPrivateRanges' | 'selfEndpoints' | 'connectTimeoutMs'
  >;
  logger?: Logger;
  /** The system resolver unless given; injectable so tests can play a rebinding DNS server. */
  resolve?: Resolver;
  /** Per-origin TLS (extra CA, SPKI pins); default verification for hosts it does not name. */
  tls?: OriginTls | undefined;
}

const systemResolve: Resolver = (hostname) => dns.promises.lookup(hostname, { all: true, order: 'verbatim' });

/** The addresses checked for the connection being opened right now, read back by the lookup hook. */
interface CheckedTarget {
  hostname: string;
  addresses: ResolvedAddress[];
}

function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const bare = text.split('%')[0] ?? '';
  if (!ipaddr.isValid(bare) || net.isIP(bare) === 0) return null;
  return ipaddr.process(bare); // IPv4-mapped IPv6 becomes plain IPv4
}

function sameAddress(a: ipaddr.IPv4 | ipaddr.IPv6, b: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return a.kind() === b.kind() && a.toByteArray().join('.') === b.toByteArray().join('.');
}

function isUnspecified(addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  return addr.toByteArray().every((byte) => byte === 0);
}

/** Addresses that reach this machine: loopback, unspecified, and every interface address. */
function isLocalAddress(addr: ipaddr.IPv4 | ipaddr.IPv6): boolean {
  if (addr.range() === 'loopback' || isUnspecified(addr)) return true;
  for (const entries of Object.values(os.networkInterfaces())) {
    for (const entry of entries ?? []) {
      const local = parseAddress(entry.address);
      if (local && sameAddress(local, addr)) return true;
    }
  }
  return false;
}

function isSelfEndpoint(
  address: string,
  port: number,
  endpoints: ReadonlyArray<{ address: string; port: number }>,
): boolean {
  const target = parseAddress(address);
  if (!target) return false;
  return endpoints.some((endpoint) => {
    if (endpoint.port !== port) return false;
    const listener = parseAddress(endpoint.address);
    if (!listener) return false;
    // A listener on 0.0.0.0 or :: answers on every local address.
    if (isUnspecified(listener)) return isLocalAddress(target);
    return sameAddress(listener, target);
  });
}

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new FastImageCacheError('origin_timeout', `${what} timed out after ${ms} ms`));
    }, ms);
  });
  return Promise.race([work, timeout]).finally(() => {
    clearTimeout(timer);
  });
}

/**
 * An undici connector that decides at connect time, inside the dispatcher, whether
 * a destination may be reached: the hostname is resolved once, every address is
 * checked, and the socket connects only to those checked addresses (the lookup
 * hook hands them to net/tls instead of resolving again), so a DNS answer that
 * changes between check and connect (rebinding) gains nothing.
 */
export function createGuardedConnector(options: GuardedConnectorOptions): buildConnector.connector {
  const { policy, logger } = options;
  const resolve = options.resolve ?? systemResolve;
  const addressPolicy = addressPolicyFor(policy);
  const current = new AsyncLocalStorage<CheckedTarget>();

  const checkedLookup: LookupFunction = (hostname, lookupOptions, callback) => {
    const target = current.getStore();
    if (!target || target.hostname !== hostname) {
      // Fail closed: a lookup outside a checked connect must never resolve freely.
      callback(new FastImageCacheError('address_denied', `unchecked lookup for ${hostname}`), '', 0);
      return;
    }
    const family = lookupOptions.family === 4 || lookupOptions.family === 6 ? lookupOptions.family : 0;
    const addresses = target.addresses.filter((a) => family === 0 || a.family === family);
    const first = addresses[0];
    if (!first) {
      const err = Object.assign(new Error(`no IPv${family} address for ${hostname}`), { code: 'ENOTFOUND' });
      callback(err, '', 0);
      return;
    }
    if (lookupOptions.all) callback(null, addresses);
    else callback(null, first.address, first.family);
  };

  // HTTP/1.1 only (no h2 via ALPN): one well-understood framing for the size and time limits.
  const baseOptions = { timeout: options.policy.connectTimeoutMs, lookup: checkedLookup, allowH2: false };
  const base = buildConnector(baseOptions);
  const tlsConnectors = new Map<string, buildConnector.connector>();

  /** The connector for a host: the base one, or one carrying that origin's TLS profile. */
  function connectorFor(hostname: string, protocol: string): buildConnector.connector {
    const profile = protocol === 'https:' ? options.tls?.profileFor(hostname) : undefined;
    if (!profile) return base;
    let connector = tlsConnectors.get(profile.pattern);
    if (!connector) {
      connector = buildConnector({ ...baseOptions, ...profile.options });
      tlsConnectors.set(profile.pattern, connector);
    }
    return connector;
  }

  async function checkTarget(hostname: string, port: number): Promise<ResolvedAddress[]> {
    const family = net.isIP(hostname);
    let addresses: ResolvedAddress[];
    if (family !== 0) {
      addresses = [{ address: hostname, family }];
    } else {
      try {
        addresses = await withTimeout(resolve(hostname), policy.connectTimeoutMs, `DNS lookup of ${hostname}`);
      } catch (err) {
        if (err instanceof FastImageCacheError) throw err;
        const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
        throw new FastImageCacheError('origin_error', `DNS lookup of ${hostname} failed: ${code}`, { cause: err });
      }
      if (addresses.length === 0) throw new FastImageCacheError('origin_error', `no address for ${hostname}`);
    }
    // One denied address refuses the whole connection: which address the socket
    // would pick is not ours to predict.
    for (const { address } of addresses) {
      const verdict = addressPolicy.check(address);
      if (!verdict.allowed) throw new FastImageCacheError('address_denied', `${hostname}: ${verdict.reason}`);
    }
    const endpoints = policy.selfEndpoints?.() ?? [];
    for (const { address } of addresses) {
      if (isSelfEndpoint(address, port, endpoints)) {
        throw new FastImageCacheError('loop_denied', `${hostname} (${address}:${port}) is this proxy`);
      }
    }
    return addresses;
  }

  return function guardedConnect(connectOptions, callback) {
    if (connectOptions.socketPath || connectOptions.httpSocket) {
      callback(new FastImageCacheError('address_denied', 'only direct TCP connections are allowed'), null);
      return;
    }
    let hostname = connectOptions.hostname;
    if (hostname.startsWith('[') && hostname.endsWith(']')) hostname = hostname.slice(1, -1);
    const port = Number(connectOptions.port) || (connectOptions.protocol === 'https:' ? 443 : 80);

    checkTarget(hostname, port).then(
      (addresses) => {
        // IP literals never reach the lookup hook: net connects to them directly.
        current.run({ hostname, addresses }, () => {
          connectorFor(hostname, connectOptions.protocol)(connectOptions, callback);
        });
      },
      (err: unknown) => {
        logger?.debug({ host: hostname, port, err }, 'connection refused by address guard');
        callback(err as Error, null);
      },
    );
  };
}
