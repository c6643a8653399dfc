import { constants, type Dirent } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { CacheDirError, TMP_DIR_NAME, prepareCacheDir } from './cache-dir.ts';
import { errnoCode } from './errno.ts';
import { decodeEntry, encodeEntryParts } from './entry-codec.ts';
import type { StorageBackend, StorageStats, StoredEntry } from './types.ts';

/** Per-directory HMAC key for file names; lives in the cache directory itself. */
export const SECRET_FILE_NAME = '.secret';
const SECRET_LENGTH = 32;

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const FANOUT_DIR = /^[0-9a-f]{2}$/;
const ENTRY_FILE = /^[0-9a-f]{64}$/;

/** Missing files read as "absent"; these codes mean the same thing for a path lookup. */
const ABSENT_CODES = new Set(['ENOENT', 'ENOTDIR']);

export interface FsStorageOptions {
  dir: string;
  publicDir?: string;
  logger: Logger;
}

/**
 * Entries as files under `<dir>/ab/cd/<name>`, where name is
 * HMAC-SHA256(dirSecret, key): a directory listing does not tell whether a
 * known URL is cached. Writes go to `<dir>/tmp/` and are renamed into place,
 * so a reader sees the old entry or the new one, never a half.
 */
export class FsStorage implements StorageBackend {
  readonly dir: string;
  readonly #tmpDir: string;
  readonly #secret: Buffer;
  readonly #logger: Logger;

  private constructor(dir: string, secret: Buffer, logger: Logger) {
    this.dir = dir;
    this.#tmpDir = path.join(dir, TMP_DIR_NAME);
    this.#secret = secret;
    this.#logger = logger;
  }

  static async open(opts: FsStorageOptions): Promise<FsStorage> {
    const prepared = opts.publicDir === undefined ? {} : { publicDir: opts.publicDir };
    const { dir } = await prepareCacheDir(opts.dir, prepared);
    const secret = await loadOrCreateSecret(dir);
    return new FsStorage(dir, secret, opts.logger);
  }

  async read(key: string): Promise<StoredEntry | undefined> {
    let fh: FileHandle;
    try {
      // O_NOFOLLOW: we never create symlinks, so one found here was planted; do not follow it.
      fh = await fs.open(this.#entryPath(key), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (!ABSENT_CODES.has(errnoCode(err) ?? '')) {
        this.#logger.warn({ err, code: errnoCode(err) }, 'cache entry could not be opened; treating as absent');
      }
      return undefined;
    }
    try {
      return decodeEntry(await fh.readFile());
    } catch (err) {
      this.#logger.warn({ err, code: errnoCode(err) }, 'cache entry could not be read; treating as absent');
      return undefined;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async write(entry: StoredEntry): Promise<void> {
    const target = this.#entryPath(entry.meta.key);
    await this.#ensureFanoutDirs(path.dirname(target));

    const tmp = path.join(this.#tmpDir, `${randomBytes(16).toString('hex')}.tmp`);
    let fh: FileHandle | undefined;
    try {
      fh = await fs.open(
        tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        FILE_MODE,
      );
      await fh.chmod(FILE_MODE); // the umask could have narrowed it; keep it exact
      await writeAll(fh, encodeEntryParts(entry));
      await fh.sync();
      await fh.close();
      fh = undefined;
      await fs.rename(tmp, target);
    } catch (err) {
      if (fh !== undefined) await fh.close().catch(() => {});
      await fs.unlink(tmp).catch(() => {});
      throw err;
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      await fs.unlink(this.#entryPath(key));
      return true;
    } catch (err) {
      if (ABSENT_CODES.has(errnoCode(err) ?? '')) return false;
      throw err;
    }
  }

  async clear(): Promise<void> {
    // Files only: removing fan-out directories could race with a write that just created one.
    for (const file of await this.#entryFiles()) {
      await fs.unlink(file).catch((err: unknown) => {
        if (errnoCode(err) !== 'ENOENT') throw err;
      });
    }
  }

  async stats(): Promise<StorageStats> {
    let entries = 0;
    let bytes = 0;
    for (const file of await this.#entryFiles()) {
      try {
        const st = await fs.lstat(file);
        if (!st.isFile()) continue;
        entries += 1;
        bytes += st.size;
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err; // removed while we walked
      }
    }
    return { entries, bytes };
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  #entryPath(key: string): string {
    const name = createHmac('sha256', this.#secret).update(key, 'utf8').digest('hex');
    return path.join(this.dir, name.slice(0, 2), name.slice(2, 4), name);
  }

  async #ensureFanoutDirs(leafDir: string): Promise<void> {
    // Level by level, so a narrow umask on a fresh first level cannot block the second.
    await mkdirPrivate(path.dirname(leafDir));
    await mkdirPrivate(leafDir);
  }

  /** Paths of all entry files, found by walking the two fan-out levels. */
  async #entryFiles(): Promise<string[]> {
    const files: string[] = [];
    for (const level1 of await readDirs(this.dir)) {
      const dir1 = path.join(this.dir, level1);
      for (const level2 of await readDirs(dir1)) {
        const dir2 = path.join(dir1, level2);
        for (const entry of await readDirEntries(dir2)) {
          if (entry.isFile() && ENTRY_FILE.test(entry.name)) files.push(path.join(dir2, entry.name));
        }
      }
    }
    return files;
  }
}

/** Creates `dir` as 0700 (exactly, whatever the umask) unless it already exists. */
async function mkdirPrivate(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: DIR_MODE });
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return;
    throw err;
  }
  await fs.chmod(dir, DIR_MODE);
}

/** Fan-out directory names in `dir`. */
async function readDirs(dir: string): Promise<string[]> {
  return (await readDirEntries(dir)).filter((e) => e.isDirectory() && FANOUT_DIR.test(e.name)).map((e) => e.name);
}

async function readDirEntries(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (ABSENT_CODES.has(errnoCode(err) ?? '')) return [];
    throw err;
  }
}

/** FileHandle.write may write less than asked (e.g. at a file size limit); loop until done. */
async function writeAll(fh: FileHandle, parts: Buffer[]): Promise<void> {
  for (const part of parts) {
    let offset = 0;
    while (offset < part.length) {
      const { bytesWritten } = await fh.write(part, offset, part.length - offset, null);
      offset += bytesWritten;
    }
  }
}

/**
 * Reads `<dir>/.secret`, or creates it once for this directory. Created via a
 * temp file and link(), so a concurrent opener never sees a partial secret.
 */
async function loadOrCreateSecret(dir: string): Promise<Buffer> {
  const secretPath = path.join(dir, SECRET_FILE_NAME);
  const existing = await readSecret(secretPath);
  if (existing !== undefined) return existing;

  const secret = randomBytes(SECRET_LENGTH);
  const tmp = path.join(dir, TMP_DIR_NAME, `${randomBytes(16).toString('hex')}.secret.tmp`);
  try {
    const fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
    try {
      await fh.chmod(FILE_MODE);
      await writeAll(fh, [secret]);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await fs.link(tmp, secretPath);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      // Another process created it first; use theirs.
      const theirs = await readSecret(secretPath);
      if (theirs === undefined) throw new CacheDirError(`${secretPath} vanished while opening the cache`);
      return theirs;
    }
    await fsyncDir(dir);
    return secret;
  } finally {
    await fs.unlink(tmp).catch(() => {});
  }
}

async function readSecret(secretPath: string): Promise<Buffer | undefined> {
  let fh: FileHandle;
  try {
    fh = await fs.open(secretPath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    if (errnoCode(err) === 'ELOOP') throw new CacheDirError(`${secretPath} is a symbolic link; refusing to use it`);
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new CacheDirError(`${secretPath} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new CacheDirError(`${secretPath} is accessible to group or others; chmod it to 0600`);
    }
    const secret = await fh.readFile();
    if (secret.length !== SECRET_LENGTH) {
      throw new CacheDirError(`${secretPath} is damaged (expected ${SECRET_LENGTH} bytes, found ${secret.length})`);
    }
    return secret;
  } finally {
    await fh.close().catch(() => {});
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
