/** Metadata stored with every entry. The storage layer stores it; it does not interpret it. */
export interface EntryMeta {
  /** The cache key (hex) this entry was written under. */
  key: string;
  /** Normalized source URL. */
  sourceUrl: string;
  /** Normalized options segment ('_' for none). */
  options: string;
  contentType: string;
  /** Body length in bytes. */
  size: number;
  /** SHA-256 of the body, hex. */
  sha256: string;
  /** When the entry was written (ms since epoch). */
  storedAt: number;
  /** Origin validators and caching headers, for revalidation. */
  origin: {
    etag?: string;
    lastModified?: string;
    cacheControl?: string;
    expires?: string;
    date?: string;
  };
}

export interface StoredEntry {
  meta: EntryMeta;
  body: Buffer;
}

export interface StorageStats {
  entries: number;
  /** Bytes on disk (or in the backend), metadata included. */
  bytes: number;
}

/**
 * A place to keep entries by key. Knows nothing of HTTP or images; keys are
 * opaque hex strings. A filesystem backend exists now; Redis can implement
 * the same interface later.
 */
export interface StorageBackend {
  /** Whole entry, or undefined if absent or unreadable (a damaged file is reported as absent). */
  read(key: string): Promise<StoredEntry | undefined>;
  /** Atomically replaces the entry: readers see the old entry or the new one, never a half. */
  write(entry: StoredEntry): Promise<void>;
  /** Removes the entry; true if one existed. */
  delete(key: string): Promise<boolean>;
  /** Removes every entry. */
  clear(): Promise<void>;
  stats(): Promise<StorageStats>;
  close(): Promise<void>;
}
