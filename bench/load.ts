/**
 * Load from a separate process: wrk (C, lighter on a 2-core machine) when it
 * is installed, else autocannon (devDependency) in a child process. Both take
 * the same list of paths and the same connection count for every system.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AutocannonJob } from './autocannon-runner.ts';
import { runCommand } from './processes.ts';

export type LoadTool = 'wrk' | 'autocannon';

export interface LoadJob {
  baseUrl: string;
  paths: readonly string[];
  connections: number;
  /** Time bound (always applies). */
  durationSec: number;
  /**
   * Also stop after this many responses. `paths` are then taken in order,
   * once each; give `connections` extra paths after the first `countLimit`
   * (safe to request: wrk sends them to connections whose answer is cut short).
   */
  countLimit?: number;
  /**
   * With countLimit: the completed requests must be exactly the first
   * `countLimit` paths (wrk may complete a padding path instead of a slow
   * one still in flight). Uses autocannon, which is exact but slow on large
   * bodies: for small responses only (resized images, tiny PNGs).
   */
  exact?: boolean;
  tool: LoadTool;
  workDir: string;
  /** wrk threads. */
  threads?: number;
}

export interface LoadResult {
  tool: LoadTool;
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  mbPerSec: number;
  /** Socket errors and timeouts. */
  errors: number;
  /** Responses with a status outside 2xx (wrk: 4xx/5xx only). */
  non2xx: number;
}

let jobCounter = 0;

export async function runLoad(job: LoadJob): Promise<LoadResult> {
  const id = `load-${process.pid}-${jobCounter++}`;
  const pathsFile = path.join(job.workDir, `${id}.paths`);
  writeFileSync(pathsFile, `${job.paths.join('\n')}\n`);
  const tool: LoadTool = job.exact ? 'autocannon' : job.tool;
  return tool === 'wrk' ? runWrk(job, pathsFile) : runAutocannon(job, pathsFile, id);
}

async function runWrk(job: LoadJob, pathsFile: string): Promise<LoadResult> {
  // A count limit is kept by the script of one thread (see wrk-paths.lua).
  const threads = job.countLimit ? 1 : (job.threads ?? 1);
  const script = path.join(import.meta.dirname, 'wrk-paths.lua');
  const args = [
    '-t', String(threads),
    '-c', String(Math.max(job.connections, threads)),
    '-d', `${job.durationSec}s`,
    '--timeout', '10s',
    '-s', script,
    job.baseUrl,
    '--', pathsFile, String(threads),
    ...(job.countLimit ? [String(job.countLimit), String(job.connections)] : []),
  ];
  const out = await runCommand('wrk', args, { timeoutMs: (job.durationSec + 30) * 1000 });
  const line = out.stdout.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`wrk gave no result (exit ${String(out.code)}): ${out.stderr.slice(0, 400)}${out.stdout.slice(0, 400)}`);
  const r = JSON.parse(line.slice('BENCHJSON '.length)) as {
    requests: number; durationUs: number; bytes: number; p50Us: number; p99Us: number;
    connectErrors: number; readErrors: number; writeErrors: number; timeouts: number; statusErrors: number;
  };
  const seconds = r.durationUs / 1e6;
  return {
    tool: 'wrk',
    requests: r.requests,
    seconds,
    rps: r.requests / seconds,
    p50Ms: r.p50Us / 1000,
    p99Ms: r.p99Us / 1000,
    mbPerSec: r.bytes / seconds / 1e6,
    errors: r.connectErrors + r.readErrors + r.writeErrors + r.timeouts,
    non2xx: r.statusErrors,
  };
}

async function runAutocannon(job: LoadJob, pathsFile: string, id: string): Promise<LoadResult> {
  const config: AutocannonJob = {
    url: job.baseUrl,
    pathsFile,
    connections: job.countLimit ? Math.min(job.connections, job.countLimit) : job.connections,
    durationSec: job.durationSec,
    ...(job.countLimit ? { amount: job.countLimit } : {}),
    timeoutSec: 30,
  };
  const configFile = path.join(job.workDir, `${id}.json`);
  writeFileSync(configFile, JSON.stringify(config));
  const runner = path.join(import.meta.dirname, 'autocannon-runner.ts');
  const out = await runCommand(process.execPath, [runner, configFile], { timeoutMs: (job.durationSec + 30) * 1000 });
  const line = out.stdout.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`autocannon gave no result (exit ${String(out.code)}): ${out.stderr.slice(0, 400)}`);
  const r = JSON.parse(line.slice('BENCHJSON '.length)) as {
    requests: number; seconds: number; bytes: number; p50Ms: number; p99Ms: number; errors: number; non2xx: number;
  };
  return {
    tool: 'autocannon',
    requests: r.requests,
    seconds: r.seconds,
    rps: r.requests / r.seconds,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    mbPerSec: r.bytes / r.seconds / 1e6,
    errors: r.errors,
    non2xx: r.non2xx,
  };
}
