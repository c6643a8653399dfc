/**
 * fastimagecache's public API. Everything an embedding app needs is exported
 * here; the rest of src/ is internal.
 */
export {
  createImageCache,
  type ImageCache,
  type ImageCacheOptions,
  type ImageRequestOptions,
  type ImageResult,
  type CacheStats,
} from './image-cache.ts';
export { FastImageCacheError, ConfigError, ERROR_CODES, type ErrorCode } from './errors.ts';
export { loadConfig, redactConfig, type Config, type ConfigInput } from './config/index.ts';
export { startServer, type RunningServer, buildImagePath, encodeSource } from './server/index.ts';
export { createLogger, type Logger, type LogLevel } from './log.ts';
