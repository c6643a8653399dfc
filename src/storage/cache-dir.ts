import { constants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { errnoCode } from './errno.ts';
import { isLeftover } from './temp-files.ts';

/** Holds half-written entries; same filesystem as the entries so rename() is atomic. */
export const TMP_DIR_NAME = 'tmp';

const DIR_MODE = 0o700;

/** The cache directory is unsafe or unusable; the server must not start on it. */
export class CacheDirError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CacheDirError';
  }
}

export interface PrepareCacheDirOptions {
  /** Directory served to the public; the cache must not live inside it. */
  publicDir?: string;
  /** Told when crash leftovers cannot be removed (a read-only directory: the cache then runs uncached). */
  logger?: Logger;
}

/** A read-only or full filesystem: start anyway, nothing will be cached. */
const UNWRITABLE_CODES = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);

/**
 * Makes `dir` a safe place for cache entries: creates it 0700 if missing and
 * refuses a symlink, a non-directory, a world-writable directory or one inside
 * the public directory. Removes temp files left by processes that are gone
 * (a crash); those of live processes sharing the directory stay.
 */
export async function prepareCacheDir(dir: string, opts: PrepareCacheDirOptions = {}): Promise<{ dir: string }> {
  const absolute = path.resolve(dir);

  // Checked before creating anything, so a refused path leaves no trace in the public dir.
  if (opts.publicDir !== undefined) {
    const realDir = await realPathAllowingMissing(absolute);
    const realPublic = await realPathAllowingMissing(path.resolve(opts.publicDir));
    if (isInside(realDir, realPublic)) {
      throw new CacheDirError(`cache directory ${absolute} lies inside the public directory ${realPublic}`);
    }
  }

  let stat = await lstatOrUndefined(absolute);
  if (stat === undefined) {
    await fs.mkdir(absolute, { recursive: true, mode: DIR_MODE });
    // mkdir's mode is filtered by the umask; chmod makes it exact.
    await fs.chmod(absolute, DIR_MODE);
    stat = await fs.lstat(absolute);
  }
  assertSafeDir(absolute, stat, 'cache directory');

  try {
    await resetTmpDir(path.join(absolute, TMP_DIR_NAME));
  } catch (err) {
    if (!UNWRITABLE_CODES.has(errnoCode(err) ?? '')) throw err;
    opts.logger?.warn({ code: errnoCode(err), dir: absolute }, 'cache directory is not writable; nothing will be cached');
  }
  return { dir: absolute };
}

function assertSafeDir(dir: string, stat: Stats, what: string): void {
  if (stat.isSymbolicLink()) throw new CacheDirError(`${what} ${dir} is a symbolic link; refusing to follow it`);
  if (!stat.isDirectory()) throw new CacheDirError(`${what} ${dir} exists and is not a directory`);
  if ((stat.mode & constants.S_IWOTH) !== 0) {
    throw new CacheDirError(`${what} ${dir} is world-writable; chmod it to 0700`);
  }
}

/** Ensures <dir>/tmp exists as a private directory and clears it of leftovers of dead processes. */
async function resetTmpDir(tmpDir: string): Promise<void> {
  let stat = await lstatOrUndefined(tmpDir);
  if (stat === undefined) {
    await fs.mkdir(tmpDir, { mode: DIR_MODE });
    await fs.chmod(tmpDir, DIR_MODE);
    stat = await fs.lstat(tmpDir);
  }
  assertSafeDir(tmpDir, stat, 'temporary directory');
  // Other live processes (workers, a reload's previous cache) may be writing here now: take only what the dead left.
  const now = Date.now();
  for (const name of await fs.readdir(tmpDir)) {
    const target = path.join(tmpDir, name);
    const st = await lstatOrUndefined(target);
    if (st === undefined || !isLeftover(name, Math.max(st.mtimeMs, st.ctimeMs), now)) continue;
    await fs.rm(target, { recursive: true, force: true });
  }
}

async function lstatOrUndefined(p: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(p);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

/** Real path of `p`, resolving the deepest existing ancestor when `p` does not exist yet. */
async function realPathAllowingMissing(p: string): Promise<string> {
  try {
    return await fs.realpath(p);
  } catch (err) {
    const code = errnoCode(err);
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
    const parent = path.dirname(p);
    if (parent === p) return p;
    return path.join(await realPathAllowingMissing(parent), path.basename(p));
  }
}

/** True when `child` is `parent` or below it. */
function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}
