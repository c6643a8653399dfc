export {
  CacheManager,
  DEFAULT_OPTIONS,
  etagFor,
  type CacheManagerOptions,
  type CacheManagerStats,
  type CacheRequest,
  type CacheResult,
  type CacheStatus,
  type Loader,
  type LoadRequest,
  type LoadResult,
  type SourceImage,
  type Transform,
} from './cache-manager.ts';
export { cacheKey, FORMAT_VERSION, SOURCE_VARIANT, sourceKey, variantKey } from './cache-key.ts';
export { namespaceFingerprint } from './namespace.ts';
export { normalizeSourceUrl } from './normalize-url.ts';
export { SingleFlight } from './single-flight.ts';
export type { EntryMeta } from '../storage/types.ts';
export { CacheIndex, type CacheIndexApi, type CacheIndexStats } from './cache-index.ts';
export { DEFAULT_FRESHNESS, type FreshnessSettings } from './freshness.ts';
export {
  countEntries,
  directoryStats,
  purgeSource,
  pruneEntries,
  verifyEntries,
  type DirectoryStats,
  type Progress,
  type PruneSummary,
  type VerifySummary,
} from './maintenance.ts';
