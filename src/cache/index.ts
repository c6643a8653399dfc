export {
  CacheManager,
  DEFAULT_OPTIONS,
  etagFor,
  type CacheManagerOptions,
  type CacheManagerStats,
  type CacheResult,
  type CacheStatus,
  type LoadedImage,
  type Loader,
} from './cache-manager.ts';
export { cacheKey, FORMAT_VERSION } from './cache-key.ts';
export { normalizeSourceUrl } from './normalize-url.ts';
export { SingleFlight } from './single-flight.ts';
