import { ConfigError } from '../errors.ts';
import { configSchema, type SettingName } from './schema.ts';

/** Prefix of every environment setting. */
export const ENV_PREFIX = 'FASTIMAGECACHE_';

/** FASTIMAGECACHE_* variables that are not settings, so they are not "unknown". */
export const NON_SETTING_ENV = new Set([
  `${ENV_PREFIX}CONFIG`, // path of the config file
  `${ENV_PREFIX}CORPUS`, // where the test suite finds the image corpus
]);

/** `allowPrivateNetworks` → `FASTIMAGECACHE_ALLOW_PRIVATE_NETWORKS`. */
export function envNameFor(setting: string): string {
  return ENV_PREFIX + setting.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

const SETTING_BY_ENV: ReadonlyMap<string, SettingName> = new Map(
  (Object.keys(configSchema.shape) as SettingName[]).map((name) => [envNameFor(name), name]),
);

interface ZodDefLike {
  type: string;
  innerType?: { _zod: { def: ZodDefLike } };
  options?: Array<{ _zod: { def: ZodDefLike } }>;
  element?: { _zod: { def: ZodDefLike } };
}

/** The base kind of a setting (string, number, boolean, array, union...), seen through defaults. */
function kindOf(setting: SettingName): ZodDefLike {
  let def = (configSchema.shape[setting] as unknown as { _zod: { def: ZodDefLike } })._zod.def;
  while ((def.type === 'default' || def.type === 'optional') && def.innerType) {
    def = def.innerType._zod.def;
  }
  return def;
}

function parseBoolean(name: string, raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(name, `expected true or false, got "${raw}"`);
}

function parseNumber(raw: string): number | string {
  const n = Number(raw.trim());
  // Leave non-numbers as strings so the schema names the problem.
  return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
}

function parseList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function coerce(name: string, def: ZodDefLike, raw: string): unknown {
  switch (def.type) {
    case 'boolean':
      return parseBoolean(name, raw);
    case 'number':
      return parseNumber(raw);
    case 'array': {
      const items = parseList(raw);
      return def.element?._zod.def.type === 'number' ? items.map(parseNumber) : items;
    }
    case 'union': // allowedPorts: "*" or a list of ports
      return raw.trim() === '*' ? '*' : parseList(raw).map(parseNumber);
    default:
      return raw;
  }
}

/** Settings found in the environment, typed for the schema; unknown FASTIMAGECACHE_* names are errors. */
export function settingsFromEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || NON_SETTING_ENV.has(name)) continue;
    const setting = SETTING_BY_ENV.get(name);
    if (!setting) throw new ConfigError(name, 'unknown setting (not a fastimagecache environment variable)');
    out[setting] = coerce(name, kindOf(setting), raw);
  }
  return out;
}
