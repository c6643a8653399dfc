import { existsSync, lstatSync, readFileSync, type Stats } from 'node:fs';
import { join, relative, isAbsolute } from 'node:path';
import { decodeKey, generatedKeyPath, type Config } from '../config/index.ts';
import { loadOriginTls } from '../download/index.ts';
import { ConfigError } from '../errors.ts';
import { isLoopbackHost } from './loopback.ts';

/**
 * The checks behind `fastimagecache doctor`: each looks at one aspect of a
 * deployment (files on disk and the effective configuration) and says what
 * is wrong and how to fix it. They only read: nothing is created or changed.
 */

export type Severity = 'high' | 'medium' | 'low' | 'info';

export const SEVERITIES: readonly Severity[] = ['high', 'medium', 'low', 'info'];

export interface Finding {
  /** Stable identifier, for scripts and tests (`cache-dir-writable`). */
  id: string;
  severity: Severity;
  /** What is wrong, in one sentence. */
  message: string;
  /** What to do about it. */
  fix: string;
}

export interface CheckContext {
  config: Config;
  /** The uid doctor runs as (undefined where the platform has none): ownership is judged against it. */
  uid: number | undefined;
}

/** Decoders whose libraries have a long record of memory-safety bugs (README, "Production"). */
export const RISKY_DECODERS: Readonly<Record<string, string>> = {
  avif: 'AVIF is decoded by libheif/libaom',
  heif: 'HEIF is decoded by libheif',
  heic: 'HEIC is decoded by libheif',
  tiff: 'TIFF is decoded by libtiff, with many rarely used compression schemes',
  svg: 'SVG is rendered by librsvg and parsed by libxml2',
  jp2: 'JPEG 2000 is decoded by OpenJPEG',
  pdf: 'PDF is rendered by a full PDF engine',
  magick: 'ImageMagick handles dozens of legacy formats',
};

function finding(id: string, severity: Severity, message: string, fix: string): Finding {
  return { id, severity, message, fix };
}

const octal = (mode: number): string => (mode & 0o777).toString(8).padStart(4, '0');

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** A setting read by path, whatever version of the schema this build has (`admin.host`). */
function settingAt(config: Config, path: string): unknown {
  let node: unknown = config;
  for (const part of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** A file holding a secret: present, not readable by group or others, owned by the service user. */
function checkSecretFile(ctx: CheckContext, path: string, what: string, idPrefix: string): { findings: Finding[]; readable: boolean } {
  const st = lstatOrUndefined(path);
  if (!st) {
    return {
      findings: [finding(`${idPrefix}-missing`, 'high', `${what} ${path} does not exist`, `create it (chmod 600, owned by the service user) or fix the path`)],
      readable: false,
    };
  }
  const findings: Finding[] = [];
  if (st.isSymbolicLink() || !st.isFile()) {
    findings.push(finding(`${idPrefix}-not-file`, 'high', `${what} ${path} is not a regular file`, 'point the setting at a regular file'));
    return { findings, readable: false };
  }
  if ((st.mode & 0o077) !== 0) {
    findings.push(
      finding(`${idPrefix}-mode`, 'high', `${what} ${path} is readable by group or others (mode ${octal(st.mode)}); the server refuses it`, `chmod 600 ${path}`),
    );
  }
  if (ctx.uid !== undefined && st.uid !== ctx.uid) {
    findings.push(
      finding(`${idPrefix}-owner`, 'medium', `${what} ${path} is owned by uid ${st.uid}, not by the user running this check (uid ${ctx.uid})`,
        `chown the file to the service user, and run doctor as that user`),
    );
  }
  return { findings, readable: (st.mode & 0o077) === 0 };
}

function invalidKeys(text: string, setting: string): Finding[] {
  const lines = text.split(/[\n,]/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) return [finding('key-invalid', 'high', `${setting} holds no key`, 'add a key: openssl rand -hex 32')];
  for (const line of lines) {
    try {
      decodeKey(line, setting);
    } catch (err) {
      // The ConfigError says why (length, encoding) and never repeats the key.
      const reason = err instanceof ConfigError ? err.message : 'unreadable key';
      return [finding('key-invalid', 'high', `a signing key is not acceptable: ${reason}`, 'use keys of at least 32 random bytes, hex or base64: openssl rand -hex 32')];
    }
  }
  return [];
}

export function checkCacheDir({ config, uid }: CheckContext): Finding[] {
  const dir = config.cacheDir;
  const st = lstatOrUndefined(dir);
  if (!st) {
    return [finding('cache-dir-missing', 'info', `cache directory ${dir} does not exist yet; the server creates it (mode 0700) at first start`,
      'nothing to do; or create it now, owned by the service user, mode 0700')];
  }
  if (st.isSymbolicLink()) {
    return [finding('cache-dir-symlink', 'high', `cache directory ${dir} is a symbolic link; the server refuses it`, 'set cacheDir to the real directory')];
  }
  if (!st.isDirectory()) {
    return [finding('cache-dir-not-directory', 'high', `cache directory ${dir} is not a directory`, 'set cacheDir to a dedicated directory')];
  }
  const out: Finding[] = [];
  if ((st.mode & 0o022) !== 0) {
    out.push(finding('cache-dir-writable', 'high',
      `cache directory ${dir} is writable by ${(st.mode & 0o002) !== 0 ? 'anyone' : 'its group'} (mode ${octal(st.mode)}): others could plant or swap cached images`,
      `chmod 700 ${dir}`));
  } else if ((st.mode & 0o055) !== 0) {
    out.push(finding('cache-dir-readable', 'medium',
      `cache directory ${dir} can be listed or read by group or others (mode ${octal(st.mode)}): they see what is cached`, `chmod 700 ${dir}`));
  }
  if (uid !== undefined && st.uid !== uid) {
    out.push(finding('cache-dir-owner', 'medium', `cache directory ${dir} is owned by uid ${st.uid}, not by the user running this check (uid ${uid})`,
      `chown -R <service user> ${dir}, and run doctor as the service user (sudo -u <service user> fastimagecache doctor)`));
  }
  if (config.publicDir !== undefined && isInside(dir, config.publicDir)) {
    out.push(finding('cache-dir-public', 'high', `cache directory ${dir} is inside the public directory ${config.publicDir}; the server refuses it`,
      'move the cache outside every web root, e.g. /var/cache/fastimagecache'));
  }
  const secret = lstatOrUndefined(join(dir, '.secret'));
  if (secret && (secret.mode & 0o077) !== 0) {
    out.push(finding('cache-secret-mode', 'high', `${join(dir, '.secret')} (the key of cache file names) is readable by group or others; the server refuses it`,
      `chmod 600 ${join(dir, '.secret')}`));
  }
  return out;
}

export function checkSigningKeys(ctx: CheckContext): Finding[] {
  const { config } = ctx;
  if (config.key.length > 0) {
    const out = invalidKeys(config.key.join(','), 'key');
    out.push(finding('key-in-env', 'low',
      'signing keys come from the environment (FASTIMAGECACHE_KEY): child processes inherit them and the same user (and root) can read them in /proc',
      'put the keys in a file (chmod 600, owned by the service user) and set keyFile instead'));
    if (config.keyFile !== undefined) {
      out.push(finding('key-file-ignored', 'info', `keyFile ${config.keyFile} is ignored because FASTIMAGECACHE_KEY is set`, 'unset one of the two'));
    }
    return out;
  }
  if (config.keyFile !== undefined) {
    const { findings, readable } = checkSecretFile(ctx, config.keyFile, 'key file', 'key-file');
    if (readable) findings.push(...invalidKeys(readFileSync(config.keyFile, 'utf8'), 'keyFile'));
    return findings;
  }
  const path = generatedKeyPath(config);
  if (!existsSync(path)) {
    return [finding('key-not-generated', 'info', `no signing key configured; one will be generated at first start in ${path}`,
      'to manage keys yourself, create a key file (openssl rand -hex 32, chmod 600) and set keyFile')];
  }
  const { findings, readable } = checkSecretFile(ctx, path, 'generated key file', 'key-file');
  if (readable) findings.push(...invalidKeys(readFileSync(path, 'utf8'), 'stateDir'));
  const stateDir = lstatOrUndefined(config.stateDir);
  if (stateDir && (stateDir.mode & 0o077) !== 0) {
    findings.push(finding('state-dir-mode', 'medium', `state directory ${config.stateDir} is open to group or others (mode ${octal(stateDir.mode)})`,
      `chmod 700 ${config.stateDir}`));
  }
  return findings;
}

export function checkListeners({ config }: CheckContext): Finding[] {
  const out: Finding[] = [];
  const publicHost = !isLoopbackHost(config.host);
  if (!config.requireSignature) {
    out.push(finding('signing-disabled', 'medium', 'requireSignature is false: anyone who reaches the server can make it fetch any allowed URL',
      'set requireSignature: true and hand out signed URLs (fastimagecache sign)'));
    if (publicHost) {
      out.push(finding('open-proxy', 'high', `the server listens on ${config.host}, beyond loopback, with signing disabled: an open image proxy`,
        'set requireSignature: true, or listen on 127.0.0.1 behind a proxy that signs'));
    }
  } else if (publicHost) {
    out.push(finding('public-listener', 'info', `the server listens on ${config.host}, beyond loopback`,
      'put a CDN or nginx in front (README, "Production"), or listen on 127.0.0.1 behind it'));
  }

  const adminHost = settingAt(config, 'admin.host');
  const adminOn = typeof settingAt(config, 'admin.token') === 'string' || typeof settingAt(config, 'admin.tokenFile') === 'string';
  if (adminOn && typeof adminHost === 'string' && !isLoopbackHost(adminHost)) {
    out.push(finding('admin-exposed', 'high',
      `the admin listener (purge, reload, config) is on ${adminHost}, beyond loopback: its token crosses the network in clear text`,
      'set admin.host: 127.0.0.1 and reach it over SSH or from the same machine'));
  }
  const tokenFile = settingAt(config, 'admin.tokenFile');
  if (typeof tokenFile === 'string') out.push(...checkSecretFile({ config, uid: undefined }, tokenFile, 'admin token file', 'admin-token-file').findings);
  if (settingAt(config, 'metrics.onMainListener') === true && publicHost) {
    out.push(finding('metrics-public', 'low', `GET /metrics is answered on the public listener (${config.host})`,
      'set metrics.onMainListener: false and scrape the admin listener'));
  }
  return out;
}

export function checkOriginPolicy({ config }: CheckContext): Finding[] {
  const out: Finding[] = [];
  if (config.allowPrivateNetworks) {
    out.push(finding('private-networks-allowed', 'high',
      'allowPrivateNetworks is true: sources may point at private, loopback and link-local addresses (SSRF into your network)',
      'set allowPrivateNetworks: false and list only the ranges you need in allowedPrivateRanges'));
  }
  if (config.allowedPrivateRanges.length > 0) {
    out.push(finding('private-ranges-allowed', 'low', `these private ranges are reachable as origins: ${config.allowedPrivateRanges.join(', ')}`,
      'keep the list to the hosts that really serve images; prefer /32 (or /128) entries'));
  }
  if (config.allowHttp) {
    out.push(finding('http-origins-allowed', 'medium', 'allowHttp is true: images fetched over plain HTTP can be read and swapped on the way',
      'set allowHttp: false and fetch from https origins'));
  }
  if (config.allowedPorts === '*') {
    out.push(finding('any-port', 'low', 'allowedPorts is "*": sources may name any port of a public host', 'list the ports you need (default 80,443)'));
  }
  try {
    loadOriginTls(config.originTls);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    out.push(finding('origin-tls-invalid', 'high', `originTls is not usable (${err.message}); the server will not start`, 'fix the CA file path or the pin'));
  }
  return out;
}

/** The input formats enabled, whatever shape this build's `inputFormats` has (list or map of booleans). */
function enabledFormats(value: unknown): string[] | undefined {
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string').map((v) => v.toLowerCase());
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value as Record<string, unknown>).filter(([, on]) => on === true).map(([name]) => name.toLowerCase());
  }
  return undefined;
}

export function checkDecoders({ config }: CheckContext): Finding[] {
  const out: Finding[] = [];
  const formats = enabledFormats(settingAt(config, 'inputFormats'));
  for (const format of formats ?? []) {
    const why = RISKY_DECODERS[format];
    if (why !== undefined) {
      out.push(finding('risky-decoder', 'medium', `input format ${format} is enabled: ${why}, a frequent source of security fixes`,
        `remove ${format} from inputFormats unless you need it, and keep sharp current (npm run deps:check)`));
    }
  }
  if (settingAt(config, 'svg') === 'rasterize' && !(formats ?? []).includes('svg')) {
    out.push(finding('risky-decoder', 'medium', `svg is "rasterize": ${RISKY_DECODERS.svg ?? 'SVG is rendered'}`,
      'refuse SVG sources unless you need them'));
  }
  return out;
}

export function checkLogging({ config }: CheckContext): Finding[] {
  if (config.logLevel === 'debug' || config.logLevel === 'trace') {
    return [finding('verbose-logging', 'low', `logLevel is ${config.logLevel}: logs carry origin hosts, addresses and timings in detail`,
      'use logLevel: info in production')];
  }
  return [];
}

const SEVERITY_ORDER = new Map(SEVERITIES.map((s, i) => [s, i]));

/** Every check, most severe findings first. */
export function checkDeployment(ctx: CheckContext): Finding[] {
  const findings = [checkCacheDir, checkSigningKeys, checkListeners, checkOriginPolicy, checkDecoders, checkLogging].flatMap((check) => check(ctx));
  return findings.sort((a, b) => (SEVERITY_ORDER.get(a.severity) ?? 0) - (SEVERITY_ORDER.get(b.severity) ?? 0));
}
