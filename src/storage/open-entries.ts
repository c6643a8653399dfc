import { lstatSync, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { EntryId, EntryMeta } from './types.ts';

/** Handles checked per turn of the event loop by closeStale (about 2 µs each). */
const STALE_CHECK_SLICE = 128;

/** An entry file kept open after a read, and what that read learned of it. */
export interface OpenEntry {
  readonly fh: FileHandle;
  /** The entry's path, and the file it named when opened: the handle is used only while the path still names that file. */
  readonly file: string;
  readonly identity: FileIdentity;
  /** The metadata the first read decoded (entry files are never changed in place). Shared: do not modify. */
  readonly meta: EntryMeta;
  /** Plain entries: where the body starts (it runs to the end of the file). Undefined for sealed ones, which are decoded whole. */
  readonly bodyStart: number | undefined;
  /** CRC-32 of the body, once a read through this handle found the body hashing to `meta.sha256`. */
  crc: number | undefined;
}

/** Enough of a stat to tell one file from another: (dev, ino) while it is open, plus size and times against float rounding of ino and in-place writes. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

export function identityOf(st: Stats): FileIdentity {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

/**
 * Whether the entry's path still names the file it named when opened: one
 * lstat on the event loop, a couple of microseconds where a thread-pool trip
 * costs ten times that. An inode cannot be reused while a descriptor holds
 * it, so a replaced, deleted or renamed-away entry never matches, nor does
 * one written in place (its times change).
 */
export function stillNamed({ file, identity }: Pick<OpenEntry, 'file' | 'identity'>): boolean {
  let st: Stats | undefined;
  try {
    st = lstatSync(file, { throwIfNoEntry: false });
  } catch {
    return false;
  }
  return (
    st !== undefined &&
    st.ino === identity.ino &&
    st.dev === identity.dev &&
    st.size === identity.size &&
    st.mtimeMs === identity.mtimeMs &&
    st.ctimeMs === identity.ctimeMs
  );
}

/**
 * Entry files kept open, at most `limit`, least recently read closed first,
 * so a disk hit is one positional read instead of open, fstat, read and
 * close. Closing waits for reads in flight on the handle (FileHandle.close
 * does), so dropping one never cuts a read short. Every `staleCheckMs` the
 * handles are checked (closeStale) while there are some.
 */
export class OpenEntries {
  readonly #limit: number;
  readonly #staleCheckMs: number;
  /** In order of last use, oldest first. */
  readonly #entries = new Map<EntryId, OpenEntry>();
  #timer: NodeJS.Timeout | undefined;

  constructor(limit: number, staleCheckMs: number) {
    this.#limit = Math.max(0, Math.floor(limit));
    this.#staleCheckMs = staleCheckMs;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(id: EntryId): OpenEntry | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    return entry;
  }

  /**
   * Keeps `entry` open, resolving once the handles it pushed over the limit
   * are closed (so no more than the limit stay open past the read that kept
   * it); false, at once, when nothing is kept or `id` already has a handle
   * (the caller closes it then).
   */
  async keep(id: EntryId, entry: OpenEntry): Promise<boolean> {
    if (this.#limit === 0 || this.#entries.has(id)) return false;
    this.#entries.set(id, entry);
    if (this.#timer === undefined && this.#staleCheckMs > 0) {
      // Not keeping the process alive; it references only this object, never the storage around it.
      this.#timer = setInterval(() => void this.closeStale(), this.#staleCheckMs).unref();
    }
    const closing: Array<Promise<void>> = [];
    for (const [oldest, old] of this.#entries) {
      if (this.#entries.size <= this.#limit) break;
      closing.push(this.#forget(oldest, old));
    }
    await Promise.all(closing);
    return true;
  }

  /** Closes the handle of `id` (only if it is still `expected`, when given); resolves once it is closed. */
  async drop(id: EntryId, expected?: OpenEntry): Promise<void> {
    const entry = this.#entries.get(id);
    if (entry !== undefined && (expected === undefined || entry === expected)) await this.#forget(id, entry);
  }

  /** Closes the handles of every entry of `group` (ids are `<group>/<item>`). */
  async dropGroup(group: string): Promise<void> {
    const prefix = `${group}/`;
    const closing: Array<Promise<void>> = [];
    for (const [id, entry] of this.#entries) if (id.startsWith(prefix)) closing.push(this.#forget(id, entry));
    await Promise.all(closing);
  }

  /** Closes every handle (and stops the checks until one is kept again). */
  async dropAll(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    const closing = [...this.#entries.values()].map((e) => e.fh.close().catch(() => {}));
    this.#entries.clear();
    await Promise.all(closing);
  }

  /**
   * Closes the handles whose path names another file now or none (an entry
   * evicted or replaced by another process, which does not tell this one):
   * an open descriptor would keep its disk space in use, past the cache's
   * size limit. Synchronous checks, a slice at a time between other work.
   */
  async closeStale(): Promise<void> {
    const all = [...this.#entries];
    for (let i = 0; i < all.length; i += STALE_CHECK_SLICE) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      for (const [id, entry] of all.slice(i, i + STALE_CHECK_SLICE)) if (!stillNamed(entry)) void this.drop(id, entry);
    }
  }

  #forget(id: EntryId, entry: OpenEntry): Promise<void> {
    this.#entries.delete(id);
    return entry.fh.close().catch(() => {});
  }
}
