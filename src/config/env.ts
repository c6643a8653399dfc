import { ConfigError } from '../errors.ts';
import { configSchema } from './schema.ts';

/** Prefix of every environment setting. */
export const ENV_PREFIX = 'FASTIMAGECACHE_';

/** FASTIMAGECACHE_* variables that are not settings, so they are not "unknown". */
export const NON_SETTING_ENV = new Set([
  `${ENV_PREFIX}CONFIG`, // path of the config file
  `${ENV_PREFIX}CORPUS`, // where the test suite finds the image corpus
]);

/** `allowPrivateNetworks` → `FASTIMAGECACHE_ALLOW_PRIVATE_NETWORKS`; `rateLimit.perSecond` → `FASTIMAGECACHE_RATE_LIMIT_PER_SECOND`. */
export function envNameFor(setting: string): string {
  return ENV_PREFIX + setting.replace(/\./g, '_').replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

interface ZodDefLike {
  type: string;
  innerType?: ZodLike;
  element?: ZodLike;
  shape?: Record<string, ZodLike>;
}
interface ZodLike {
  _zod: { def: ZodDefLike };
}

/** The base definition of a schema, seen through defaults and optionals. */
function baseDef(schema: ZodLike): ZodDefLike {
  let def = schema._zod.def;
  while ((def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable') && def.innerType) {
    def = def.innerType._zod.def;
  }
  return def;
}

/**
 * Every setting reachable from the environment, by env name: top-level
 * settings and the fields of nested objects (`rateLimit.perSecond`).
 * Records (like named presets) are file-only.
 */
function collectSettings(shape: Record<string, ZodLike>, prefix: string[], out: Map<string, { path: string[]; def: ZodDefLike }>): void {
  for (const [name, schema] of Object.entries(shape)) {
    const path = [...prefix, name];
    const def = baseDef(schema);
    if (def.type === 'object' && def.shape) collectSettings(def.shape, path, out);
    else if (def.type !== 'record') out.set(envNameFor(path.join('.')), { path, def });
  }
}

const SETTINGS_BY_ENV = new Map<string, { path: string[]; def: ZodDefLike }>();
collectSettings((configSchema as unknown as { shape: Record<string, ZodLike> }).shape, [], SETTINGS_BY_ENV);

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
      return def.element && baseDef(def.element).type === 'number' ? items.map(parseNumber) : items;
    }
    case 'union': // allowedPorts: "*" or a list of ports
      return raw.trim() === '*' ? '*' : parseList(raw).map(parseNumber);
    default:
      return raw;
  }
}

/** Sets `value` at `path` in `target`, creating nested objects on the way. */
function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  const last = path[path.length - 1];
  if (last !== undefined) node[last] = value;
}

/** Settings found in the environment, typed for the schema; unknown FASTIMAGECACHE_* names are errors. */
export function settingsFromEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || NON_SETTING_ENV.has(name)) continue;
    const setting = SETTINGS_BY_ENV.get(name);
    if (!setting) throw new ConfigError(name, 'unknown setting (not a fastimagecache environment variable)');
    setPath(out, setting.path, coerce(name, setting.def, raw));
  }
  return out;
}

/** Deep merge of plain objects (later wins); arrays and scalars are replaced whole. */
export function mergeSettings(...layers: Array<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      // A parsed file can hold an own "__proto__" key; assigning it would set out's prototype and
      // smuggle settings (secrets too) past the unknown-key and secrets-from-file checks.
      if (key === '__proto__') throw new ConfigError(key, 'unknown setting');
      const prev = out[key];
      const bothObjects =
        typeof value === 'object' && value !== null && !Array.isArray(value) && typeof prev === 'object' && prev !== null && !Array.isArray(prev);
      out[key] = bothObjects ? mergeSettings(prev as Record<string, unknown>, value as Record<string, unknown>) : value;
    }
  }
  return out;
}

/** Every setting the environment can set: dotted path and variable name (README's table is checked against it). */
export function listEnvSettings(): Array<{ setting: string; env: string }> {
  return [...SETTINGS_BY_ENV].map(([env, { path }]) => ({ setting: path.join('.'), env }));
}
