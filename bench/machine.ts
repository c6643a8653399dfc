/** What machine and software a run was made on, for the report. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from './processes.ts';

export interface MachineInfo {
  date: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
  fastimagecache: string;
  sharp: string;
  autocannon: string;
  loadAverageAtStart: string;
}

function packageVersion(repoRoot: string, name: string): string {
  try {
    return (JSON.parse(readFileSync(path.join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** `repoRoot`: the bench's checkout (its node_modules); `targetRoot`: the fastimagecache checkout measured. */
export async function describeMachine(repoRoot: string, targetRoot: string): Promise<MachineInfo> {
  const own = JSON.parse(readFileSync(path.join(targetRoot, 'package.json'), 'utf8')) as { version: string };
  const head = await runCommand('git', ['rev-parse', '--short', 'HEAD'], { cwd: targetRoot });
  const dirty = await runCommand('git', ['status', '--porcelain', '--', 'src'], { cwd: targetRoot });
  const commit =
    head.code === 0 ? `${head.stdout.trim()}${dirty.stdout.trim() ? ' + uncommitted changes in src/' : ''}` : `not a git checkout: ${targetRoot}`;
  let osName = `${os.type()} ${os.release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (pretty?.[1]) osName = `${pretty[1]} (${os.release()})`;
  } catch {
    /* not Linux */
  }
  return {
    date: new Date().toISOString(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: osName,
    node: process.version,
    fastimagecache: `${own.version} (${commit})`,
    sharp: packageVersion(repoRoot, 'sharp'),
    autocannon: packageVersion(repoRoot, 'autocannon'),
    loadAverageAtStart: os.loadavg().map((l) => l.toFixed(2)).join(' '),
  };
}
