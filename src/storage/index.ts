export type { EntryMeta, StoredEntry, StorageStats, StorageBackend } from './types.ts';
export { CacheDirError, prepareCacheDir, TMP_DIR_NAME, type PrepareCacheDirOptions } from './cache-dir.ts';
export { decodeEntry, encodeEntry, encodeEntryParts, ENTRY_CODEC_VERSION } from './entry-codec.ts';
export { FsStorage, SECRET_FILE_NAME, type FsStorageOptions } from './fs-storage.ts';
