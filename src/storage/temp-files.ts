import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * Names of files and directories in a cache directory's `tmp/`, and which of
 * them a starting process may remove. Several live processes share `tmp/`
 * (cluster workers, a worker's replacement, the old and new cache of a reload
 * in one process), so start-up cleanup must take only what dead processes
 * left. Each name carries its writer's host, pid and a per-process token:
 *
 *   <host8>-<pid>-<process16>-<random16>.<suffix>
 *
 * A name of this host whose pid is gone (or is ours, but with another
 * process's token: the pid was reused) is a leftover. Other hosts' names (a
 * directory shared between containers, whose pids mean nothing here) and
 * names of live pids are kept until they are older than any write could be.
 * Names in no known form come from older versions and are leftovers.
 */

/** Long past any write in progress: a leftover whose owner cannot be judged goes after this. */
export const ABANDONED_TEMP_MS = 60 * 60 * 1000;

const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
/** Tells this process from an earlier one that had the same pid. */
const PROCESS_TOKEN = randomBytes(8).toString('hex');
const TEMP_NAME = /^([0-9a-f]{8})-([1-9][0-9]{0,9})-([0-9a-f]{16})-[0-9a-f]{16}\.[a-z.]+$/;

/** A fresh name for a temp file or directory of this process (`suffix`: tmp, purge, clear…). */
export function tempName(suffix: string): string {
  return `${HOST_TAG}-${process.pid}-${PROCESS_TOKEN}-${randomBytes(8).toString('hex')}.${suffix}`;
}

/** Whether process `pid` exists on this host (EPERM: it does, owned by someone else). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the temp entry `name`, last changed at `changedMs` (the later of
 * mtime and ctime: a directory renamed in for removal keeps its old mtime),
 * was left by a process that is gone (so it may be removed), or may still be
 * in use by a live one.
 */
export function isLeftover(name: string, changedMs: number, now: number, alive: (pid: number) => boolean = isProcessAlive): boolean {
  const match = TEMP_NAME.exec(name);
  if (match === null) return true;
  const [, host, pidText, token] = match as unknown as [string, string, string, string];
  if (now - changedMs > ABANDONED_TEMP_MS) return true;
  if (host !== HOST_TAG) return false;
  const pid = Number(pidText);
  if (pid === process.pid) return token !== PROCESS_TOKEN;
  return !alive(pid);
}
