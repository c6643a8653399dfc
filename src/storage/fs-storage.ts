import { constants, type Dirent } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { CacheDirError, TMP_DIR_NAME, prepareCacheDir } from './cache-dir.ts';
import type { EntryCipher } from './entry-cipher.ts';
import { errnoCode } from './errno.ts';
import { decodeEntry, decodeMeta, encodeEntryParts } from './entry-codec.ts';
import { tempName } from './temp-files.ts';
import type { EntryId, EntryMeta, PreparedEntry, ScannedEntry, StorageBackend, StorageStats, StoredEntry } from './types.ts';

/** Per-directory HMAC key for file names; lives in the cache directory itself. */
export const SECRET_FILE_NAME = '.secret';
const SECRET_LENGTH = 32;

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
/** 64-bit group names and 32-bit item names: collisions cost a miss (keys are checked on read), never a wrong image. */
export const GROUP_HEX = 16;
export const ITEM_HEX = 8;
const FANOUT_DIR = /^[0-9a-f]{2}$/;
const GROUP_DIR = /^[0-9a-f]{16}$/;
const ITEM_FILE = /^[0-9a-f]{8}$/;
const ENTRY_ID = /^([0-9a-f]{16})\/([0-9a-f]{8})$/;
/** Metadata larger than this is not ours. */
const MAX_META_BYTES = 1024 * 1024;
const META_FIRST_READ = 4096;
/** Directories of a scan handled at once: enough to keep the libuv pool busy. */
const SCAN_PARALLELISM = 64;

/** Missing files read as "absent"; these codes mean the same thing for a path lookup. */
const ABSENT_CODES = new Set(['ENOENT', 'ENOTDIR']);
/** The directory cannot be written: the cache then works uncached rather than failing to start. */
const UNWRITABLE_CODES = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOSPC', 'EDQUOT']);

export interface FsStorageOptions {
  dir: string;
  publicDir?: string;
  logger: Logger;
  /** Encrypts entries at rest when set. */
  cipher?: EntryCipher;
}

/**
 * Entries as files under `<dir>/<g0g1>/<group>/<item>`: the group is an HMAC
 * (with a secret kept per directory) of the source key, the item an HMAC of
 * the entry key, so a listing does not tell whether a known URL is cached,
 * a hit is one open with no index, and purging a source with all its variants
 * is one directory removal. Writes go to `<dir>/tmp/` and are renamed into
 * place, so a reader sees the old entry or the new one, never a half; readers
 * read the whole file before returning, and an unlinked or replaced file stays
 * readable through an open descriptor, so nothing is deleted under a reader.
 */
export class FsStorage implements StorageBackend {
  readonly dir: string;
  readonly #tmpDir: string;
  readonly #secret: Buffer;
  readonly #logger: Logger;
  readonly #cipher: EntryCipher | undefined;

  private constructor(dir: string, secret: Buffer, logger: Logger, cipher: EntryCipher | undefined) {
    this.dir = dir;
    this.#tmpDir = path.join(dir, TMP_DIR_NAME);
    this.#secret = secret;
    this.#logger = logger;
    this.#cipher = cipher;
  }

  static async open(opts: FsStorageOptions): Promise<FsStorage> {
    const prepared = { logger: opts.logger, ...(opts.publicDir === undefined ? {} : { publicDir: opts.publicDir }) };
    const { dir } = await prepareCacheDir(opts.dir, prepared);
    let secret: Buffer;
    try {
      secret = await loadOrCreateSecret(dir);
    } catch (err) {
      if (!UNWRITABLE_CODES.has(errnoCode(err) ?? '')) throw err;
      // Nothing can be stored anyway; a throwaway secret lets the server run uncached.
      opts.logger.warn({ code: errnoCode(err), dir }, 'cache directory is not writable; running without a cache');
      secret = randomBytes(SECRET_LENGTH);
    }
    return new FsStorage(dir, secret, opts.logger, opts.cipher);
  }

  entryId(sourceKey: string, entryKey: string): EntryId {
    const group = createHmac('sha256', this.#secret).update('group\0').update(sourceKey).digest('hex').slice(0, GROUP_HEX);
    const item = createHmac('sha256', this.#secret).update('item\0').update(entryKey).digest('hex').slice(0, ITEM_HEX);
    return `${group}/${item}`;
  }

  groupOf(id: EntryId): string {
    return id.slice(0, GROUP_HEX);
  }

  async read(id: EntryId): Promise<StoredEntry | undefined> {
    const fh = await this.#openEntry(id);
    if (fh === undefined) return undefined;
    try {
      return decodeEntry(await fh.readFile(), this.#cipher);
    } catch (err) {
      this.#logger.warn({ err, code: errnoCode(err) }, 'cache entry could not be read; treating as absent');
      return undefined;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async readMeta(id: EntryId): Promise<EntryMeta | undefined> {
    const fh = await this.#openEntry(id);
    if (fh === undefined) return undefined;
    try {
      let want = META_FIRST_READ;
      for (;;) {
        const buf = Buffer.alloc(want);
        const { bytesRead } = await fh.read(buf, 0, want, 0);
        const decoded = decodeMeta(buf.subarray(0, bytesRead), this.#cipher);
        if (decoded === undefined) return undefined;
        if ('meta' in decoded) return decoded.meta;
        // Asked for more than the file holds, or more than any metadata of ours: damaged.
        if (bytesRead < want || decoded.needBytes <= want || decoded.needBytes > MAX_META_BYTES) return undefined;
        want = decoded.needBytes;
      }
    } catch (err) {
      this.#logger.warn({ err, code: errnoCode(err) }, 'cache entry metadata could not be read; treating as absent');
      return undefined;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  prepare(entry: StoredEntry): PreparedEntry {
    const parts = encodeEntryParts(entry, this.#cipher);
    return { meta: entry.meta, parts, bytes: parts.reduce((sum, p) => sum + p.length, 0) };
  }

  async write(id: EntryId, entry: PreparedEntry): Promise<void> {
    const target = this.#entryPath(id);
    // Named after this process, so another one starting meanwhile leaves it alone (see temp-files.ts).
    const tmp = path.join(this.#tmpDir, tempName('tmp'));
    let fh: FileHandle | undefined;
    try {
      await this.#ensureGroupDir(path.dirname(target));
      fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
      await fh.chmod(FILE_MODE); // the umask could have narrowed it; keep it exact
      await writeAll(fh, entry.parts);
      await fh.sync();
      await fh.close();
      fh = undefined;
      try {
        await fs.rename(tmp, target);
      } catch (err) {
        // The group directory was removed meanwhile (its last entry deleted): make it again, once.
        if (errnoCode(err) !== 'ENOENT') throw err;
        await this.#ensureGroupDir(path.dirname(target));
        await fs.rename(tmp, target);
      }
    } catch (err) {
      if (fh !== undefined) await fh.close().catch(() => {});
      await fs.unlink(tmp).catch(() => {});
      throw err;
    }
  }

  async delete(id: EntryId): Promise<boolean> {
    const file = this.#entryPath(id);
    try {
      await fs.unlink(file);
    } catch (err) {
      if (ABSENT_CODES.has(errnoCode(err) ?? '')) return false;
      throw err;
    }
    // Keep the tree small: drop the group directory once its last entry is gone.
    await fs.rmdir(path.dirname(file)).catch(() => {});
    return true;
  }

  async listGroup(group: string): Promise<EntryId[]> {
    if (!GROUP_DIR.test(group)) return [];
    const names = await readDirEntries(this.#groupDir(group));
    return names.filter((e) => e.isFile() && ITEM_FILE.test(e.name)).map((e) => `${group}/${e.name}`);
  }

  async deleteGroup(group: string): Promise<EntryId[]> {
    if (!GROUP_DIR.test(group)) return [];
    // One rename takes the whole group out of sight at once; the files go afterwards.
    const doomed = path.join(this.#tmpDir, tempName('purge'));
    try {
      await fs.rename(this.#groupDir(group), doomed);
    } catch (err) {
      if (ABSENT_CODES.has(errnoCode(err) ?? '')) return [];
      throw err;
    }
    const removed = (await readDirEntries(doomed)).filter((e) => ITEM_FILE.test(e.name)).map((e) => `${group}/${e.name}`);
    await fs.rm(doomed, { recursive: true, force: true });
    return removed;
  }

  async *scan(): AsyncIterable<ScannedEntry[]> {
    for (const level1 of await readDirEntries(this.dir)) {
      if (!level1.isDirectory() || !FANOUT_DIR.test(level1.name)) continue;
      const dir1 = path.join(this.dir, level1.name);
      const groups: string[] = [];
      for (const child of await readDirEntries(dir1)) {
        if (child.isDirectory() && GROUP_DIR.test(child.name)) groups.push(child.name);
        else if (child.isDirectory() && FANOUT_DIR.test(child.name)) await this.#removeLegacy(path.join(dir1, child.name));
      }
      for (let i = 0; i < groups.length; i += SCAN_PARALLELISM) {
        const batch = await Promise.all(groups.slice(i, i + SCAN_PARALLELISM).map((g) => this.#scanGroup(g)));
        yield batch.flat();
      }
    }
  }

  async clear(): Promise<void> {
    // Each fan-out directory is renamed away first, so no half-cleared group is ever visible.
    for (const level1 of await readDirEntries(this.dir)) {
      if (!level1.isDirectory() || !FANOUT_DIR.test(level1.name)) continue;
      const doomed = path.join(this.#tmpDir, tempName('clear'));
      try {
        await fs.rename(path.join(this.dir, level1.name), doomed);
      } catch (err) {
        if (ABSENT_CODES.has(errnoCode(err) ?? '')) continue;
        throw err;
      }
      await fs.rm(doomed, { recursive: true, force: true });
    }
  }

  async stats(): Promise<StorageStats> {
    let entries = 0;
    let bytes = 0;
    let oldestMs: number | undefined;
    for await (const batch of this.scan()) {
      for (const e of batch) {
        entries += 1;
        bytes += e.bytes;
        if (oldestMs === undefined || e.mtimeMs < oldestMs) oldestMs = e.mtimeMs;
      }
    }
    return oldestMs === undefined ? { entries, bytes } : { entries, bytes, oldestMs };
  }

  async close(): Promise<void> {
    // Nothing is held open between calls.
  }

  /** Opens an entry file for reading, or undefined when it is absent. */
  async #openEntry(id: EntryId): Promise<FileHandle | undefined> {
    try {
      // O_NOFOLLOW: we never create symlinks, so one found here was planted; do not follow it.
      return await fs.open(this.#entryPath(id), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (!ABSENT_CODES.has(errnoCode(err) ?? '')) {
        this.#logger.warn({ err, code: errnoCode(err) }, 'cache entry could not be opened; treating as absent');
      }
      return undefined;
    }
  }

  #groupDir(group: string): string {
    return path.join(this.dir, group.slice(0, 2), group);
  }

  #entryPath(id: EntryId): string {
    const match = ENTRY_ID.exec(id);
    // Ids come from entryId() or a scan; anything else must never become a path.
    if (match === null) throw new Error('malformed cache entry id');
    return path.join(this.#groupDir(match[1] as string), match[2] as string);
  }

  async #ensureGroupDir(groupDir: string): Promise<void> {
    // Level by level, so a narrow umask on a fresh first level cannot block the second.
    await mkdirPrivate(path.dirname(groupDir));
    await mkdirPrivate(groupDir);
  }

  async #scanGroup(group: string): Promise<ScannedEntry[]> {
    const dir = this.#groupDir(group);
    const found: ScannedEntry[] = [];
    await Promise.all(
      (await readDirEntries(dir)).map(async (e) => {
        if (!e.isFile() || !ITEM_FILE.test(e.name)) return;
        try {
          const st = await fs.lstat(path.join(dir, e.name));
          if (st.isFile()) found.push({ id: `${group}/${e.name}`, bytes: st.size, mtimeMs: st.mtimeMs });
        } catch (err) {
          if (!ABSENT_CODES.has(errnoCode(err) ?? '')) throw err; // removed while we walked
        }
      }),
    );
    return found;
  }

  /** Entries of the previous on-disk layout can never be looked up again: free their space. */
  async #removeLegacy(dir: string): Promise<void> {
    this.#logger.info({ dir }, 'removing cache entries of an older layout');
    await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
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

async function readDirEntries(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (ABSENT_CODES.has(errnoCode(err) ?? '')) return [];
    throw err;
  }
}

/** FileHandle.write may write less than asked (e.g. at a file size limit); loop until done. */
async function writeAll(fh: FileHandle, parts: readonly Buffer[]): Promise<void> {
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
  const tmp = path.join(dir, TMP_DIR_NAME, tempName('secret.tmp'));
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
