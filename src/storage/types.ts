/** How long an entry may be served, decided when its source was fetched or revalidated (ms since epoch). */
export interface Freshness {
  /** Served as is until then. */
  freshUntil: number;
  /** After freshUntil and before this, served at once while one background refresh runs. */
  staleWhileRevalidateUntil: number;
  /** After freshUntil and before this, served when the origin fails or times out. */
  staleIfErrorUntil: number;
  /** The origin forbade serving it stale (must-revalidate, proxy-revalidate, no-cache). */
  mustRevalidate: boolean;
}

/** The origin response headers kept for revalidation and freshness. */
export interface OriginInfo {
  etag?: string;
  lastModified?: string;
  cacheControl?: string;
  expires?: string;
  date?: string;
  age?: string;
}

/** Metadata stored with every entry. The storage layer stores it; it does not interpret it. */
export interface EntryMeta {
  /** The cache key (hex) this entry was written under. */
  key: string;
  /** Key of the source this entry belongs to (equal to `key` for the source itself). */
  sourceKey: string;
  /** Normalized source URL. */
  sourceUrl: string;
  /** Canonical variant id: '_' for the source bytes as fetched. */
  variant: string;
  contentType: string;
  /** Body length in bytes. */
  size: number;
  /** SHA-256 of the body, hex. */
  sha256: string;
  /** SHA-256 of the source body this entry was made from (equal to `sha256` for the source). */
  sourceSha256: string;
  /** When the entry was written (ms since epoch). */
  storedAt: number;
  /** Shared by a source and all its variants. */
  freshness: Freshness;
  /** Origin validators and caching headers (of the source), for revalidation. */
  origin: OriginInfo;
  /**
   * The body decoded in full before it was stored (a source fetched for
   * passthrough, a source cleaned for passthrough): passthrough serves it
   * without decoding it again, also after a restart.
   */
  decoded?: true;
}

export interface StoredEntry {
  meta: EntryMeta;
  body: Buffer;
}

/** An entry as read back from a backend. */
export interface ReadEntry extends StoredEntry {
  /**
   * The backend vouches that `body` hashes to `meta.sha256`: it hashed it
   * itself, at this read or at an earlier read of the same unchanged file
   * whose body had the same CRC-32 as this one. Otherwise the caller hashes.
   */
  bodyVerified?: boolean;
  /**
   * Present when the body is a lent buffer (see ReadOptions.lend): call it
   * once nothing reads the body any more, and the buffer serves a later read
   * (which overwrites it). Never calling it is safe; calling it while the
   * body is still read is not.
   */
  release?: () => void;
}

export interface ReadOptions {
  /**
   * Whether the body of `bodySize` bytes may be read into a lent buffer
   * (ReadEntry.release), for a caller that drops it as soon as it is sent.
   * Backends may ignore it.
   */
  lend?: (bodySize: number) => boolean;
}

/**
 * Where an entry lives, `"<group>/<item>"` in lowercase hex: every entry of one
 * source shares its group. Derived from the keys by the backend (see
 * StorageBackend.entryId); opaque to everyone else, and small enough to keep
 * a million of them in an index.
 */
export type EntryId = string;

/** An entry encoded (and encrypted, if configured) for writing: its exact size is known before the write. */
export interface PreparedEntry {
  readonly meta: EntryMeta;
  readonly parts: readonly Buffer[];
  /** Size of the file it becomes, header and metadata included. */
  readonly bytes: number;
}

/** One entry found by a scan: enough to account for it without opening it. */
export interface ScannedEntry {
  id: EntryId;
  /** File size, metadata included. */
  bytes: number;
  /** Last write (ms since epoch). */
  mtimeMs: number;
}

export interface StorageStats {
  entries: number;
  /** Bytes on disk (or in the backend), metadata included. */
  bytes: number;
  /** Oldest entry's last write (ms since epoch), if any. */
  oldestMs?: number;
}

/**
 * A place to keep entries by id. Knows nothing of HTTP or images. A
 * filesystem backend exists now; Redis can implement the same interface later.
 */
export interface StorageBackend {
  /** The id of the entry `entryKey` of the source `sourceKey`: a pure function of the two keys. */
  entryId(sourceKey: string, entryKey: string): EntryId;
  /** The group part of an id. */
  groupOf(id: EntryId): string;
  /** Whole entry, or undefined if absent or unreadable (a damaged or unauthenticated file is reported as absent). Fully read before it resolves. */
  read(id: EntryId, options?: ReadOptions): Promise<ReadEntry | undefined>;
  /** Just the metadata (cheaper than read for large bodies). */
  readMeta(id: EntryId): Promise<EntryMeta | undefined>;
  /** Encodes (and encrypts) an entry, so its size is known before it is admitted. */
  prepare(entry: StoredEntry): PreparedEntry;
  /** Atomically replaces the entry: readers see the old entry or the new one, never a half. */
  write(id: EntryId, entry: PreparedEntry): Promise<void>;
  /** Removes the entry; true if one existed. */
  delete(id: EntryId): Promise<boolean>;
  /** Ids of the entries of a group. */
  listGroup(group: string): Promise<EntryId[]>;
  /** Removes every entry of a group (a source and all its variants); resolves to the ids removed. */
  deleteGroup(group: string): Promise<EntryId[]>;
  /** Every entry, in batches, without opening any: for rebuilding an index. */
  scan(): AsyncIterable<ScannedEntry[]>;
  /** Removes every entry. */
  clear(): Promise<void>;
  stats(): Promise<StorageStats>;
  close(): Promise<void>;
}

/** Removals announced by one process using a cache directory, for the others to forget (memory tier, index). */
export interface Removals {
  ids: EntryId[];
  /** Everything was removed. */
  all: boolean;
}

/** How processes sharing a cache directory (servers, workers, the CLI) tell each other what they removed. */
export interface RemovalFeed {
  announce(removed: EntryId[] | 'all'): Promise<void>;
  /** What others announced since the last poll. */
  poll(): Promise<Removals>;
}
