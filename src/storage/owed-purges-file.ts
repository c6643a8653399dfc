import fs from 'node:fs/promises';
import path from 'node:path';
import { TMP_DIR_NAME } from './cache-dir.ts';
import { errnoCode } from './errno.ts';
import { isLeftover, tempName } from './temp-files.ts';

export const OWED_PURGES_DIR_NAME = '.owed-purges';

/** Records this process took over from processes that are gone; `release` removes their files once the records are kept elsewhere. */
export interface AdoptedRecords {
  records: unknown[];
  release(): Promise<void>;
}

/**
 * Purges a process made while Redis could not take them, kept in
 * `<cacheDir>/.owed-purges/` (one JSON file per process, named like its temp
 * files) so that they survive the process: the next process started over the
 * directory adopts the files of processes that are gone and carries their
 * purges. The records are opaque here; the cache layer checks them.
 */
export class OwedPurgesFile {
  readonly #cacheDir: string;
  readonly #dir: string;
  readonly #file: string;
  readonly #now: () => number;

  constructor(cacheDir: string, opts: { now?: () => number } = {}) {
    this.#cacheDir = cacheDir;
    this.#dir = path.join(cacheDir, OWED_PURGES_DIR_NAME);
    this.#file = path.join(this.#dir, tempName('json'));
    this.#now = opts.now ?? Date.now;
  }

  /** Replaces what this process owes (written whole, 0600); an empty list removes its file. */
  async save(records: readonly unknown[]): Promise<void> {
    if (records.length === 0) {
      await fs.rm(this.#file, { force: true });
      return;
    }
    await fs.mkdir(this.#dir, { mode: 0o700 }).catch((err: unknown) => {
      if (errnoCode(err) !== 'EEXIST') throw err;
    });
    const tmp = path.join(this.#cacheDir, TMP_DIR_NAME, tempName('tmp'));
    await fs.writeFile(tmp, JSON.stringify(records), { mode: 0o600, flag: 'wx' });
    try {
      await fs.rename(tmp, this.#file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Takes the files of processes that are gone (each renamed to a name of
   * this process first, so two starting processes never both take one) and
   * returns their records. A file that is not a JSON list is dropped.
   */
  async adopt(): Promise<AdoptedRecords> {
    let names: string[];
    try {
      names = await fs.readdir(this.#dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { records: [], release: () => Promise.resolve() };
      throw err;
    }
    const records: unknown[] = [];
    const taken: string[] = [];
    for (const name of names) {
      const file = path.join(this.#dir, name);
      if (file === this.#file) continue;
      let changedMs: number;
      try {
        const stat = await fs.lstat(file);
        if (!stat.isFile()) continue;
        changedMs = Math.max(stat.mtimeMs, stat.ctimeMs);
      } catch {
        continue; // taken by another process meanwhile
      }
      if (!isLeftover(name, changedMs, this.#now())) continue; // its process is alive and still owes them
      const claimed = path.join(this.#dir, tempName('json'));
      try {
        await fs.rename(file, claimed);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      taken.push(claimed);
      try {
        const value: unknown = JSON.parse(await fs.readFile(claimed, 'utf8'));
        if (Array.isArray(value)) records.push(...(value as unknown[]));
      } catch {
        // damaged: nothing to carry from it
      }
    }
    return {
      records,
      release: async () => {
        await Promise.all(taken.map((file) => fs.rm(file, { force: true })));
      },
    };
  }
}
