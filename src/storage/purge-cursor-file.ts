import fs from 'node:fs/promises';
import path from 'node:path';
import { TMP_DIR_NAME } from './cache-dir.ts';
import { errnoCode } from './errno.ts';
import { tempName } from './temp-files.ts';

export const PURGE_CURSOR_FILE_NAME = '.purge-cursor.json';

/**
 * How far a cache directory has applied a purge log (a Redis stream id), kept
 * in `<cacheDir>/.purge-cursor.json` so that a node restarted over it can
 * apply the purges it missed while it was down. The cursor names its log, so
 * a directory moved to another Redis or key prefix starts over instead of
 * trusting an id of another stream. Processes sharing the directory (workers)
 * each write what they have applied: a cursor set back by a slower one costs
 * a replay, never a missed purge, since purges are idempotent.
 */
export class PurgeCursorFile {
  readonly #dir: string;
  readonly #file: string;
  readonly #log: string;

  constructor(cacheDir: string, log: string) {
    this.#dir = cacheDir;
    this.#file = path.join(cacheDir, PURGE_CURSOR_FILE_NAME);
    this.#log = log;
  }

  /** The id last written for this log; undefined when there is none (or it is unreadable, or another log's). */
  async read(): Promise<string | undefined> {
    let text: string;
    try {
      text = await fs.readFile(this.#file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const value: unknown = JSON.parse(text);
      if (typeof value !== 'object' || value === null) return undefined;
      const { log, id } = value as Record<string, unknown>;
      return log === this.#log && typeof id === 'string' && /^\d+-\d+$/.test(id) ? id : undefined;
    } catch {
      return undefined;
    }
  }

  /** Replaces the cursor whole (a temp file renamed over it, 0600), so a reader never sees half of one. */
  async write(id: string): Promise<void> {
    const tmp = path.join(this.#dir, TMP_DIR_NAME, tempName('tmp'));
    await fs.writeFile(tmp, JSON.stringify({ log: this.#log, id }), { mode: 0o600, flag: 'wx' });
    try {
      await fs.rename(tmp, this.#file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
  }
}
