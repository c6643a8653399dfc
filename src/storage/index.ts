export type {
  EntryId,
  EntryMeta,
  Freshness,
  OriginInfo,
  PreparedEntry,
  Removals,
  RemovalFeed,
  ScannedEntry,
  ReadEntry,
  StoredEntry,
  StorageStats,
  StorageBackend,
} from './types.ts';
export { CacheDirError, prepareCacheDir, TMP_DIR_NAME, type PrepareCacheDirOptions } from './cache-dir.ts';
export { decodeEntry, decodeMeta, encodeEntry, encodeEntryParts, ENTRY_CODEC_VERSION } from './entry-codec.ts';
export { EntryCipher } from './entry-cipher.ts';
export { FsStorage, SECRET_FILE_NAME, type FsStorageOptions } from './fs-storage.ts';
export { RemovalJournal, NOTICES_DIR_NAME } from './removal-journal.ts';
export { StatusBoard, readStatuses, STATUS_DIR_NAME } from './status-board.ts';
