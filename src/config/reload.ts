import { isDeepStrictEqual } from 'node:util';
import { redactConfig } from './redact.ts';
import type { Config } from './schema.ts';

/** Settings read once at start: a reload reports them and keeps the running values until a restart. */
export const RESTART_SETTINGS: readonly string[] = ['host', 'port', 'workers', 'admin.host', 'admin.port', 'server.maxHeaderBytes'];

/** With workers, the cache index lives in the primary, built for one directory and its limits at start. */
export const CLUSTER_RESTART_SETTINGS: readonly string[] = ['cacheDir', 'maxCacheBytes', 'maxEntries'];

export interface ConfigChange {
  setting: string;
  /** Old and new values; secrets are shown as [redacted] (only the fact that they changed is told). */
  from: unknown;
  to: unknown;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value at `name` (and `field`, for a nested group) of a plain settings object. */
function at(config: Record<string, unknown>, name: string, field?: string): unknown {
  const value = config[name];
  if (field === undefined) return value ?? null;
  return isPlainObject(value) ? (value[field] ?? null) : null;
}

/**
 * The settings that differ between two configurations. Differences are found
 * on the real values; what is shown comes from the redacted copies, so a
 * secret (or a password inside a URL) only ever appears as [redacted].
 */
export function diffConfig(before: Config, after: Config): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const a = before as unknown as Record<string, unknown>;
  const b = after as unknown as Record<string, unknown>;
  const shownA = redactConfig(before);
  const shownB = redactConfig(after);
  for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[name];
    const y = b[name];
    // Nested groups are compared field by field, so the diff names `rateLimit.perSecond`, not all of `rateLimit`.
    if (isPlainObject(x) && isPlainObject(y)) {
      for (const field of new Set([...Object.keys(x), ...Object.keys(y)])) {
        if (!isDeepStrictEqual(x[field], y[field])) {
          changes.push({ setting: `${name}.${field}`, from: at(shownA, name, field), to: at(shownB, name, field) });
        }
      }
    } else if (!isDeepStrictEqual(x, y)) {
      changes.push({ setting: name, from: at(shownA, name), to: at(shownB, name) });
    }
  }
  return changes;
}

/**
 * The configuration that runs after a reload: the new one, except for the
 * settings that need a restart, which keep their running values.
 */
export function effectiveAfterReload(
  running: Config,
  loaded: Config,
  alsoRestart: readonly string[] = [],
): { config: Config; restartNeeded: string[] } {
  const config = structuredClone(loaded);
  const restartNeeded: string[] = [];
  for (const setting of [...RESTART_SETTINGS, ...alsoRestart]) {
    const [group, field] = setting.split('.') as [string, string | undefined];
    const from = running as unknown as Record<string, Record<string, unknown>>;
    const to = config as unknown as Record<string, Record<string, unknown>>;
    if (field === undefined) {
      if (!isDeepStrictEqual(from[group], to[group])) {
        restartNeeded.push(setting);
        (to as Record<string, unknown>)[group] = from[group];
      }
    } else if (!isDeepStrictEqual(from[group]?.[field], to[group]?.[field])) {
      restartNeeded.push(setting);
      const target = to[group];
      if (target) target[field] = from[group]?.[field];
    }
  }
  return { config, restartNeeded };
}
