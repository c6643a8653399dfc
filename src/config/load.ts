import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.ts';
import { ENV_PREFIX, envNameFor, mergeSettings, settingsFromEnv } from './env.ts';
import { defaultCacheDir, defaultStateDir } from './paths.ts';
import { rejectRedisPasswordInFile } from './redis-url.ts';
import { configSchema, SECRET_SETTINGS, type Config } from './schema.ts';

export interface LoadConfigOptions {
  /** Config file (YAML or JSON); defaults to $FASTIMAGECACHE_CONFIG if set. */
  configFile?: string | undefined;
  /** Environment to read (defaults to process.env). */
  env?: Record<string, string | undefined>;
  /** Command-line flags, already named as settings; they win over everything. */
  flags?: Record<string, unknown>;
  /** Settings given in code by an embedding app (between the file and the environment). */
  overrides?: Record<string, unknown>;
}

export interface LoadedConfig {
  config: Config;
  /** Absolute path of the config file that was read, if any. */
  configFile: string | undefined;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text); // YAML is a superset of JSON, so one parser reads both
  } catch (err) {
    throw new ConfigError('config', `${path} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('config', `${path} must hold a mapping of settings`);
  }
  const settings = parsed as Record<string, unknown>;
  for (const name of SECRET_SETTINGS) {
    if (valueAt(settings, name) !== undefined) {
      throw new ConfigError(
        name,
        `secrets may not be written in a config file; set ${envNameFor(name)} or point ${name}File at a file readable only by its owner`,
      );
    }
  }
  rejectRedisPasswordInFile(settings);
  return settings;
}

/** The value at a dotted setting path (`admin.token`), if any. */
function valueAt(settings: Record<string, unknown>, dotted: string): unknown {
  let node: unknown = settings;
  for (const part of dotted.split('.')) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function firstIssue(error: z.ZodError): ConfigError {
  const issue = error.issues[0];
  if (!issue) return new ConfigError('config', 'invalid configuration');
  if (issue.code === 'unrecognized_keys') {
    return new ConfigError(issue.keys.join(', '), 'unknown setting');
  }
  const key = issue.path.map(String).join('.') || 'config';
  return new ConfigError(key, issue.message);
}

/** defaults < config file < code overrides < environment < flags, validated as one. */
export function loadConfig(options: LoadConfigOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const file = options.configFile ?? env[`${ENV_PREFIX}CONFIG`];
  const configFile = file ? resolve(file) : undefined;

  const merged = mergeSettings(
    { cacheDir: defaultCacheDir(env), stateDir: defaultStateDir(env) },
    configFile ? readConfigFile(configFile) : {},
    options.overrides ?? {},
    settingsFromEnv(env),
    options.flags ?? {},
  );

  const result = configSchema.safeParse(merged);
  if (!result.success) throw firstIssue(result.error);
  const config = result.data;
  config.cacheDir = resolve(config.cacheDir);
  config.stateDir = resolve(config.stateDir);
  if (config.publicDir) config.publicDir = resolve(config.publicDir);
  if (config.keyFile) config.keyFile = resolve(config.keyFile);
  if (config.storageKeyFile) config.storageKeyFile = resolve(config.storageKeyFile);
  if (config.admin.tokenFile) config.admin.tokenFile = resolve(config.admin.tokenFile);
  if (config.auditLog) config.auditLog = resolve(config.auditLog);
  if (config.redis.urlFile) config.redis.urlFile = resolve(config.redis.urlFile);
  return { config, configFile };
}
