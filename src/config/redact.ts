import { redactRedisUrl } from './redis-url.ts';
import type { Config } from './schema.ts';
import { SECRET_SETTINGS } from './secret-settings.ts';

export const REDACTED = '[redacted]';

/** A copy of the config that is safe to print or log: every secret replaced. */
export function redactConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = structuredClone(config);
  for (const name of SECRET_SETTINGS) {
    // Secrets may sit in nested groups (`admin.token`): walk to the parent, then replace.
    const path = name.split('.');
    const last = path.pop() as string;
    let node: Record<string, unknown> | undefined = out;
    for (const part of path) {
      const next: unknown = node?.[part];
      node = typeof next === 'object' && next !== null && !Array.isArray(next) ? (next as Record<string, unknown>) : undefined;
    }
    if (node === undefined) continue;
    const value = node[last];
    if (Array.isArray(value)) node[last] = value.map(() => REDACTED);
    else if (value !== undefined) node[last] = REDACTED;
  }
  // redis.url is a secret only when it carries a password: hide just that.
  if (config.redis.url !== undefined) (out.redis as Record<string, unknown>).url = redactRedisUrl(config.redis.url, REDACTED);
  return out;
}
