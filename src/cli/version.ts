import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parse, UsageError } from './args.ts';

/**
 * The versions that matter for security: this package, the Node runtime, and
 * the native image stack (sharp, libvips and every codec library it bundles),
 * whose CVEs are what an image proxy is most exposed to.
 */
export interface VersionReport {
  fastimagecache: string;
  node: string;
  /** OpenSSL as linked into Node: it verifies every origin's TLS certificate. */
  openssl: string;
  sharp: string;
  libvips: string;
  undici: string;
  /** Every library sharp reports (libvips's codecs: heif, webp, png, tiff, aom…), by name. */
  libraries: Record<string, string>;
}

const require = createRequire(import.meta.url);

/** package.json of this package: two levels up from src/cli/ and from dist/cli/ alike. */
function ownVersion(): string {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

function packageVersion(name: string): string {
  try {
    const pkg = require(`${name}/package.json`) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function collectVersions(): Promise<VersionReport> {
  // Loaded here, not at the top: other commands should not pay for the native module.
  const { default: sharp } = await import('sharp');
  const { sharp: sharpVersion, vips, ...codecs } = sharp.versions as Record<string, string | undefined>;
  const libraries: Record<string, string> = {};
  for (const [name, version] of Object.entries(codecs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (version !== undefined) libraries[name] = version;
  }
  return {
    fastimagecache: ownVersion(),
    node: process.versions.node,
    openssl: process.versions.openssl,
    sharp: sharpVersion ?? 'unknown',
    libvips: vips ?? 'unknown',
    undici: packageVersion('undici'),
    libraries,
  };
}

export function formatVersions(report: VersionReport): string {
  const rows: Array<[string, string]> = [
    ['fastimagecache', report.fastimagecache],
    ['node', report.node],
    ['openssl', report.openssl],
    ['undici', report.undici],
    ['sharp', report.sharp],
    ['libvips', report.libvips],
    ...Object.entries(report.libraries).map(([name, version]): [string, string] => [`  ${name}`, version]),
  ];
  const width = Math.max(...rows.map(([name]) => name.length));
  return rows.map(([name, version]) => `${name.padEnd(width)}  ${version}\n`).join('');
}

/** `fastimagecache version [--json]`. */
export async function versionCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean', default: false } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0] ?? ''}`);
  const report = await collectVersions();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatVersions(report));
  return 0;
}
