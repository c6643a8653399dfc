/**
 * The systems we compare against, installed by the bench itself (never by
 * `npm install`): nginx, Varnish and wrk from Debian's packages, ipx from npm
 * into bench/.peers/ (git-ignored, not one of the project's dependencies).
 * A peer that cannot be installed is reported and skipped.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCommand } from './processes.ts';

/** Pinned so that runs compare like for like. */
export const IPX_VERSION = '3.1.1';
export const PEERS_DIR = path.join(import.meta.dirname, '.peers');

export interface PeerStatus {
  /** Absolute path of the binary (or the ipx package directory), if available. */
  path?: string;
  version?: string;
  /** Why it is missing, when it is. */
  missing?: string;
}

export interface Peers {
  nginx: PeerStatus;
  varnish: PeerStatus;
  wrk: PeerStatus;
  ipx: PeerStatus;
}

type Log = (line: string) => void;

const APT_PEERS = { nginx: 'nginx', varnish: 'varnishd', wrk: 'wrk' } as const;

async function findBinary(name: string): Promise<string | undefined> {
  const { code, stdout } = await runCommand('sh', ['-c', `command -v ${name}`]);
  if (code === 0 && stdout.trim()) return stdout.trim();
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']) {
    if (existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

async function versionOf(binary: string, args: string[]): Promise<string> {
  const { stdout, stderr } = await runCommand(binary, args, { timeoutMs: 5000 });
  return `${stdout}${stderr}`.split('\n')[0]?.trim() ?? '';
}

/**
 * apt-get install of the missing Debian packages (root only), with
 * `apt-get update` once first. A temporary policy-rc.d stops the packages'
 * own services from starting: the bench runs its own instances on free
 * loopback ports and leaves no daemon behind.
 */
async function aptInstall(packages: string[], log: Log): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root: install them with apt-get yourself';
  if (!(await findBinary('apt-get'))) return 'apt-get not found (not a Debian-like system)';
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  log(`installing ${packages.join(', ')} with apt-get (apt-get update first)…`);
  const update = await runCommand('apt-get', ['update'], { env, timeoutMs: 300_000 });
  if (update.code !== 0) return `apt-get update failed: ${update.stderr.trim().split('\n').pop() ?? ''}`;
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\n# fastimagecache bench: do not start services while installing\nexit 101\n', { mode: 0o755 });
  try {
    const install = await runCommand('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      env,
      timeoutMs: 600_000,
    });
    if (install.code !== 0) return `apt-get install failed: ${install.stderr.trim().split('\n').pop() ?? ''}`;
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
  return undefined;
}

async function ensureIpx(install: boolean, log: Log): Promise<PeerStatus> {
  const pkg = path.join(PEERS_DIR, 'node_modules', 'ipx', 'package.json');
  const installedVersion = () =>
    existsSync(pkg) ? (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version : undefined;
  if (installedVersion() !== IPX_VERSION && install) {
    log(`installing ipx@${IPX_VERSION} into ${PEERS_DIR} (npm)…`);
    mkdirSync(PEERS_DIR, { recursive: true });
    writeFileSync(
      path.join(PEERS_DIR, 'package.json'),
      `${JSON.stringify({ name: 'fastimagecache-bench-peers', private: true, description: 'Installed by npm run bench; not a dependency of fastimagecache.' }, null, 2)}\n`,
    );
    const npm = await runCommand('npm', ['install', '--no-audit', '--no-fund', '--save-exact', `ipx@${IPX_VERSION}`], {
      cwd: PEERS_DIR,
      timeoutMs: 300_000,
    });
    if (npm.code !== 0) return { missing: `npm install ipx failed: ${npm.stderr.trim().split('\n').slice(-2).join(' ')}` };
  }
  const version = installedVersion();
  if (!version) return { missing: install ? 'ipx did not install' : 'not installed (run without --no-install)' };
  let sharpVersion = '?';
  const sharpPkg = path.join(PEERS_DIR, 'node_modules', 'sharp', 'package.json');
  if (existsSync(sharpPkg)) sharpVersion = (JSON.parse(readFileSync(sharpPkg, 'utf8')) as { version: string }).version;
  return { path: PEERS_DIR, version: `ipx ${version} (sharp ${sharpVersion})` };
}

export async function ensurePeers(opts: { install: boolean; log: Log }): Promise<Peers> {
  const found: Record<keyof typeof APT_PEERS, string | undefined> = {
    nginx: await findBinary('nginx'),
    varnish: await findBinary('varnishd'),
    wrk: await findBinary('wrk'),
  };
  const missing = (Object.keys(APT_PEERS) as Array<keyof typeof APT_PEERS>).filter((k) => !found[k]);
  let aptProblem: string | undefined;
  if (missing.length > 0 && opts.install) {
    aptProblem = await aptInstall(missing, opts.log);
    for (const k of missing) found[k] = await findBinary(APT_PEERS[k]);
  }
  const status = async (k: keyof typeof APT_PEERS, versionArgs: string[]): Promise<PeerStatus> => {
    const binary = found[k];
    if (!binary) return { missing: aptProblem ?? (opts.install ? 'not installed' : 'not installed (run without --no-install)') };
    let version = await versionOf(binary, versionArgs);
    if (k === 'wrk') version = /wrk \S+/.exec(version)?.[0] ?? 'wrk';
    return { path: binary, version };
  };
  return {
    nginx: await status('nginx', ['-v']),
    varnish: await status('varnish', ['-V']),
    wrk: await status('wrk', ['-v']),
    ipx: await ensureIpx(opts.install, opts.log),
  };
}
