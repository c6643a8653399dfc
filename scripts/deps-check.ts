// `npm run deps:check`: which direct dependencies have newer releases, and
// whether the libvips that sharp bundles (the native decoders an image proxy
// is most exposed through) is older than the newest one on the registry.
//
// Exit status: 0 all current, 1 something is outdated, 2 the registry could
// not be asked (no network): nothing could be concluded.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = join(import.meta.dirname, '..');

interface NpmResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface OutdatedDependency {
  name: string;
  current: string;
  /** Newest release the range in package.json allows. */
  wanted: string;
  /** The registry's latest release. */
  latest: string;
  /** A major-version jump: read the changelog before updating. */
  major: boolean;
}

export interface LibvipsStatus {
  /** libvips that the installed sharp loads. */
  installed: string;
  /** The prebuilt libvips package checked on the registry. */
  package: string;
  /** Newest libvips release on the registry, from that package's latest version. */
  newest: string;
  outdated: boolean;
}

export interface DepsReport {
  outdated: OutdatedDependency[];
  libvips: LibvipsStatus | undefined;
  /** Why something could not be checked (no network…). */
  problems: string[];
}

function npm(args: string[]): Promise<NpmResult> {
  return new Promise((resolve) => {
    const child = spawn('npm', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => {
      resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on('close', (code) => {
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** Numeric comparison of x.y.z versions; a pre-release sorts before its release. */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): [number[], boolean] => {
    const [core = '', pre] = v.replace(/^v/, '').split('-', 2);
    return [core.split('.').map((n) => Number.parseInt(n, 10) || 0), pre !== undefined];
  };
  const [pa, preA] = parse(a);
  const [pb, preB] = parse(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return Math.sign(diff);
  }
  return preA === preB ? 0 : preA ? -1 : 1;
}

function npmError(result: NpmResult): string | undefined {
  try {
    const parsed = JSON.parse(result.stdout) as { error?: { code?: string; summary?: string } };
    if (parsed.error) return `${parsed.error.code ?? 'error'}: ${parsed.error.summary ?? 'npm failed'}`;
  } catch {
    // not JSON: judged by the exit code below
  }
  if (result.code !== 0 && result.stdout.trim() === '') return result.stderr.trim().split('\n').at(-1) ?? `npm exited ${result.code}`;
  return undefined;
}

/** `npm outdated --json` (exit 1 just means "something is outdated"); only real upgrades count. */
export function parseOutdated(json: string): OutdatedDependency[] {
  if (json.trim() === '') return [];
  const data = JSON.parse(json) as Record<string, { current?: string; wanted?: string; latest?: string }>;
  const out: OutdatedDependency[] = [];
  for (const [name, info] of Object.entries(data)) {
    const { current, wanted = '', latest = '' } = info;
    // A registry whose "latest" tag is older than what is installed is no upgrade.
    if (current === undefined || (compareVersions(latest, current) <= 0 && compareVersions(wanted, current) <= 0)) continue;
    const major = (Number.parseInt(latest, 10) || 0) > (Number.parseInt(current, 10) || 0);
    out.push({ name, current, wanted, latest, major });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The libvips version in a `@img/sharp-libvips-*` package's exports (`./lib/libvips-cpp.so.8.18.7`). */
export function libvipsFromExports(exports: unknown): string | undefined {
  const text = JSON.stringify(exports ?? '');
  return /libvips-cpp\.(?:so\.)?(\d+\.\d+\.\d+)/.exec(text)?.[1];
}

/** The prebuilt libvips package installed for this platform, e.g. `@img/sharp-libvips-linux-x64`. */
function installedLibvipsPackage(): string | undefined {
  try {
    const name = readdirSync(join(ROOT, 'node_modules', '@img')).find((n) => n.startsWith('sharp-libvips-') && !n.endsWith('-dev'));
    return name === undefined ? undefined : `@img/${name}`;
  } catch {
    return undefined;
  }
}

async function installedLibvips(): Promise<string | undefined> {
  try {
    const { default: sharp } = await import('sharp');
    return sharp.versions.vips;
  } catch {
    return undefined;
  }
}

export async function checkDependencies(): Promise<DepsReport> {
  const problems: string[] = [];
  const outdatedRun = await npm(['outdated', '--json']);
  let outdated: OutdatedDependency[] = [];
  const outdatedError = npmError(outdatedRun);
  if (outdatedError !== undefined) problems.push(`npm outdated failed (${outdatedError})`);
  else outdated = parseOutdated(outdatedRun.stdout);

  let libvips: LibvipsStatus | undefined;
  const pkg = installedLibvipsPackage();
  const installed = await installedLibvips();
  if (pkg === undefined || installed === undefined) {
    problems.push('sharp or its prebuilt libvips is not installed here (built from source?): libvips not compared');
  } else {
    const view = await npm(['view', `${pkg}@latest`, 'exports', 'version', '--json']);
    const viewError = npmError(view);
    if (viewError !== undefined) {
      problems.push(`npm view ${pkg} failed (${viewError})`);
    } else {
      const newest = libvipsFromExports((JSON.parse(view.stdout) as { exports?: unknown }).exports);
      if (newest === undefined) problems.push(`${pkg} on the registry does not say which libvips it carries`);
      else libvips = { installed, package: pkg, newest, outdated: compareVersions(installed, newest) < 0 };
    }
  }
  return { outdated, libvips, problems };
}

function format(report: DepsReport): string {
  const lines: string[] = [];
  if (report.outdated.length === 0 && report.problems.every((p) => !p.startsWith('npm outdated'))) {
    lines.push('direct dependencies: all current');
  } else if (report.outdated.length > 0) {
    lines.push('outdated direct dependencies:');
    for (const d of report.outdated) {
      lines.push(`  ${d.name.padEnd(24)} ${d.current} → ${d.latest}${d.major ? ' (major: read the changelog)' : ''}${d.wanted !== d.current ? `  (range allows ${d.wanted})` : ''}`);
    }
  }
  if (report.libvips) {
    const v = report.libvips;
    lines.push(v.outdated
      ? `libvips: sharp bundles ${v.installed}, the registry has ${v.newest} (${v.package}): update sharp to get it`
      : `libvips: sharp bundles ${v.installed}, the newest on the registry (${v.package})`);
  }
  for (const problem of report.problems) lines.push(`could not check: ${problem}`);
  return `${lines.join('\n')}\n`;
}

export function exitCodeFor(report: DepsReport): number {
  if (report.outdated.length > 0 || report.libvips?.outdated === true) return 1;
  return report.problems.length > 0 ? 2 : 0;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { json: { type: 'boolean', default: false } } });
  const report = await checkDependencies();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : format(report));
  process.exitCode = exitCodeFor(report);
}
