import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { errnoCode } from './errno.ts';
import type { EntryId, Removals, RemovalFeed } from './types.ts';

export const NOTICES_DIR_NAME = '.notices';
/** Notices older than this are deleted by whoever sees them: every live process has read them by then. */
const NOTICE_LIFETIME_MS = 10 * 60_000;
const NOTICE_NAME = /^(\d{15})-(\d+)-[0-9a-f]{8}\.json$/;
const ENTRY_ID = /^[0-9a-f]{16}\/[0-9a-f]{8}$/;
/** Ids per notice file at most, so one notice stays small to read. */
const IDS_PER_NOTICE = 50_000;

/**
 * Removal notices as small files in `<cacheDir>/.notices/`: a purge from the
 * CLI (or another worker) reaches every running server at its next poll, which
 * then drops those entries from its memory tier and its index. Names sort by
 * time; each process reads the notices of others written since it started.
 */
export class RemovalJournal implements RemovalFeed {
  readonly #dir: string;
  readonly #now: () => number;
  readonly #pid: string;
  readonly #since: number;
  readonly #seen = new Set<string>();

  constructor(cacheDir: string, opts: { now?: () => number; pid?: number } = {}) {
    this.#dir = path.join(cacheDir, NOTICES_DIR_NAME);
    this.#now = opts.now ?? Date.now;
    this.#pid = String(opts.pid ?? process.pid);
    // A little slack: a notice written just before we started may concern entries we are about to load.
    this.#since = this.#now() - 5_000;
  }

  async announce(removed: EntryId[] | 'all'): Promise<void> {
    if (removed !== 'all' && removed.length === 0) return;
    await fs.mkdir(this.#dir, { mode: 0o700 }).catch((err: unknown) => {
      if (errnoCode(err) !== 'EEXIST') throw err;
    });
    const chunks = removed === 'all' ? [[]] : chunk(removed, IDS_PER_NOTICE);
    for (const ids of chunks) {
      const name = `${String(this.#now()).padStart(15, '0')}-${this.#pid}-${randomBytes(4).toString('hex')}.json`;
      this.#seen.add(name);
      const body = JSON.stringify(removed === 'all' ? { all: true, ids: [] } : { all: false, ids });
      const tmp = path.join(this.#dir, `.${name}.tmp`);
      await fs.writeFile(tmp, body, { mode: 0o600, flag: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL });
      await fs.rename(tmp, path.join(this.#dir, name));
    }
  }

  async poll(): Promise<Removals> {
    const out: Removals = { ids: [], all: false };
    let names: string[];
    try {
      names = await fs.readdir(this.#dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return out;
      throw err;
    }
    const now = this.#now();
    for (const name of names.sort()) {
      const m = NOTICE_NAME.exec(name);
      if (m === null || this.#seen.has(name)) continue;
      const writtenAt = Number(m[1]);
      if (writtenAt < now - NOTICE_LIFETIME_MS) {
        await fs.unlink(path.join(this.#dir, name)).catch(() => {});
        continue;
      }
      this.#seen.add(name);
      if (m[2] === this.#pid || writtenAt < this.#since) continue;
      const notice = await readNotice(path.join(this.#dir, name));
      if (notice === undefined) continue;
      if (notice.all) out.all = true;
      out.ids.push(...notice.ids);
    }
    // Forget names that are gone, so the set does not grow forever.
    const present = new Set(names);
    for (const name of this.#seen) if (!present.has(name)) this.#seen.delete(name);
    return out;
  }
}

async function readNotice(file: string): Promise<Removals | undefined> {
  try {
    const parsed: unknown = JSON.parse(await fs.readFile(file, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const { all, ids } = parsed as { all?: unknown; ids?: unknown };
    if (typeof all !== 'boolean' || !Array.isArray(ids)) return undefined;
    return { all, ids: ids.filter((id): id is string => typeof id === 'string' && ENTRY_ID.test(id)) };
  } catch {
    return undefined; // removed meanwhile, or not ours
  }
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
