/**
 * Child processes for the bench: spawning services into their own process
 * group (so a stop takes nginx workers and Varnish's cache process along),
 * free loopback ports, readiness polling and RSS sampling from /proc.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const HOST = '127.0.0.1';

/** A free TCP port on the loopback interface (bound once, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => { resolve(port); });
    });
  });
}

export interface Service {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** True once the process has exited. */
  hasExited(): boolean;
  /** SIGTERM (or `signal`), then SIGKILL to the whole group after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

const running = new Set<Service>();

/**
 * Starts a long-running process in its own process group, its output going to
 * `<logDir>/<name>.log`. Every service is stopped by stopAllServices() (also
 * on exit and on Ctrl-C), so no daemon outlives the bench.
 */
export function startService(
  name: string,
  command: string,
  args: readonly string[],
  opts: { logDir: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Service {
  const log = createWriteStream(path.join(opts.logDir, `${name.replace(/[^\w.-]+/g, '_')}.log`), { flags: 'a' });
  const spawnOpts: SpawnOptions = {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true, // own process group: we can signal the group, and Ctrl-C in the terminal does not race us
    stdio: ['ignore', 'pipe', 'pipe'],
  };
  const child = spawn(command, args, spawnOpts);
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let done = false;
  const exited = new Promise<number | string>((resolve) => {
    child.on('error', (err) => {
      log.write(`spawn error: ${err.message}\n`);
      done = true;
      resolve('spawn-error');
    });
    child.on('exit', (code, signal) => {
      done = true;
      resolve(code ?? signal ?? 'unknown');
    });
  });
  exited.finally(() => setTimeout(() => log.end(), 50)).catch(() => {});

  const service: Service = {
    name,
    pid: child.pid ?? -1,
    child,
    exited,
    hasExited: () => done,
    async stop(signal = 'SIGTERM', graceMs = 5000) {
      running.delete(service);
      if (done || service.pid <= 0) return;
      try {
        process.kill(service.pid, signal);
      } catch {
        /* already gone */
      }
      const timer = new Promise<'timeout'>((resolve) => setTimeout(resolve, graceMs, 'timeout').unref());
      if ((await Promise.race([exited, timer])) === 'timeout') killGroup(service.pid);
      else killGroup(service.pid); // leftovers of the group (workers that ignored the signal)
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    },
  };
  running.add(service);
  return service;
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* no such group: everyone is gone */
  }
}

export async function stopAllServices(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** Synchronous last resort on exit: SIGKILL every group we started and did not stop. */
function killAllSync(): void {
  for (const s of running) killGroup(s.pid);
  running.clear();
}
process.on('exit', killAllSync);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllSync();
    process.exit(130);
  });
}

/** Runs a command to completion, capturing its output. */
export function runCommand(
  command: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            stderr += `\n(killed after ${opts.timeoutMs} ms)`;
            child.kill('SIGKILL');
          }, opts.timeoutMs);
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      resolve({ code: null, stdout, stderr: `${stderr}${err.message}` });
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** True if `command` is on the PATH. */
export async function hasCommand(command: string): Promise<boolean> {
  const { code } = await runCommand('sh', ['-c', `command -v ${command}`]);
  return code === 0;
}

/**
 * Polls `url` until `ok(status)` (default: 200), the service exits, or the
 * deadline passes. Returns the milliseconds waited, or throws.
 */
export async function waitForHttp(
  url: string,
  opts: { timeoutMs: number; service?: Service; ok?: (status: number, headers: Headers) => boolean; intervalMs?: number },
): Promise<number> {
  const start = performance.now();
  const ok = opts.ok ?? ((status) => status === 200);
  let last = 'no answer';
  while (performance.now() - start < opts.timeoutMs) {
    if (opts.service?.hasExited()) throw new Error(`${opts.service.name} exited (${String(await opts.service.exited)}) before it was ready`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (ok(res.status, res.headers)) return performance.now() - start;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 50));
  }
  throw new Error(`${url} not ready after ${opts.timeoutMs} ms (${last})`);
}

/** pid plus all its descendants, from /proc. */
export function processTree(rootPid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [rootPid];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      // Fields after the command name (which may hold spaces) start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(fields[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      /* exited meanwhile */
    }
  }
  const out: number[] = [];
  const stack = [rootPid];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Resident set size of one process in bytes (0 if it is gone). */
export function rssBytes(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'latin1');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU time (user + system, in clock ticks) from a `/proc/.../stat` file: a process's, or one thread's (`task/<tid>/stat`). */
export function statCpuTicks(statPath: string): number {
  const stat = readFileSync(statPath, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // the name in parentheses may hold spaces
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

/** CPU time (user + system, in clock ticks) used so far by a set of processes. */
function cpuTicks(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += statCpuTicks(`/proc/${pid}/stat`);
    } catch {
      /* exited */
    }
  }
  return total;
}

/**
 * Waits until a process tree has been (nearly) idle for two samples in a row,
 * so that work left over from one scenario (abandoned requests, background
 * writes) does not run into the next. Returns the milliseconds waited.
 */
export async function waitIdle(rootPid: number, maxMs = 30_000): Promise<number> {
  const start = performance.now();
  const tree = processTree(rootPid);
  let last = cpuTicks(tree);
  let quiet = 0;
  while (performance.now() - start < maxMs && quiet < 2) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = cpuTicks(tree);
    quiet = now - last <= 2 ? quiet + 1 : 0; // ≤ 2 ticks (20 ms at 100 Hz) per 250 ms: under 10 % of a core
    last = now;
  }
  return performance.now() - start;
}

export interface RssPeak {
  /** Highest sum over the whole process tree at one instant. */
  totalBytes: number;
  /** Highest single process. */
  maxProcessBytes: number;
  processes: number;
}

/** Samples the RSS of a process tree every `intervalMs` until stopped. */
export function sampleRss(rootPid: number, intervalMs = 100): { stop(): RssPeak } {
  const peak: RssPeak = { totalBytes: 0, maxProcessBytes: 0, processes: 0 };
  let tree = processTree(rootPid);
  let ticks = 0;
  const sample = () => {
    if (ticks++ % 10 === 0) tree = processTree(rootPid); // re-walk /proc now and then: workers can be respawned
    let total = 0;
    for (const pid of tree) {
      const rss = rssBytes(pid);
      total += rss;
      if (rss > peak.maxProcessBytes) peak.maxProcessBytes = rss;
    }
    if (total > peak.totalBytes) peak.totalBytes = total;
    peak.processes = Math.max(peak.processes, tree.length);
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { ...peak };
    },
  };
}
