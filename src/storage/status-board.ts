import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { errnoCode } from './errno.ts';

export const STATUS_DIR_NAME = '.status';
const STATUS_FILE = /^(\d+)\.json$/;

/**
 * Each running server publishes its counters (hits, misses, …) as
 * `<cacheDir>/.status/<pid>.json`, so `fastimagecache stats`, a separate
 * process, can report the hit ratio since start.
 */
export class StatusBoard {
  readonly #dir: string;
  readonly #file: string;

  constructor(cacheDir: string, pid = process.pid) {
    this.#dir = path.join(cacheDir, STATUS_DIR_NAME);
    this.#file = path.join(this.#dir, `${pid}.json`);
  }

  async publish(status: Record<string, unknown>): Promise<void> {
    await fs.mkdir(this.#dir, { mode: 0o700 }).catch((err: unknown) => {
      if (errnoCode(err) !== 'EEXIST') throw err;
    });
    const tmp = path.join(this.#dir, `.${randomBytes(6).toString('hex')}.tmp`);
    await fs.writeFile(tmp, JSON.stringify(status), { mode: 0o600 });
    await fs.rename(tmp, this.#file);
  }

  async withdraw(): Promise<void> {
    await fs.unlink(this.#file).catch(() => {});
  }
}

/** The statuses of the live processes using `cacheDir` (files of dead ones are removed). */
export async function readStatuses(cacheDir: string): Promise<Array<{ pid: number; status: Record<string, unknown> }>> {
  const dir = path.join(cacheDir, STATUS_DIR_NAME);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
  const out: Array<{ pid: number; status: Record<string, unknown> }> = [];
  for (const name of names) {
    const m = STATUS_FILE.exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (!isAlive(pid)) {
      await fs.unlink(path.join(dir, name)).catch(() => {});
      continue;
    }
    try {
      const status: unknown = JSON.parse(await fs.readFile(path.join(dir, name), 'utf8'));
      if (typeof status === 'object' && status !== null && !Array.isArray(status)) out.push({ pid, status: status as Record<string, unknown> });
    } catch {
      // being replaced or not ours: skip it
    }
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}
