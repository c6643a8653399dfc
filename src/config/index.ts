export { configSchema, LOG_LEVELS, SECRET_SETTINGS, type Config, type ConfigInput, type SettingName } from './schema.ts';
export { loadConfig, type LoadConfigOptions, type LoadedConfig } from './load.ts';
export { envNameFor, ENV_PREFIX, listEnvSettings } from './env.ts';
export { redactConfig, REDACTED } from './redact.ts';
export { resolveSigningKeys, decodeKey, readSecretFile, generatedKeyPath, MIN_KEY_BYTES, type SigningKeys, type KeySource } from './secrets.ts';
export { defaultCacheDir, defaultStateDir } from './paths.ts';
