import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import tls, { type ConnectionOptions, type DetailedPeerCertificate, type PeerCertificate } from 'node:tls';
import { ConfigError, FastImageCacheError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { hostMatches, normalizeHost } from './url-policy.ts';

/**
 * Per-origin TLS for operators who need it: an extra CA bundle trusted for
 * one origin host only, and SPKI pinning (HPKP-style pins). Everything else
 * keeps Node's default verification; a pin is checked on top of it, never
 * instead of it.
 */

/** What the operator configures for one origin host (or `*.example.com`). */
export interface OriginTlsSettings {
  /** PEM file of extra CA certificates trusted for this origin, on top of the default roots. */
  caFile?: string | undefined;
  /** base64 SHA-256 of a SubjectPublicKeyInfo; one must match a certificate of the verified chain. */
  pins?: readonly string[] | undefined;
}

/** Settings by origin host pattern. */
export type OriginTlsConfig = Readonly<Record<string, OriginTlsSettings>>;

/** The TLS options added to connections to one host. */
export interface OriginTlsProfile {
  /** The configured host pattern: one connector (and one TLS session cache) per profile. */
  pattern: string;
  options: Pick<ConnectionOptions, 'ca' | 'checkServerIdentity'>;
}

export interface OriginTls {
  /** The profile for an origin host, or undefined for the default verification. */
  profileFor(hostname: string): OriginTlsProfile | undefined;
}

/** `sha256/` prefix (as some HTTP clients write pins) is accepted and dropped. */
const PIN = /^(?:sha256\/)?([A-Za-z0-9+/]{43}=)$/;

/** The pin of a certificate: base64 SHA-256 of its DER SubjectPublicKeyInfo. */
export function spkiPin(certificate: X509Certificate | Buffer): string {
  const cert = Buffer.isBuffer(certificate) ? new X509Certificate(certificate) : certificate;
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

function parsePins(pins: readonly string[], setting: string): Set<string> {
  const out = new Set<string>();
  for (const pin of pins) {
    const match = PIN.exec(pin.trim());
    if (!match?.[1]) throw new ConfigError(setting, 'each pin must be the base64 SHA-256 of a SubjectPublicKeyInfo (44 characters)');
    out.add(match[1]);
  }
  return out;
}

/** The certificates of a PEM bundle, each checked to parse. */
function readCaBundle(path: string, setting: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(setting, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (pems.length === 0) throw new ConfigError(setting, `${path} holds no PEM certificate`);
  for (const pem of pems) {
    try {
      new X509Certificate(pem);
    } catch {
      throw new ConfigError(setting, `${path} holds a certificate that does not parse`);
    }
  }
  return pems;
}

function isDetailed(cert: PeerCertificate): cert is DetailedPeerCertificate {
  return 'issuerCertificate' in cert;
}

/** Pins of every certificate in the presented chain, leaf first (the root refers to itself). */
function chainPins(leaf: PeerCertificate): string[] {
  const pins: string[] = [];
  const seen = new Set<PeerCertificate>();
  let cert: PeerCertificate | undefined = leaf;
  while (cert !== undefined && !seen.has(cert) && seen.size < 16) {
    seen.add(cert);
    if (cert.raw.length > 0) pins.push(spkiPin(cert.raw));
    cert = isDetailed(cert) ? cert.issuerCertificate : undefined;
  }
  return pins;
}

function pinChecker(pattern: string, pins: ReadonlySet<string>, logger: Logger | undefined): typeof tls.checkServerIdentity {
  return (hostname, cert) => {
    // Name checks first, exactly as without pinning.
    const identityError = tls.checkServerIdentity(hostname, cert);
    if (identityError) return identityError;
    if (chainPins(cert).some((pin) => pins.has(pin))) return undefined;
    logger?.warn({ host: hostname, pattern }, 'origin TLS key does not match the configured pins; connection refused');
    return new FastImageCacheError('origin_error', `TLS: no certificate of ${hostname} matches the SPKI pins for ${pattern}`);
  };
}

/** The CAs Node trusts by default (bundled roots plus NODE_EXTRA_CA_CERTS), to which a bundle is added. */
function defaultCas(): string[] {
  return tls.getCACertificates('default');
}

/**
 * Reads CA bundles and checks pins once, at start-up: a bad file or pin is a
 * ConfigError naming `originTls.<host>`, never a surprise at the first request.
 */
export function loadOriginTls(config: OriginTlsConfig, logger?: Logger): OriginTls {
  const profiles: OriginTlsProfile[] = [];
  for (const [pattern, settings] of Object.entries(config)) {
    const setting = `originTls.${pattern}`;
    const host = pattern.startsWith('*.') ? normalizeHost(pattern.slice(2)) : normalizeHost(pattern);
    if (host === '') throw new ConfigError(setting, 'not a host name');
    const options: OriginTlsProfile['options'] = {};
    if (settings.caFile !== undefined) options.ca = [...defaultCas(), ...readCaBundle(settings.caFile, `${setting}.caFile`)];
    const pins = parsePins(settings.pins ?? [], `${setting}.pins`);
    if (pins.size > 0) options.checkServerIdentity = pinChecker(pattern, pins, logger);
    if (options.ca === undefined && options.checkServerIdentity === undefined) continue;
    profiles.push({ pattern, options });
  }

  // An exact host wins over a wildcard; among wildcards the longest suffix wins.
  const ranked = [...profiles].sort((a, b) => rank(b.pattern) - rank(a.pattern));
  return {
    profileFor(hostname) {
      return ranked.find((profile) => hostMatches(hostname, profile.pattern));
    },
  };
}

function rank(pattern: string): number {
  return pattern.startsWith('*.') ? pattern.length : Number.MAX_SAFE_INTEGER;
}
