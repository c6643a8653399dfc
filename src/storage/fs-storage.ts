import { constants, type Dirent } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import fsCallback from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from '../log.ts';
import { CacheDirError, TMP_DIR_NAME, prepareCacheDir } from './cache-dir.ts';
import type { EntryCipher } from './entry-cipher.ts';
import { errnoCode } from './errno.ts';
import { decodeEntry, decodeMeta, encodeEntryParts } from './entry-codec.ts';
import { OpenEntries, identityOf, stillNamed, type OpenEntry } from './open-entries.ts';
import { ReadBuffers } from './read-buffers.ts';
import { tempName } from './temp-files.ts';
import type { EntryId, EntryMeta, PreparedEntry, ReadEntry, ReadOptions, ScannedEntry, StorageBackend, StorageStats, StoredEntry } from './types.ts';
import { sha256Hex } from '../hash.ts';

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
/** Entry files kept open per process by default: a hot set well past any memory tier, far below descriptor limits. */
const DEFAULT_KEEP_OPEN_FILES = 1024;
/** Idle lent read buffers kept per process (see ReadBuffers): enough for a few dozen responses in flight. */
const DEFAULT_IDLE_READ_BUFFER_BYTES = 16 * 1024 * 1024;
/** How often kept files are checked for having been deleted or replaced by another process (their space is held while open). */
const STALE_SWEEP_MS = 5_000;

/**
 * Entries up to this size are written without fsync straight from the event
 * loop (#writeNow), like nginx writes its cache files: into the page cache,
 * costing less than the trips through the thread pool they replace (a cold
 * resize spent 3.8 ms of its 42 waiting on the five trips of a 15 KB write).
 * Larger entries, and every write when fsync is on (which waits for the
 * disk), go through the pool so the event loop never waits on the disk.
 */
const SYNC_WRITE_MAX_BYTES = 1024 * 1024;

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
  /**
   * fsync each entry before it is renamed into place (default false). Not
   * needed for integrity, which every read checks (a torn or lost write after
   * a power failure reads as a miss), only for keeping entries across one.
   */
  fsync?: boolean;
  /** Entry files kept open for later reads (default 1024; 0 keeps none). See FsStorage.read. */
  keepOpenFiles?: number;
  /** How often kept files are checked for having been deleted or replaced by another process, ms (default 5 s). */
  staleSweepMs?: number;
  /** Bytes of lent read buffers kept idle for the next reads (default 16 MiB; 0 lends none). See ReadOptions.lend. */
  idleReadBufferBytes?: number;
}

/**
 * Entries as files under `<dir>/<g0g1>/<group>/<item>`: the group is an HMAC
 * (with a secret kept per directory) of the source key, the item an HMAC of
 * the entry key, so a listing does not tell whether a known URL is cached,
 * a hit needs no index, and purging a source with all its variants is one
 * directory removal. Writes go to `<dir>/tmp/` and are renamed into place, so
 * a reader sees the old entry or the new one, never a half; readers read the
 * whole file before returning, and an unlinked or replaced file stays
 * readable through an open descriptor, so nothing is deleted under a reader.
 * Files read are kept open for the next read of the same entry (see read()).
 */
export class FsStorage implements StorageBackend {
  readonly dir: string;
  readonly #tmpDir: string;
  readonly #secret: Buffer;
  readonly #logger: Logger;
  readonly #cipher: EntryCipher | undefined;
  readonly #fsync: boolean;
  readonly #open: OpenEntries;
  readonly #buffers: ReadBuffers;
  #closed = false;

  private constructor(dir: string, secret: Buffer, logger: Logger, cipher: EntryCipher | undefined, opts: FsStorageOptions) {
    this.dir = dir;
    this.#fsync = opts.fsync ?? false;
    this.#open = new OpenEntries(opts.keepOpenFiles ?? DEFAULT_KEEP_OPEN_FILES, opts.staleSweepMs ?? STALE_SWEEP_MS);
    forgottenStorages.register(this, this.#open, this.#open);
    this.#buffers = new ReadBuffers(opts.idleReadBufferBytes ?? DEFAULT_IDLE_READ_BUFFER_BYTES);
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
    return new FsStorage(dir, secret, opts.logger, opts.cipher, opts);
  }

  entryId(sourceKey: string, entryKey: string): EntryId {
    const group = createHmac('sha256', this.#secret).update('group\0').update(sourceKey).digest('hex').slice(0, GROUP_HEX);
    const item = createHmac('sha256', this.#secret).update('item\0').update(entryKey).digest('hex').slice(0, ITEM_HEX);
    return `${group}/${item}`;
  }

  groupOf(id: EntryId): string {
    return id.slice(0, GROUP_HEX);
  }

  /**
   * The entry, read through a file handle kept open from an earlier read
   * when the entry's path still names the same file (one lstat, no
   * thread-pool trip): then a hit is one positional read of the body. A file
   * replaced, deleted or moved away by any process, or written in place, is
   * opened anew, so a kept handle serves what opening the path at that moment
   * would. Handles of entries this process removes are closed at once; those
   * another process removes, at their next read or by a check every few
   * seconds (an open file keeps its disk space). The body is checked too
   * (see ReadEntry.bodyVerified): hashed in full on the second read through
   * a handle (the caller hashes the first), then its CRC-32 compared with
   * that verified read's on every later one, which costs a third as much and
   * still catches damage appearing later, e.g. from the disk. Such a repeat
   * read of a plain entry reads the body into a lent buffer when
   * `options.lend` agrees (see ReadEntry.release).
   */
  async read(id: EntryId, options?: ReadOptions): Promise<ReadEntry | undefined> {
    const kept = this.#open.get(id);
    if (kept !== undefined) {
      const entry = stillNamed(kept) ? await this.#readKept(kept, options?.lend) : undefined;
      if (entry !== undefined) return entry;
      // Changed, gone, or failing: forget the handle and read the path as it is now.
      void this.#open.drop(id, kept);
    }
    return this.#readFresh(id);
  }

  /** Opens, reads and decodes an entry file, keeping the handle for the next read. */
  async #readFresh(id: EntryId): Promise<StoredEntry | undefined> {
    const opened = await this.#openEntry(id);
    if (opened === undefined) return undefined;
    const { fh, file } = opened;
    let kept = false;
    try {
      const st = await fh.stat();
      const buf = await readFully(fh, Buffer.allocUnsafe(st.size), 0);
      if (buf === undefined) return undefined; // shorter than its size a moment ago: being changed in place
      const entry = decodeEntry(buf, this.#cipher);
      if (entry === undefined) return undefined;
      if (!this.#closed) {
        // Plain bodies run to the end of the file; sealed ones are opened whole on every read.
        const bodyStart = this.#cipher === undefined ? st.size - entry.meta.size : undefined;
        kept = await this.#open.keep(id, { fh, file, identity: identityOf(st), meta: entry.meta, bodyStart, crc: undefined });
      }
      return entry;
    } catch (err) {
      this.#logger.warn({ err, code: errnoCode(err) }, 'cache entry could not be read; treating as absent');
      return undefined;
    } finally {
      if (!kept) await fh.close().catch(() => {});
    }
  }

  /** The entry through a kept handle, or undefined when it cannot be vouched for that way (then read afresh). */
  async #readKept(kept: OpenEntry, lend: ReadOptions['lend']): Promise<ReadEntry | undefined> {
    let meta = kept.meta;
    let body: Buffer;
    let lent: Buffer | undefined;
    try {
      if (kept.bodyStart === undefined) {
        const buf = await readFully(kept.fh, Buffer.allocUnsafe(kept.identity.size), 0);
        const entry = buf === undefined ? undefined : decodeEntry(buf, this.#cipher);
        if (entry === undefined) return undefined;
        ({ meta, body } = entry);
      } else {
        if (lend?.(meta.size) === true && this.#buffers.lends(meta.size)) lent = this.#buffers.take(meta.size);
        const read = await readFully(kept.fh, lent ?? Buffer.allocUnsafe(meta.size), kept.bodyStart);
        if (read === undefined) throw new Error('entry file shorter than when opened');
        body = read;
      }
      if (kept.crc === undefined) {
        if (sha256Hex(body) !== meta.sha256) throw new Error('entry body does not match its hash');
        kept.crc = crc32(body);
      } else if (crc32(body) !== kept.crc) {
        throw new Error('entry body changed since it was verified');
      }
    } catch {
      // e.g. closed by an eviction meanwhile, or changed in place: read afresh. The read is over, so the buffer is free.
      if (lent !== undefined) this.#buffers.give(lent);
      return undefined;
    }
    if (lent === undefined) return { meta, body, bodyVerified: true };
    const buffers = this.#buffers;
    return { meta, body, bodyVerified: true, release: () => { buffers.give(lent); } };
  }

  async readMeta(id: EntryId): Promise<EntryMeta | undefined> {
    const kept = this.#open.get(id);
    if (kept !== undefined && stillNamed(kept)) return kept.meta;
    const fh = (await this.#openEntry(id))?.fh;
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
    if (!this.#fsync && entry.bytes <= SYNC_WRITE_MAX_BYTES) {
      this.#writeNow(tmp, target, entry.parts);
      await this.#open.drop(id); // it held the entry just replaced
      return;
    }
    let fh: FileHandle | undefined;
    try {
      fh = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
      await fh.chmod(FILE_MODE); // the umask (which may change at run time) could have narrowed it
      await writeAll(fh, entry.parts);
      if (this.#fsync) await fh.sync();
      await fh.close();
      fh = undefined;
      try {
        await fs.rename(tmp, target);
      } catch (err) {
        // A new group (or one whose last entry was deleted meanwhile): make its directory, then rename once more.
        if (errnoCode(err) !== 'ENOENT') throw err;
        await this.#ensureGroupDir(path.dirname(target));
        await fs.rename(tmp, target);
      }
      await this.#open.drop(id); // it held the entry just replaced
    } catch (err) {
      if (fh !== undefined) await fh.close().catch(() => {});
      await fs.unlink(tmp).catch(() => {});
      throw err;
    }
  }

  /**
   * write() without the thread pool: the same open, chmod, write, close and
   * rename, as direct calls. Without fsync these only copy into the page
   * cache (tens of microseconds for a few hundred KB), while each trip
   * through the pool cost the event loop about 0.2 ms and the request a
   * queue wait behind the transforms using the pool (see SYNC_WRITE_MAX_BYTES).
   */
  #writeNow(tmp: string, target: string, parts: readonly Buffer[]): void {
    let fd: number | undefined;
    try {
      fd = fsCallback.openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
      fsCallback.fchmodSync(fd, FILE_MODE); // the umask (which may change at run time) could have narrowed it
      writeAllNow(fd, parts);
      fsCallback.closeSync(fd);
      fd = undefined;
      try {
        fsCallback.renameSync(tmp, target);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
        const groupDir = path.dirname(target);
        mkdirPrivateNow(path.dirname(groupDir));
        mkdirPrivateNow(groupDir);
        fsCallback.renameSync(tmp, target);
      }
    } catch (err) {
      // Already failing: the original error is the one to report (a temp file left here goes at the next start).
      const open = fd;
      if (open !== undefined) {
        ignoreErrors(() => {
          fsCallback.closeSync(open);
        });
      }
      ignoreErrors(() => {
        fsCallback.rmSync(tmp, { force: true });
      });
      throw err;
    }
  }

  async delete(id: EntryId): Promise<boolean> {
    const file = this.#entryPath(id);
    await this.#open.drop(id);
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
    await this.#open.dropGroup(group);
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
      // Names are checked against the patterns, so concatenation gives what path.join would, without its garbage.
      const dir1 = `${this.dir}/${level1.name}`;
      const groups: string[] = [];
      for (const child of await readDirEntries(dir1)) {
        if (child.isDirectory() && GROUP_DIR.test(child.name)) groups.push(child.name);
        else if (child.isDirectory() && FANOUT_DIR.test(child.name)) await this.#removeLegacy(path.join(dir1, child.name));
      }
      for (let i = 0; i < groups.length; i += SCAN_PARALLELISM) {
        yield await scanGroups(dir1, groups.slice(i, i + SCAN_PARALLELISM));
      }
    }
  }

  async clear(): Promise<void> {
    await this.#open.dropAll();
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
    this.#closed = true;
    forgottenStorages.unregister(this.#open);
    await this.#open.dropAll();
  }

  /** Opens an entry file for reading, or undefined when it is absent. */
  async #openEntry(id: EntryId): Promise<{ fh: FileHandle; file: string } | undefined> {
    try {
      const file = this.#entryPath(id);
      // Most lookups that get here are misses (a cold request looks up its variant and its source): one lstat from
      // the dentry cache answers those, where an open through the thread pool costs a trip behind the transforms.
      if (fsCallback.lstatSync(file, { throwIfNoEntry: false }) === undefined) return undefined;
      // O_NOFOLLOW: we never create symlinks, so one found here was planted; do not follow it.
      return { fh: await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW), file };
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

  /** Entries of the previous on-disk layout can never be looked up again: free their space. */
  async #removeLegacy(dir: string): Promise<void> {
    this.#logger.info({ dir }, 'removing cache entries of an older layout');
    await fs.rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * Closes the kept files of a storage dropped without close(). Node ends the
 * process when a FileHandle is garbage-collected open; held here, they stay
 * reachable until this closes them.
 */
const forgottenStorages = new FinalizationRegistry<OpenEntries>((open) => {
  void open.dropAll();
});

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

function ignoreErrors(step: () => void): void {
  try {
    step();
  } catch {
    // see the caller
  }
}

function mkdirPrivateNow(dir: string): void {
  try {
    fsCallback.mkdirSync(dir, { mode: DIR_MODE });
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return;
    throw err;
  }
  fsCallback.chmodSync(dir, DIR_MODE);
}

/**
 * The entries of some groups of one fan-out directory. Through the callback
 * API, with plain path concatenation and no per-file promise: a rebuild lists
 * every entry of the cache, and the promise API with path.join allocated about
 * 9 KB of short-lived garbage per entry (now about 2 KB), which made V8 grow
 * its young generation for good (from 3 to 29 MB over 100,000 entries). Only
 * ABSENT_CODES (a group or file removed while we walk) are skipped; other
 * errors fail the scan.
 */
function scanGroups(dir1: string, groups: readonly string[]): Promise<ScannedEntry[]> {
  return new Promise((resolve, reject) => {
    const found: ScannedEntry[] = [];
    let pending = groups.length;
    let failed = false;
    const settle = (err: NodeJS.ErrnoException | null) => {
      if (failed) return;
      if (err !== null && !ABSENT_CODES.has(err.code ?? '')) {
        failed = true;
        reject(err);
        return;
      }
      pending -= 1;
      if (pending === 0) resolve(found);
    };
    if (pending === 0) resolve(found);
    for (const group of groups) {
      const dir = `${dir1}/${group}`;
      fsCallback.readdir(dir, (listErr, names) => {
        if (listErr !== null) {
          settle(listErr);
          return;
        }
        for (const name of names) {
          if (!ITEM_FILE.test(name)) continue;
          pending += 1;
          fsCallback.lstat(`${dir}/${name}`, (statErr, st) => {
            if (statErr === null && st.isFile()) found.push({ id: `${group}/${name}`, bytes: st.size, mtimeMs: st.mtimeMs });
            settle(statErr);
          });
        }
        settle(null);
      });
    }
  });
}

async function readDirEntries(dir: string): Promise<Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (ABSENT_CODES.has(errnoCode(err) ?? '')) return [];
    throw err;
  }
}

/** Fills `buf` from `position`; undefined if the file ends before (reads may return less than asked). */
async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<Buffer | undefined> {
  const length = buf.length;
  let offset = 0;
  while (offset < length) {
    const { bytesRead } = await fh.read(buf, offset, length - offset, position + offset);
    if (bytesRead === 0) return undefined;
    offset += bytesRead;
  }
  return buf;
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

function writeAllNow(fd: number, parts: readonly Buffer[]): void {
  for (const part of parts) {
    let offset = 0;
    while (offset < part.length) offset += fsCallback.writeSync(fd, part, offset, part.length - offset);
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
