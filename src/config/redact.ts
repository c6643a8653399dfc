import { SECRET_SETTINGS, type Config } from './schema.ts';

export const REDACTED = '[redacted]';

/** A copy of the config that is safe to print or log: every secret replaced. */
export function redactConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  for (const name of SECRET_SETTINGS) {
    const value = out[name];
    if (Array.isArray(value)) out[name] = value.map(() => REDACTED);
    else if (value !== undefined) out[name] = REDACTED;
  }
  return out;
}
