export {
  RedisConnection,
  type MessageHandler,
  type RedisConnectionOptions,
  type RedisHealth,
  type RedisState,
} from './connection.ts';
export {
  RedisSharedTier,
  type SharedEntry,
  type SharedEntryMeta,
  type SharedTierOptions,
  type SharedWriteOptions,
  type SharedWriteResult,
} from './shared-tier.ts';
export { decodeSharedEntry, encodeSharedEntry, type Sealing } from './shared-entry-codec.ts';
export { createSharedRateLimiter, type SharedRateDecision, type SharedRateLimiter, type SharedRateLimitOptions } from './shared-rate-limiter.ts';
